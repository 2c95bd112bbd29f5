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


def check_classes(codes: np.ndarray) -> None:
    """ValueError unless the classes ``codes`` hold two images beyond the first of each (a class of
    three, or two classes of two): fewer span at most one direction of within-class spread, which
    :func:`fit` cannot invert. Training checks this before it starts."""
    counts = np.unique(np.asarray(codes), return_counts=True)[1]
    if (counts - 1).sum() < 2:
        raise ValueError("whitening needs a training class of three images or two classes of two: use --whiten 0")


def fit(embeddings: np.ndarray, codes: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, matrix)`` for :class:`Whitening`: the mean of ``embeddings`` (N, D) and the
    within-class covariance of classes ``codes`` (its Ledoit-Wolf estimate) to the power ``-power / 2``.

    ValueError when the classes are too few for any spread (:func:`check_classes`), or when the spread
    is too little to invert at a ``power`` above 0: pairs that all differ by one same step span one
    direction, which the Ledoit-Wolf estimate does not shrink (it sees no sampling noise); images
    identical within their classes span none.
    """
    from sklearn.covariance import ledoit_wolf

    check_classes(codes)
    x = np.asarray(embeddings, np.float64)
    _, inverse, counts = np.unique(np.asarray(codes), return_inverse=True, return_counts=True)
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, inverse, x)
    residuals = (x - means[inverse] / counts[inverse, None])[counts[inverse] > 1]
    covariance, _ = ledoit_wolf(residuals, assume_centered=True)
    values, vectors = np.linalg.eigh(covariance)
    if power > 0 and not values[0] > values[-1] * len(values) * np.finfo(np.float64).eps:  # singular: no inverse
        raise ValueError("whitening needs more spread within the training classes than they have (identical "
                         "images, or pairs that all differ by one same step, are not enough): use --whiten 0")
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
