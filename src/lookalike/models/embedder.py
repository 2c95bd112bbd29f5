"""The ONNX Runtime session that turns batches of images into feature vectors.

This is all the query path loads: no torch import once the model's ONNX file is cached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.models.registry import ModelError, ModelSpec


DEVICES = ("auto", "cpu", "cuda")


def providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime execution providers for ``device``; :class:`ModelError` for an unknown device or
    ``"cuda"`` without a CUDA provider (``onnxruntime-gpu``)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose from: {', '.join(DEVICES)}")
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("--device cuda needs onnxruntime-gpu (pip install onnxruntime-gpu) and a CUDA GPU; "
                         "this ONNX Runtime has no CUDA provider")
    return ["CPUExecutionProvider"]


class Embedder:
    """Embeds preprocessed batches with ONNX Runtime.

    ``threads`` is the number of intra-op threads (``None``: ONNX Runtime's default, one per
    physical core); ops run one at a time (sequential execution, one inter-op thread), which is
    fastest for these CNNs, and idle threads sleep instead of spinning, which leaves the cores to
    the decoding threads and other processes (faster on a busy machine: see ``benchmarks/models.py``).
    On the CPU, a batch of at least two images per thread is instead split across ``threads``
    (default: the usable CPUs) one-thread sessions run side by side: whole images per core scale
    better than splitting every op (EfficientNet-Lite0, batch 8, 2 cores: 110 vs 93 img/s). Those
    sessions are made on first use, so queries never load them.
    ``device``: ``"cpu"``; ``"cuda"`` (ONNX Runtime's CUDA provider, an error without
    ``onnxruntime-gpu`` and a GPU); ``"auto"`` (CUDA when available, else CPU).
    """

    def __init__(self, spec: ModelSpec, threads: int | None = None, device: str = "cpu") -> None:
        from lookalike.models.export import onnx_file

        chosen = providers(device)
        self.spec = spec
        path = onnx_file(spec)
        self._path, self.threads = path, threads or _cores()
        try:
            self.session = ort_session(path, threads or 0, chosen)
        except Exception as e:  # ORT raises its own exception types for bad files
            raise ModelError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None
        self._split = self.threads > 1 and self.session.get_providers()[0] == "CPUExecutionProvider"
        self._replicas: tuple[ThreadPoolExecutor, list] | None = None
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise ModelError("--device cuda: ONNX Runtime could not start its CUDA provider (check the CUDA and "
                             "cuDNN libraries onnxruntime-gpu needs)")
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
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._split and len(batch) >= 2 * self.threads:
            pool, sessions = self._replica_sessions()
            parts = np.array_split(batch, self.threads)
            out = np.concatenate(list(pool.map(self._run, sessions, parts)))
        else:
            out = self._run(self.session, batch)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _run(self, session, batch: np.ndarray) -> np.ndarray:
        out = session.run(None, {self.input_name: batch})[0]
        if out.ndim == 4:
            out = out.mean(axis=(2, 3))
        return out.reshape(len(batch), -1)

    def _replica_sessions(self) -> tuple[ThreadPoolExecutor, list]:
        """``threads`` one-thread CPU sessions and a pool to run them side by side (made once)."""
        if self._replicas is None:
            sessions = [ort_session(self._path, 1, ["CPUExecutionProvider"]) for _ in range(self.threads)]
            self._replicas = (ThreadPoolExecutor(self.threads, thread_name_prefix="lookalike-ort"), sessions)
        return self._replicas

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images."""
        return self.embed(np.stack([self.preprocess(img) for img in images]))


def with_dimension(spec: ModelSpec, threads: int | None = None,
                   device: str = "cpu") -> tuple[ModelSpec, Embedder | None]:
    """``spec`` with its feature dimension known, and the session that learnt it: a bare ``.onnx``
    file (no ``dim`` in its sidecar) is loaded once to find it; any other spec is returned as is."""
    if spec.family == "onnx" and not spec.dim:
        embedder = Embedder(spec, threads, device)
        return embedder.spec, embedder
    return spec, None


def ort_session(path: Path, threads: int, chosen: list[str], spinning: bool = False):
    """An ONNX Runtime session with lookalike's settings: all graph optimisations, sequential
    execution, ``threads`` intra-op threads (0: ONNX Runtime's default) that sleep when idle
    unless ``spinning``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), options, providers=chosen)


def _cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
