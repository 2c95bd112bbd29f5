"""Exporting a registry model to ONNX once and caching the file (imports torch, only when needed)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from lookalike.models.registry import ModelSpec
from lookalike.paths import cache_dir as _cache_root


def cache_dir() -> Path:
    """Where exported models live: ``$LOOKALIKE_CACHE`` or the user's cache directory."""
    return _cache_root("onnx")


def onnx_file(spec: ModelSpec) -> Path:
    """Path of the ONNX file for ``spec``, exporting it first when it is not cached yet."""
    if spec.onnx_path is not None:
        return spec.onnx_path
    path = cache_dir() / cache_name(spec)
    if not path.exists():
        export(spec, path)
    return path


def cache_name(spec: ModelSpec) -> str:
    """File name of the cached export: model, layer, input size and, for run-time weights, the
    first 8 hex digits of their SHA-256 (so another weights file exports again)."""
    weights = f"-{spec.weights_sha256[:8]}" if spec.weights_sha256 else ""
    return f"{spec.name}-{spec.layer}-{spec.preprocessing.size}{weights}.onnx"


def build_torch(spec: ModelSpec):
    """The torch module of a registry model: (N, 3, S, S) inputs to (N, D) features."""
    if spec.family == "efficientnet-lite":
        from lookalike.models import efficientnet_lite

        return efficientnet_lite.build(spec)
    if spec.family == "inception-fid":
        from lookalike.models import fid_weights, inception_fid
        from lookalike.models.registry import check_weights, file_sha256

        path = fid_weights.resolve_weights(spec.weights_path)
        if spec.weights_path is None:  # an index's weights found again: make sure they are the same
            check_weights(spec.name, path, file_sha256(path), spec.weights_sha256)
        return inception_fid.build(layer=spec.layer, weights=path)
    raise ValueError(f"no torch builder for family {spec.family!r}")


def export(spec: ModelSpec, path: Path, module=None) -> None:
    """Write ``module`` (default: the registry network of ``spec``) to ``path`` atomically."""
    import torch

    module = build_torch(spec) if module is None else module
    size = spec.preprocessing.size
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notices
            torch.onnx.export(module.eval(), torch.zeros(2, 3, size, size), tmp, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["features"],
                              dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
