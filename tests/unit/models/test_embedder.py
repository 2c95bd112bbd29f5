"""The ONNX Runtime embedder: batches split across one-thread sessions give the same features."""

import numpy as np
import pytest

from helpers import sample_photo, variants
from lookalike.models.embedder import Embedder
from lookalike.models.registry import resolve


def test_a_batch_split_across_one_thread_sessions_equals_one_image_at_a_time():
    photos = [sample_photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    photos += list(variants(photos[0]).values())
    emb = Embedder(resolve("efficientnet-lite0"), threads=3)
    batch = np.stack([emb.preprocess(p) for p in photos])
    assert len(batch) == 7
    emb.embed(batch[:5])  # fewer than two images per thread: the one session
    assert emb._replicas is None
    out = emb.embed(batch)  # split 3 + 2 + 2
    assert emb._replicas is not None and len(emb._replicas[1]) == 3
    one_by_one = np.concatenate([emb.embed(batch[i:i + 1]) for i in range(len(batch))])
    assert out.shape == (7, 1280) and out.dtype == np.float32
    np.testing.assert_allclose(out, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 1e-2  # distinct images, not one row repeated


@pytest.mark.slow
def test_default_model_onnx_features_equal_the_torch_network_they_were_exported_from():
    import torch

    from lookalike.models.export import build_torch

    spec = resolve()
    emb = Embedder(spec, threads=1)
    photos = [sample_photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "text")]
    batch = np.stack([emb.preprocess(p) for p in photos])
    onnx_out = emb.embed(batch)
    with torch.no_grad():
        torch_out = build_torch(spec)(torch.from_numpy(batch)).numpy()
    assert onnx_out.shape == torch_out.shape == (5, spec.dim)
    assert np.abs(torch_out).max() > 1  # features on their own scale, so the bound below is tight
    assert np.abs(onnx_out - torch_out).max() < 1e-4
