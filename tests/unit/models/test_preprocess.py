"""Pixels to model inputs: per-channel normalisation, planes first, contiguous."""

import numpy as np
from PIL import Image

from helpers import sample_photo
from lookalike.models.preprocess import Preprocessing

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def test_bilinear_input_is_the_normalised_resized_photo_planes_first():
    photo = sample_photo("astronaut")
    x = Preprocessing(size=96, **IMAGENET)(photo)
    resized = np.asarray(photo.resize((96, 96), Image.BILINEAR), dtype=np.float64) / 255.0
    expected = ((resized - IMAGENET["mean"]) / IMAGENET["std"]).transpose(2, 0, 1)
    assert x.dtype == np.float32 and x.shape == (3, 96, 96) and x.flags.c_contiguous
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_an_image_at_the_input_size_is_not_resized():
    photo = sample_photo("coffee").resize((64, 64))
    x = Preprocessing(size=64)(photo)
    np.testing.assert_allclose(x, np.asarray(photo).transpose(2, 0, 1) / 127.5 - 1.0, atol=1e-6)


def test_fid_input_is_contiguous_too():
    x = Preprocessing(size=64, resize="fid")(sample_photo("chelsea"))
    assert x.dtype == np.float32 and x.shape == (3, 64, 64) and x.flags.c_contiguous
