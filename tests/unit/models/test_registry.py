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
