"""Exporting a registry model to ONNX once and caching it: on stand-in torch modules (a small
convolution), so nothing here builds or exports a real network."""

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lookalike.models import efficientnet_lite, export, fid_weights, inception_fid
from lookalike.models.registry import ModelError, resolve


class Pooled(torch.nn.Module):
    """(N, 3, S, S) -> (N, 4): a seeded 3x3 convolution, averaged."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def small(name="efficientnet-lite0", layer=None):
    spec = resolve(name).with_layer(layer)
    return replace(spec, preprocessing=replace(spec.preprocessing, size=16))


def test_exports_are_cached_under_the_cache_folder():
    assert export.cache_dir() == Path(os.environ["LOOKALIKE_CACHE"]) / "onnx"


def test_a_cached_exports_name_holds_model_layer_size_and_weights():
    assert export.cache_name(resolve("efficientnet-lite1", "blocks")) == "efficientnet-lite1-blocks-240.onnx"
    spec = replace(resolve("inception-v3-fid", weights_sha256="0123456789abcdef" * 4), layer="pool1")
    assert export.cache_name(spec) == "inception-v3-fid-pool1-299-01234567.onnx"


def test_an_export_runs_as_the_module_with_any_batch(tmp_path):
    path = tmp_path / "a" / "b" / "m.onnx"
    module = Pooled().train()
    export.export(small(), path, module)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # no temporary file left
    model = onnx.load(path)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["features"]
    assert session.get_inputs()[0].shape == ["batch", 3, 16, 16] and session.get_outputs()[0].shape == ["batch", 4]
    for n in (1, 3):
        x = np.random.default_rng(n).normal(size=(n, 3, 16, 16)).astype(np.float32)
        with torch.no_grad():
            want = module.eval()(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(session.run(None, {"input": x})[0], want, atol=1e-5)


class Broken(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("cannot trace this")


def test_a_failed_export_leaves_no_file(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"the one before")
    with pytest.raises(RuntimeError, match="cannot trace this"):
        export.export(small(), tmp_path / "m.onnx", Broken())
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert (tmp_path / "m.onnx").read_bytes() == b"the one before"


def test_a_registry_model_is_exported_once_then_read_from_the_cache(monkeypatch):
    built = []
    monkeypatch.setattr(efficientnet_lite, "build", lambda spec: built.append(spec) or Pooled())
    spec = small("efficientnet-lite1")
    path = export.onnx_file(spec)
    assert path == export.cache_dir() / "efficientnet-lite1-pool-16.onnx" and path.is_file()
    assert built == [spec]
    assert export.onnx_file(spec) == path and built == [spec]  # cached: not built again
    x = np.ones((2, 3, 16, 16), np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x})[0], Pooled()(torch.from_numpy(x)).numpy(),
                                   atol=1e-5)
    path.unlink()


def test_a_models_own_onnx_file_is_used_as_it_is(tmp_path):
    own = tmp_path / "own.onnx"
    spec = replace(small(), onnx_path=own)
    assert export.onnx_file(spec) == own and not own.exists()  # nothing exported


def test_the_fid_inception_is_built_from_its_weights_file(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    built = []
    monkeypatch.setattr(inception_fid, "build", lambda **k: built.append(k) or "the network")
    spec = resolve("inception-v3-fid", "pool1", weights=weights)
    assert export.build_torch(spec) == "the network"
    assert built == [{"layer": "pool1", "weights": weights}]
    # an index's digest, the file found again where the weights are looked for
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, str(weights))
    spec = resolve("inception-v3-fid", weights_sha256=digest)
    assert spec.weights_path is None and export.build_torch(spec) == "the network"
    assert built[-1] == {"layer": "pool3", "weights": weights}
    other = resolve("inception-v3-fid", weights_sha256="ab" * 32)
    with pytest.raises(ModelError, match=r"^weights file .*w\.pth \(SHA-256 .{8}\.\.\.\) is not the one "
                                         r"inception-v3-fid was built with \(abababab\.\.\.\)$"):
        export.build_torch(other)
    assert len(built) == 2


def test_efficientnet_lite_is_built_by_its_module_and_others_have_no_builder(monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "build", lambda spec: ("built", spec.name, spec.layer))
    assert export.build_torch(resolve("efficientnet-lite2", "blocks")) == ("built", "efficientnet-lite2", "blocks")
    spec = replace(small(), family="onnx")
    with pytest.raises(ValueError) as err:
        export.build_torch(spec)
    assert str(err.value) == "no torch builder for family 'onnx'"


class Scaled(torch.nn.Module):
    """(N, 3, S, S) -> (N, 3) with no convolution first (whose input torch names ``input`` itself)."""

    def forward(self, pixels):
        return (pixels * 2).mean(dim=(2, 3))


def test_a_module_that_does_not_start_with_a_convolution_gets_the_named_input_of_any_batch(tmp_path):
    path = tmp_path / "m.onnx"
    export.export(small(), path, Scaled())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_inputs()[0].shape[0] == "batch"
    x = np.ones((5, 3, 16, 16), np.float32)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], np.full((5, 3), 2.0))


def test_the_export_is_written_beside_its_file_so_the_rename_stays_on_one_file_system(tmp_path, monkeypatch):
    import errno
    import tempfile

    elsewhere = tmp_path / "tmp"  # $TMPDIR, as if on another file system
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    real = os.replace

    def replace_on_one_file_system(src, dst):
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace_on_one_file_system)
    export.export(small(), tmp_path / "out" / "m.onnx", Pooled())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.onnx"] and not any(elsewhere.iterdir())
