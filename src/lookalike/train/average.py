"""The weights a training run exports: the trained weights or their exponential moving average
(``TrainConfig.ema``), blended with the weights training started from (``TrainConfig.blend``).

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
    """Follows ``net`` while it trains; :meth:`exported` is the network to export.

    ``decay`` 0 exports the trained weights themselves; otherwise every :meth:`update` moves the
    average ``1 - decay`` of the way towards the current weights (it starts at the starting weights).
    """

    def __init__(self, net: nn.Module, decay: float = 0.0) -> None:
        self.net, self.decay = net, decay
        self.start = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.ema = ({k: v.clone() for k, v in self.start.items() if v.is_floating_point()} if decay > 0 else None)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (after each optimiser step)."""
        if self.ema is None:
            return
        for k, v in self.net.state_dict().items():
            if k in self.ema:
                self.ema[k].lerp_(v.detach().to(self.ema[k].device), 1 - self.decay)

    def state(self) -> dict | None:
        """What a checkpoint keeps to resume the average."""
        return self.ema

    def load(self, state: dict | None) -> None:
        if self.ema is not None and state is not None:
            self.ema = {k: v.clone() for k, v in state.items()}

    @torch.no_grad()
    def exported(self, share: float = 1.0) -> nn.Module:
        """A copy of the network on the CPU whose floating-point weights are ``share`` x the trained
        (or averaged) ones + ``1 - share`` x the starting ones."""
        out = copy.deepcopy(self.net).to("cpu", memory_format=torch.contiguous_format)
        trained = {k: v.detach().cpu() for k, v in out.state_dict().items()}
        if self.ema is not None:
            trained.update(self.ema)
        out.load_state_dict({k: (torch.lerp(self.start[k], v, share) if v.is_floating_point() and share != 1 else v)
                             for k, v in trained.items()})
        return out.eval()
