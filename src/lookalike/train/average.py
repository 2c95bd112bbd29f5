"""The weights a training run exports: the trained weights or an exponential moving average of them
(``TrainConfig.ema``), blended with the weights training started from (``TrainConfig.blend``).

Blending fine-tuned weights back towards the starting ones is WiSE-FT (Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022): both ends of the line share one start, so the points
between them are good networks too, and they keep more of what the pretrained network knew.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
from torch import nn


class Average:
    """Follows ``net`` while it trains; :meth:`exported` is a network to export.

    Every :meth:`update` moves the average of each decay ``d`` in ``decays`` (0 is the trained
    weights themselves and needs no average) ``1 - d`` of the way towards the current weights; each
    average starts at the starting weights. Several decays cost one training run (``tune``).
    ``decay`` is the one :meth:`exported` uses unless told otherwise.
    """

    def __init__(self, net: nn.Module, decay: float = 0.0, decays: Iterable[float] = ()) -> None:
        self.net, self.decay = net, decay
        self.start = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.ema = {d: {k: v.clone() for k, v in self.start.items() if v.is_floating_point()}
                    for d in sorted({decay, *decays}) if d > 0}

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the averages (after each optimiser step)."""
        current = self.net.state_dict()
        for d, average in self.ema.items():
            for k, v in average.items():
                v.lerp_(current[k].detach().to(v.device), 1 - d)

    def state(self) -> dict:
        """What a checkpoint keeps to resume the averages."""
        return self.ema

    def load(self, state: dict | None) -> None:
        for d, average in (state or {}).items():
            if d in self.ema:
                self.ema[d] = {k: v.clone() for k, v in average.items()}

    @torch.no_grad()
    def exported(self, share: float = 1.0, decay: float | None = None) -> nn.Module:
        """A copy of the network on the CPU whose floating-point weights are ``share`` x the trained
        ones (``decay`` 0) or their average of ``decay`` (default: :attr:`decay`) + ``1 - share`` x
        the starting ones."""
        decay = self.decay if decay is None else decay
        if decay > 0 and decay not in self.ema:
            raise ValueError(f"no moving average of decay {decay} was kept")
        out = copy.deepcopy(self.net).to("cpu", memory_format=torch.contiguous_format)
        trained = {k: v.detach().cpu() for k, v in out.state_dict().items()}
        if decay > 0:
            trained.update(self.ema[decay])
        out.load_state_dict({k: (torch.lerp(self.start[k], v, share) if v.is_floating_point() and share != 1 else v)
                             for k, v in trained.items()})
        return out.eval()
