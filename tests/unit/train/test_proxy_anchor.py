"""The Proxy-Anchor loss (train/head.py) against values worked out by hand from the paper's formula
(Kim et al., CVPR 2020, eq. 4) and against a direct float64 reference of it."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.train.head import NormSoftmax, ProxyAnchor, loss_for


def with_proxies(proxies, temperature, margin):
    loss_fn = ProxyAnchor(proxies.shape[1], proxies.shape[0], temperature, margin)
    with torch.no_grad():
        loss_fn.proxies.copy_(proxies)
    return loss_fn


def reference(embeddings, proxies, codes, alpha, delta):
    """Eq. 4 of the paper, term by term, in float64."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    p = proxies / np.linalg.norm(proxies, axis=1, keepdims=True)
    cos = x @ p.T
    with_images = [c for c in range(len(p)) if (codes == c).any()]
    pulls = [math.log(1 + np.exp(-alpha * (cos[codes == c, c] - delta)).sum()) for c in with_images]
    pushes = [math.log(1 + np.exp(alpha * (cos[codes != c, c] + delta)).sum()) for c in range(len(p))]
    return sum(pulls) / len(with_images) + sum(pushes) / len(p)


def test_two_classes_three_images_by_hand():
    # proxies along the axes (their length does not count); cosines to (p0, p1): x0 (1, 0), x1 (0.6, 0.8), x2 (0, 1)
    loss_fn = with_proxies(torch.tensor([[2.0, 0.0], [0.0, 0.5]]), temperature=0.5, margin=0.1)  # alpha 2, delta 0.1
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    codes = torch.tensor([0, 0, 1])
    # pulls: p0 on x0 and x1: log(1 + e^(-2 (1 - 0.1)) + e^(-2 (0.6 - 0.1))); p1 on x2: log(1 + e^(-2 (1 - 0.1)))
    pulls = (math.log(1 + math.exp(-1.8) + math.exp(-1.0)) + math.log(1 + math.exp(-1.8))) / 2
    # pushes: p0 away from x2: log(1 + e^(2 (0 + 0.1))); p1 away from x0 and x1: log(1 + e^0.2 + e^(2 (0.8 + 0.1)))
    pushes = (math.log(1 + math.exp(0.2)) + math.log(1 + math.exp(0.2) + math.exp(1.8))) / 2
    assert (pulls, pushes) == pytest.approx((0.2902, 1.4554), abs=1e-4)  # worked on paper: 0.42738, 0.15298; 0.79814, 2.11275
    assert loss_fn(emb, codes).item() == pytest.approx(pulls + pushes, abs=1e-5)


def test_a_proxy_without_images_in_the_batch_only_pushes():
    # a third proxy (-0.6, -0.8): cosine -0.6 to x0, -1 to x1 (0.6, 0.8); no image of its class in the batch
    loss_fn = with_proxies(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, -0.8]]), temperature=1.0, margin=0.0)
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    codes = torch.tensor([0, 1])
    pulls = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-0.8))) / 2  # over the 2 proxies with images
    pushes = (math.log(1 + math.exp(0.6)) + math.log(1 + math.exp(0.0))
              + math.log(1 + math.exp(-0.6) + math.exp(-1.0))) / 3  # over all 3
    assert loss_fn(emb, codes).item() == pytest.approx(pulls + pushes, abs=1e-5)


def test_a_batch_matches_the_papers_formula():
    rng = np.random.default_rng(0)
    proxies, emb = rng.normal(size=(6, 8)), rng.normal(size=(10, 8))
    codes = np.array([0, 0, 1, 1, 1, 3, 3, 4, 4, 0])  # classes 2 and 5 have no image here
    loss_fn = with_proxies(torch.tensor(proxies, dtype=torch.float32), temperature=1 / 32, margin=0.1)
    got = loss_fn(F.normalize(torch.tensor(emb, dtype=torch.float32), dim=1), torch.tensor(codes))
    assert got.item() == pytest.approx(reference(emb, proxies, codes, 32, 0.1), rel=1e-5)


def test_a_large_scale_neither_overflows_nor_loses_its_gradient():
    rng = np.random.default_rng(1)
    proxies, emb = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    codes = np.array([0, 0, 1, 1, 2, 2])
    loss_fn = with_proxies(torch.tensor(proxies, dtype=torch.float32), temperature=1 / 200, margin=0.2)
    x = torch.tensor(emb, dtype=torch.float32, requires_grad=True)
    loss = loss_fn(F.normalize(x, dim=1), torch.tensor(codes))
    # e^(200 x 1.2) is far beyond float32 (about e^88): summed as written the loss would be infinite
    assert loss.item() == pytest.approx(reference(emb, proxies, codes, 200, 0.2), rel=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(loss_fn.proxies.grad).all()
    assert x.grad.abs().sum() > 0


def test_the_margin_and_the_scale_are_the_runs_margin_and_inverse_temperature():
    rng = np.random.default_rng(2)
    proxies, emb = rng.normal(size=(4, 5)), rng.normal(size=(8, 5))
    codes = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    x = F.normalize(torch.tensor(emb, dtype=torch.float32), dim=1)
    for temperature, margin in ((0.05, 0.0), (0.1, 0.3)):
        loss_fn = loss_for("proxy-anchor", 5, 4, temperature, margin)
        with torch.no_grad():
            loss_fn.proxies.copy_(torch.tensor(proxies))
        want = reference(emb, proxies, codes, 1 / temperature, margin)
        assert loss_fn(x, torch.tensor(codes)).item() == pytest.approx(want, rel=1e-5)


def test_loss_for_makes_the_loss_named_with_the_settings_given():
    plain = loss_for("normsoftmax", 8, 3, 0.1, 0.2)
    anchor = loss_for("proxy-anchor", 8, 3, 0.1, 0.2)
    assert type(plain) is NormSoftmax and type(anchor) is ProxyAnchor
    for loss_fn in (plain, anchor):
        assert loss_fn.proxies.shape == (3, 8) and (loss_fn.temperature, loss_fn.margin) == (0.1, 0.2)
    with pytest.raises(KeyError):
        loss_for("proxy_anchor", 8, 3, 0.1, 0.2)
