"""Pixels to model inputs: per-channel normalisation, planes first, contiguous."""

import json

import numpy as np
import pytest
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


MEAN, STD = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)


def _plane_values(x):
    """The one value of each plane of a preprocessed solid-colour image."""
    assert all(np.ptp(plane) < 1e-6 for plane in x)
    return [float(plane.flat[0]) for plane in x]


def test_each_channel_has_its_own_mean_and_std_on_both_resizes():
    solid = Image.new("RGB", (50, 30), (51, 102, 255))  # 0.2, 0.4, 1.0 after / 255
    expected = [(0.2 - 0.1) / 0.2, (0.4 - 0.5) / 0.25, (1.0 - 0.9) / 0.5]  # 0.5, -0.4, 0.2
    for resize in ("bilinear", "fid"):
        x = Preprocessing(size=16, mean=MEAN, std=STD, resize=resize)(solid)
        assert x.shape == (3, 16, 16) and x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_allclose(_plane_values(x), expected, atol=1e-6)


def test_fid_resize_samples_the_two_nearest_source_pixels_without_antialiasing():
    # a 4-pixel row of 0, 255, 0, 255 halved: each output lies midway between source pixels 2i and 2i+1
    row = np.array([[0, 255, 0, 255]], np.uint8)
    img = Image.fromarray(np.repeat(row[:, :, None], 3, axis=2).repeat(2, axis=0))
    x = Preprocessing(size=2, resize="fid")(img)
    np.testing.assert_allclose(x[0], [[0.0, 0.0], [0.0, 0.0]], atol=1e-6)  # (0 + 1) / 2 -> 0.5 -> (0.5 - 0.5) / 0.5
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, 1::2] = 255  # every odd column white
    y = Preprocessing(size=4, resize="fid")(Image.fromarray(stripes))
    np.testing.assert_allclose(y, 0.0, atol=1e-6)  # each output pixel: the mean of one black and one white


def test_fid_inputs_decode_at_full_size_and_bilinear_ones_at_the_input_size():
    assert Preprocessing(size=299, resize="fid").decode_size is None
    assert Preprocessing(size=224).decode_size == 224


@pytest.mark.parametrize("field, value, message", [
    ("resize", "nearest", "unknown resize 'nearest'; use 'bilinear' or 'fid'"),
    ("layout", "CHW", "unknown layout 'CHW'; use 'NCHW' or 'NHWC'"),
])
def test_an_unknown_resize_or_layout_is_refused(field, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        Preprocessing(size=8, **{field: value})


def test_descriptions_round_trip_and_fill_defaults():
    pre = Preprocessing(size=299, mean=MEAN, std=STD, resize="fid", layout="NHWC")
    d = pre.to_dict()
    assert d == {"size": 299, "mean": [0.1, 0.5, 0.9], "std": [0.2, 0.25, 0.5], "resize": "fid", "layout": "NHWC"}
    assert Preprocessing.from_dict(d) == pre
    assert Preprocessing.from_dict(json.loads(json.dumps(d))) == pre
    assert Preprocessing.from_dict({"size": "64"}) == Preprocessing(64, (0.5,) * 3, (0.5,) * 3, "bilinear", "NCHW")
