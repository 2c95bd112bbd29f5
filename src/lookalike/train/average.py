"""The weights a training run exports: the trained weights blended with the weights training
started from (``TrainConfig.blend``).

Blending fine-tuned weights back towards the starting ones is WiSE-FT (Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022): both ends of the line share one start, so the points
between them are good networks too, and they keep more of what the pretrained network knew.
"""

from __future__ import annotations

import copy

from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
from torch import nn


class Average:
    """Remembers the weights ``net`` starts training from; :meth:`exported` is the network to export."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.start = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def exported(self, share: float = 1.0) -> nn.Module:
        """A copy of the network on the CPU whose floating-point weights are ``share`` x the trained
        ones + ``1 - share`` x the starting ones."""
        out = copy.deepcopy(self.net).to("cpu", memory_format=torch.contiguous_format)
        trained = {k: v.detach().cpu() for k, v in out.state_dict().items()}
        out.load_state_dict({k: (torch.lerp(self.start[k], v, share) if v.is_floating_point() and share != 1 else v)
                             for k, v in trained.items()})
        return out.eval()
