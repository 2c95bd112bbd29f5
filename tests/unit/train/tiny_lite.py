"""A stand-in EfficientNet-Lite small enough for fast tests: the attributes LiteFeatures and
EmbeddingNet use (stem, blocks with ``_bn2``, 1x1 head to 1280 channels), three blocks of 4, 5 and 6
channels so that every block's width tells it apart."""

import torch
from torch import nn

from lookalike.models.efficientnet_lite import LiteFeatures

WIDTHS = (4, 5, 6)


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self._conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return torch.relu(self._bn2(self._conv(x)))


class TinyLite(nn.Module):
    def __init__(self, widths=WIDTHS) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 3, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(3)
        self._swish = nn.SiLU()
        self._blocks = nn.ModuleList(Block(a, b) for a, b in zip((3, *widths), widths))
        self._conv_head = nn.Conv2d(widths[-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280)


def tiny_features(layer: str = "pool", seed: int = 0) -> LiteFeatures:
    torch.manual_seed(seed)
    net = TinyLite()
    with torch.no_grad():  # batch statistics that are not the identity, so that eval mode matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return LiteFeatures(net, layer).eval()
