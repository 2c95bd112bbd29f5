"""Turning a decoded RGB image into a model input array (NumPy only: no torch on the query path)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become a model input: square resize, then ``(x / 255 - mean) / std``, CHW layout.

    ``resize`` is ``"bilinear"`` (Pillow's antialiased bilinear on 8-bit pixels) or ``"fid"``
    (torch's ``F.interpolate(bilinear, align_corners=False)`` on [0, 1] floats, as pytorch-fid does).
    ``layout`` is the model input's layout; images are always produced CHW and the embedder
    transposes batches for ``"NHWC"`` models.
    """

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "bilinear"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.resize not in ("bilinear", "fid"):
            raise ValueError(f"unknown resize {self.resize!r}; use 'bilinear' or 'fid'")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"unknown layout {self.layout!r}; use 'NCHW' or 'NHWC'")

    def __call__(self, rgb: Image.Image) -> np.ndarray:
        """Return the (3, size, size) float32 input for one RGB image, C-contiguous (batches of them
        stack with one copy)."""
        if self.resize == "fid":  # float64 like fid_preprocess: bit-identical to it for mean = std = 0.5
            from lookalike.models.fid_preprocess import resize_bilinear

            x = resize_bilinear(np.asarray(rgb), self.size, self.size, divisor=255.0)
            x = (x - np.asarray(self.mean)) / np.asarray(self.std)
            return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        if rgb.size != (self.size, self.size):
            rgb = rgb.resize((self.size, self.size), Image.BILINEAR, reducing_gap=3.0)
        x = np.empty((3, self.size, self.size), np.float32)
        x[...] = np.asarray(rgb).transpose(2, 0, 1)  # planes first, then arithmetic on contiguous planes
        x *= np.asarray([1.0 / (255.0 * s) for s in self.std], np.float32)[:, None, None]
        x -= np.asarray([m / s for m, s in zip(self.mean, self.std)], np.float32)[:, None, None]
        return x

    @property
    def decode_size(self) -> int | None:
        """The ``size`` to decode images at: JPEG DCT downscaling suits the antialiased resize, but
        ``"fid"`` inputs must come from the full-resolution pixels, as in pytorch-fid."""
        return None if self.resize == "fid" else self.size

    def to_dict(self) -> dict:
        """JSON-able description, stored in indexes and model sidecars."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """Inverse of :meth:`to_dict`."""
        return cls(size=int(d["size"]), mean=tuple(map(float, d.get("mean", (0.5,) * 3))),
                   std=tuple(map(float, d.get("std", (0.5,) * 3))), resize=d.get("resize", "bilinear"),
                   layout=d.get("layout", "NCHW"))
