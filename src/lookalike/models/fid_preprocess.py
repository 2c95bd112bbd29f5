"""pytorch-fid's input pipeline in NumPy (no torch on the query path).

pytorch-fid scales 8-bit RGB to [0, 1], resizes to 299x299 with
``F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)`` (no antialiasing,
so downscaling samples only the two nearest source pixels per axis), then maps to [-1, 1].
"""

from __future__ import annotations

import numpy as np

FID_SIZE = 299


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0``, ``i1`` and their weights ``w0``, ``w1`` for each output index, rounded
    as torch's CPU kernel computes them for bilinear resizing with ``align_corners=False``.

    Torch works in float32 and its x86 builds fuse ``scale * (i + 0.5) - 0.5`` into one FMA;
    that rounding moves weights by up to ~1e-4 on large images, so it is reproduced: the float64
    expression is exact here, and rounding it once to float32 is what the FMA does.
    The source coordinate stays below ``in_size - 0.5``, so ``i0`` needs no upper clamp and ``w1``
    (exact in float32) lies in [0, 1) without torch's clamps.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    src = (float(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(f32)
    src = np.maximum(src, f32(0.0))
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = src - i0.astype(f32)
    return i0, i1, (f32(1.0) - w1).astype(np.float64), w1.astype(np.float64)


def resize_bilinear(x: np.ndarray, height: int, width: int, divisor: float = 1.0) -> np.ndarray:
    """Resize ``x / divisor``, an (H, W, C) array, like torch's bilinear ``F.interpolate`` with
    ``align_corners=False`` and no antialiasing; returns float64.

    Only the four source pixels of each output pixel are read and converted (for a 12-megapixel
    photo that is 0.7 % of them), so the result equals dividing and resizing the whole image.
    """
    y0, y1, wy0, wy1 = _linear_taps(x.shape[0], height)
    x0, x1, wx0, wx1 = _linear_taps(x.shape[1], width)

    def taps(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return np.asarray(x[ys[:, None], xs[None, :]], dtype=np.float64) / divisor

    left = taps(y0, x0) * wy0[:, None, None] + taps(y1, x0) * wy1[:, None, None]
    right = taps(y0, x1) * wy0[:, None, None] + taps(y1, x1) * wy1[:, None, None]
    return left * wx0[None, :, None] + right * wx1[None, :, None]


def fid_preprocess(rgb_uint8_hwc: np.ndarray) -> np.ndarray:
    """Return the (3, 299, 299) float32 FID Inception input, in [-1, 1], for an (H, W, 3) uint8
    RGB image."""
    rgb = np.asarray(rgb_uint8_hwc)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    x = resize_bilinear(rgb, FID_SIZE, FID_SIZE, divisor=255.0)
    return (2.0 * x - 1.0).transpose(2, 0, 1).astype(np.float32)
