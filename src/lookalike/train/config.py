"""Training settings (no torch import: the CLI reads the defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, fields

LOSSES = ("normsoftmax", "proxy-anchor")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and in the model's metadata).

    Defaults were measured on flowers51 (docs/training.md): a low backbone learning rate for a few
    epochs generalised best to unseen classes (more epochs or 3x the rate memorise the training
    classes); ``dim`` equal to the 1280 pooled features starts as a lossless rotation of them and
    scored 0.1-1.2 mAP points above 512 in every comparison.

    ``lr_decay`` multiplies the learning rate once per block going towards the input (the 1x1 head
    convolution gets ``lr``, the last block ``lr * lr_decay``, ...). ``ema`` > 0 exports an
    exponential moving average of the weights over the steps (that decay per step); ``blend`` < 1
    exports that share of the trained weights and the rest of the starting ones (WiSE-FT).
    ``margin`` > 0 is subtracted from each image's cosine to its own class's proxy in the loss
    (an additive cosine margin). ``loss`` "proxy-anchor" trains with Proxy-Anchor instead of NormSoftmax,
    its scale 1 / ``temperature`` and its margin ``margin``. ``embed_size`` is the exported model's input size in pixels, the
    whole image embedded at index and query time (0: the base model's); training does not depend on it.
    ``train_size`` is the network's input in training (pixel crops, the images the class proxies start
    from, the scale of feature-map crops); ``crop_size`` is the pixels each pixel crop is rendered at
    before it is resized to ``train_size`` (0: at ``train_size``): 160 crops shown at 224 carry less
    detail than the whole images embedded later, which scored above full-detail crops at either size.
    ``whiten`` is the power of the learned whitening fitted on the training images after training
    (0: none, 1: full; :mod:`lookalike.train.whiten`).
    """

    model: str = "efficientnet-lite0"
    layer: str = "pool"
    dim: int = 1280
    temperature: float = 0.05
    margin: float = 0.0
    loss: str = "normsoftmax"
    epochs: int = 4
    lr: float = 3e-5
    head_lr_scale: float = 10.0
    lr_decay: float = 1.0
    weight_decay: float = 1e-4
    unfreeze: int = 11
    batch_size: int = 32
    per_class: int = 4
    train_size: int = 224
    crop_size: int = 160
    crop_scale: float = 0.3
    augment: str = "pixels"
    ema: float = 0.0
    blend: float = 1.0
    embed_size: int = 0
    whiten: float = 0.5
    val_split: str = "classes"
    val_fraction: float = 0.2
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        """ValueError with a one-line message for settings that cannot work."""
        for name in ("dim", "epochs", "batch_size", "per_class", "train_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError("temperature and lr must be positive")
        if self.unfreeze < 0:
            raise ValueError("unfreeze must be 0 or more")
        if self.crop_size < 0:
            raise ValueError("crop-size must be 0 (the training size) or more")
        if self.embed_size != 0 and self.embed_size < 32:
            raise ValueError("embed-size must be 0 (the base model's input size) or at least 32")
        if not 0 <= self.margin < 1:
            raise ValueError("margin must be in [0, 1)")
        if not 0 < self.crop_scale <= 1:
            raise ValueError("crop-scale must be in (0, 1]")
        if not 0 < self.lr_decay <= 1:
            raise ValueError("lr-decay must be in (0, 1]")
        if not 0 <= self.ema < 1:
            raise ValueError("ema must be in [0, 1)")
        if not 0 <= self.blend <= 1:
            raise ValueError("blend must be in [0, 1]")
        if not 0 <= self.whiten <= 1:
            raise ValueError("whiten must be in [0, 1]")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be {' or '.join(LOSSES)}, not {self.loss!r}")
        if self.augment not in ("pixels", "features"):
            raise ValueError(f"augment must be pixels or features, not {self.augment!r}")
