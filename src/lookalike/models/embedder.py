"""The ONNX Runtime session that turns batches of images into feature vectors.

This is all the query path loads: no torch import once the model's ONNX file is cached.
"""

from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import Sequence

import numpy as np
from PIL import Image

from lookalike.models.registry import ModelError, ModelSpec


class Embedder:
    """Embeds preprocessed batches with ONNX Runtime; ``threads=None`` lets ORT use every core."""

    def __init__(self, spec: ModelSpec, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        from lookalike.models.export import onnx_file

        self.spec = spec
        path = onnx_file(spec)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise ModelError("--device cuda needs onnxruntime-gpu and a CUDA GPU; neither was found")
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        except Exception as e:  # ORT raises its own exception types for bad files
            raise ModelError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        if not spec.dim:
            size = spec.preprocessing.size
            try:
                dim = self.embed(np.zeros((1, 3, size, size), np.float32)).shape[1]
            except Exception as e:
                raise ModelError(f"ONNX model {path.name} does not accept (N, 3, {size}, {size}) inputs: "
                                 f"{str(e).splitlines()[0]}") from None
            self.spec = replace(spec, layers={spec.layer: dim})

    @property
    def preprocess(self):
        """RGB PIL image -> (3, S, S) float32 array."""
        return self.spec.preprocessing

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 inputs -> (N, D) float32 features (N, C, H, W outputs are pooled)."""
        if self.spec.preprocessing.layout == "NHWC":
            batch = batch.transpose(0, 2, 3, 1)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        if out.ndim == 4:
            out = out.mean(axis=(2, 3))
        return np.ascontiguousarray(out.reshape(len(batch), -1), dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        return self.embed(np.stack([self.preprocess(img) for img in images]))
