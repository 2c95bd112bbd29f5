"""The embedding head and its training losses, both scoring images against one proxy per class.

Backbone features -> LayerNorm without affine -> bias-free linear to ``dim`` -> L2 normalise is the
embedding (NormSoftmax: Zhai & Wu, "Classification is a strong baseline for deep metric learning",
BMVC 2019). Training compares it with L2-normalised class weights (proxies): NormSoftmax by
cross-entropy over the cosines divided by a temperature, Proxy-Anchor (Kim et al., CVPR 2020) by
pulling each proxy's images in and pushing the others out. Only the embedding is exported; the
proxies are thrown away after training.
"""

from __future__ import annotations

from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
import torch.nn.functional as F
from torch import nn

from lookalike.models.efficientnet_lite import LiteFeatures


class Embedding(nn.Module):
    """Pooled features (N, in_dim) -> L2-normalised embeddings (N, dim)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, elementwise_affine=False)
        self.proj = nn.Linear(in_dim, dim, bias=False)
        nn.init.orthogonal_(self.proj.weight)  # a distance-preserving start for dim <= in_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.norm(features)), dim=1)


class NormSoftmax(nn.Module):
    """Cross-entropy over cosine similarities to one learned proxy per class, divided by ``temperature``.

    ``margin`` > 0 subtracts that much from each image's cosine to its own class's proxy before the
    softmax (an additive cosine margin, CosFace: Wang et al., CVPR 2018), so the loss keeps pulling
    until an image is closer to its proxy than to any other by the margin.
    """

    def __init__(self, dim: int, n_classes: int, temperature: float = 0.05, margin: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.margin = margin
        self.proxies = nn.Parameter(torch.randn(n_classes, dim) / dim ** 0.5)

    @torch.no_grad()
    def init_from(self, embeddings: torch.Tensor, codes: torch.Tensor) -> None:
        """Start each proxy at its class's mean embedding, so the first gradients are meaningful."""
        sums = torch.zeros_like(self.proxies).index_add_(0, codes, embeddings)
        seen = torch.bincount(codes, minlength=len(self.proxies)) > 0
        self.proxies[seen] = F.normalize(sums[seen], dim=1)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings @ F.normalize(self.proxies, dim=1).T / self.temperature

    def forward(self, embeddings: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        logits = self.logits(embeddings)
        if self.margin:
            logits = logits - F.one_hot(codes, logits.shape[1]) * (self.margin / self.temperature)
        return F.cross_entropy(logits, codes)


class ProxyAnchor(NormSoftmax):
    """The Proxy-Anchor loss (Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020),
    with scale ``alpha = 1 / temperature`` and margin ``delta = margin``:

    mean over the proxies p with images in the batch of log(1 + sum over p's images x of
    exp(-alpha (cos(x, p) - delta))), plus the mean over all proxies of log(1 + sum over the other
    images x of exp(alpha (cos(x, p) + delta))). Each proxy is an anchor weighing its whole batch,
    the hardest images most. The paper's setting is ``temperature=1/32, margin=0.1``.
    """

    def forward(self, embeddings: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        scaled = self.logits(embeddings)  # alpha * cos
        own = F.one_hot(codes, scaled.shape[1]).bool()
        shift = self.margin / self.temperature  # alpha * delta
        pulls = _log1p_sum_exp(torch.where(own, shift - scaled, -torch.inf))
        pushes = _log1p_sum_exp(torch.where(own, -torch.inf, scaled + shift))
        return pulls[own.any(0)].mean() + pushes.mean()


def _log1p_sum_exp(z: torch.Tensor) -> torch.Tensor:
    """log(1 + sum of exp(z)) down each column (-inf entries count 0), without overflow."""
    return torch.logsumexp(torch.cat([z.new_zeros(1, z.shape[1]), z]), dim=0)


def loss_for(name: str, dim: int, n_classes: int, temperature: float, margin: float) -> NormSoftmax:
    """The training loss ``name`` (``TrainConfig.loss``) over ``n_classes`` proxies."""
    return {"normsoftmax": NormSoftmax, "proxy-anchor": ProxyAnchor}[name](dim, n_classes, temperature, margin)


class EmbeddingNet(nn.Module):
    """The exported network: images (N, 3, S, S) -> L2-normalised embeddings (N, dim).

    :meth:`tail` runs it from the input of block ``start`` on, which is how training uses cached
    activations of the frozen blocks before it. ``whitening``, set after training (never while it
    trains), maps the embedding on (:class:`~lookalike.train.whiten.Whitening`).
    """

    def __init__(self, features: LiteFeatures, dim: int) -> None:
        super().__init__()
        self.features = features
        in_dim = 1280 if features.layer == "pool" else features.net._blocks[-1]._bn2.num_features
        self.embedding = Embedding(in_dim, dim)
        self.whitening: nn.Module | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.features.net._blocks)

    def tail(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Embeddings from the input of block ``start`` (``start == 0``: from the image, stem included)."""
        embedded = self.embedding(self.features.head(self.features.trunk(x, start)))
        return embedded if self.whitening is None else self.whitening(embedded)

    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """The input of block ``stop`` (what :meth:`tail` takes) from images."""
        return self.features.trunk(x, 0, stop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(x, 0)

    def trainable(self, start: int) -> list[list[nn.Parameter]]:
        """Backbone parameters from block ``start`` on, by depth from the output: the 1x1 head
        convolution (with any block), each block from the last to ``start``, the stem when
        ``start == 0``; freezes the rest."""
        net = self.features.net
        parts: list[list[nn.Module]] = [[block] for block in reversed(net._blocks[start:])]
        if parts:
            parts.insert(0, [net._conv_head, net._bn1])
        if start == 0:
            parts.append([net._conv_stem, net._bn0])
        for p in self.features.parameters():
            p.requires_grad_(False)
        groups = [[p for m in modules for p in m.parameters()] for modules in parts]
        for p in (p for group in groups for p in group):
            p.requires_grad_(True)
        return groups
