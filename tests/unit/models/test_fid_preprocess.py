"""pytorch-fid's input pipeline in NumPy: resizing against torch's bilinear ``F.interpolate`` on real
photos and hand-worked tiny arrays, the [-1, 1] scaling, and what it refuses."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from lookalike.models.fid_preprocess import fid_preprocess, resize_bilinear


def torch_fid_preprocess(rgb: np.ndarray) -> np.ndarray:
    """pytorch-fid's pipeline: ToTensor, bilinear F.interpolate to 299, 2x - 1."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return (2 * x - 1)[0].numpy()


@pytest.mark.parametrize("name, rows, cols", [
    ("chelsea", slice(None), slice(None)),              # 300x451, down
    ("coffee", slice(None), slice(None)),               # 400x600, down
    ("astronaut", slice(None), slice(None)),            # 512x512, down
    ("astronaut", slice(None, None, 4), slice(None, None, 4)),  # 128x128, up
    ("chelsea", slice(40, 97), slice(100, 123)),        # 57x23, up
    ("coffee", slice(None, None, 3), slice(None)),      # 134x600, up rows, down columns
    ("astronaut", slice(7, 306), slice(1, 300)),        # 299x299, unchanged
])
def test_fid_preprocess_matches_torch_interpolate(name, rows, cols):
    rgb = np.ascontiguousarray(getattr(data, name)()[rows, cols])
    ours = fid_preprocess(rgb)
    assert ours.shape == (3, 299, 299) and ours.dtype == np.float32
    assert np.abs(ours - torch_fid_preprocess(rgb)).max() <= 1e-5


@pytest.mark.parametrize("size", [2, 23, 299, 451, 1500, 4000])
def test_resize_weights_equal_torch(size):
    """Per-pixel interpolation weights, read off by resizing one-hot rows, are torch's float32
    weights exactly: its float32 rounding of the source coordinate (off by ~1e-5 at 1500 pixels
    otherwise) and of ``1 - w``."""
    eye = np.eye(size)
    ours = resize_bilinear(eye[None], 1, 299)[0]  # (299, size): weight of each source per output
    theirs = F.interpolate(torch.from_numpy(eye).float()[None, :, None, :], size=(1, 299), mode="bilinear",
                           align_corners=False)[0, :, 0, :].T.numpy()
    assert np.array_equal(ours, theirs.astype(np.float64))


def test_resize_by_hand():
    """align_corners=False: output pixel i samples the source at (i + 0.5) * in / out - 0.5, clamped
    at 0 and at the last pixel."""
    column = np.array([0.0, 4.0]).reshape(2, 1, 1)
    # up, 2 -> 4: at -0.25 (so 0), 0.25, 0.75 and 1.25 (past the last pixel, so its value)
    assert resize_bilinear(column, 4, 1)[:, 0, 0].tolist() == [0.0, 1.0, 3.0, 4.0]
    row = np.array([0.0, 10.0, 20.0, 40.0]).reshape(1, 4, 1)
    # down, 4 -> 2: at 0.5 and 2.5, halfway between two pixels each (no antialiasing)
    assert resize_bilinear(row, 1, 2, divisor=2.0)[0, :, 0].tolist() == [2.5, 15.0]
    # both axes at once, each channel on its own: 2x2 -> 3x3 samples at -1/6 (so 0), 0.5 and 7/6
    square = np.stack([np.array([[0.0, 6.0], [12.0, 18.0]]), np.full((2, 2), 5.0)], axis=-1)
    assert np.allclose(resize_bilinear(square, 3, 3)[..., 0], [[0, 3, 6], [6, 9, 12], [12, 15, 18]])
    assert np.array_equal(resize_bilinear(square, 3, 3)[..., 1], np.full((3, 3), 5.0))


def test_a_float32_picture_is_divided_and_resized_in_float64():
    x = np.random.default_rng(0).uniform(0, 255, (7, 5, 3)).astype(np.float32)
    wide = x.astype(np.float64)
    assert np.array_equal(resize_bilinear(x, 4, 9, divisor=3.0), resize_bilinear(wide, 4, 9, divisor=3.0))
    assert resize_bilinear(x, 4, 9).dtype == np.float64


def test_fid_preprocess_maps_0_and_255_to_minus_1_and_1():
    for value, expected in ((0, -1.0), (255, 1.0), (51, -0.6)):
        out = fid_preprocess(np.full((5, 3, 3), value, np.uint8))
        assert out.dtype == np.float32 and out.shape == (3, 299, 299)
        assert np.allclose(out, expected, atol=1e-7)
    # channels first: a red picture is 1 in channel 0 only
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255
    assert fid_preprocess(red)[:, 100, 100].tolist() == [1.0, -1.0, -1.0]


def test_resizing_8_bit_pixels_with_a_divisor_equals_resizing_the_divided_photo():
    rgb = data.coffee()  # 400x600: down
    for shape in ((299, 299), (450, 700)):  # and up
        assert np.array_equal(resize_bilinear(rgb, *shape, divisor=255.0), resize_bilinear(rgb / 255.0, *shape))


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_fid_preprocess_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match=re.escape(f"expected an (H, W, 3) uint8 RGB array, got {bad.dtype} {bad.shape}")):
        fid_preprocess(bad)


def test_fid_preprocess_does_not_import_torch():
    code = "import sys, lookalike.models.fid_preprocess; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
