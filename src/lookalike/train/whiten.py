"""Learned whitening of a trained embedding, fitted on the training images after training.

Differences between images of one class (pose, light, background) span a few directions of the
embedding; whitening by the within-class covariance shrinks those directions, so that what is left
to compare is what tells classes apart (Mikolajczyk & Matas, ICCV 2007; the "learned whitening" of
Radenović et al., TPAMI 2018). ``power`` sets how far: 0 leaves the embedding as it is (centred),
1 whitens it fully, 0.5 takes the square root of each direction's spread. The covariance of 1,280
dimensions from about a thousand images is shrunk towards a multiple of the identity by the
Ledoit-Wolf estimate, so directions no image varied in stay as they are.
"""

from __future__ import annotations

import numpy as np
from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
import torch.nn.functional as F
from torch import nn


def fit(embeddings: np.ndarray, codes: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, matrix)`` for :class:`Whitening`: the mean of ``embeddings`` (N, D) and the
    within-class covariance of classes ``codes`` (its Ledoit-Wolf estimate) to the power ``-power / 2``.

    ValueError when no class has two images (there is no within-class spread to learn from), or when the
    spread is too little to invert at a ``power`` above 0 (one class of two images alone, or pairs
    differing along one line, span one direction, which the Ledoit-Wolf estimate does not shrink:
    it sees no sampling noise; images identical within their classes span none).
    """
    from sklearn.covariance import ledoit_wolf

    x = np.asarray(embeddings, np.float64)
    codes = np.asarray(codes)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    if not (counts > 1).any():
        raise ValueError("whitening needs a class with at least two images")
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, inverse, x)
    residuals = (x - means[inverse] / counts[inverse, None])[counts[inverse] > 1]
    covariance, _ = ledoit_wolf(residuals, assume_centered=True)
    values, vectors = np.linalg.eigh(covariance)
    if power > 0 and not values[0] > values[-1] * len(values) * np.finfo(np.float64).eps:  # singular: no inverse
        raise ValueError("whitening needs more spread within the training classes than they have (one pair of "
                         "images, or identical images, is not enough): use --whiten 0")
    return x.mean(axis=0), (vectors * values ** (-power / 2)) @ vectors.T


class Whitening(nn.Module):
    """Embeddings (N, D) -> L2-normalised ``(x - mean) @ matrix``; exported as part of the network."""

    def __init__(self, mean: np.ndarray, matrix: np.ndarray) -> None:
        super().__init__()
        matrix = torch.as_tensor(matrix, dtype=torch.float64)
        self.register_buffer("matrix", matrix.float())
        self.register_buffer("offset", (torch.as_tensor(mean, dtype=torch.float64) @ matrix).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x @ self.matrix - self.offset, dim=1)
