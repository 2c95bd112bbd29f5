"""Fine-tuning an EfficientNet-Lite embedding against class proxies, fast enough for a laptop CPU.

The last ``unfreeze`` MBConv blocks, the 1x1 head convolution and the embedding head are trained;
the blocks before them stay frozen (batch-norm statistics stay frozen everywhere). Two ways to
feed the trained tail (``TrainConfig.augment``):

``"pixels"``
    every step decodes the images, takes a random resized crop rendered at ``crop_size`` pixels,
    resized to ``train_size``, and flips half of them, runs the frozen blocks without gradients,
    then trains the tail.
``"features"``
    the frozen blocks' output for every training image and its mirror image is computed once and
    cached on disk (float16); each step picks a view and takes a random resized crop *of the
    cached feature map*. Several times cheaper per step, but two fixed views are less varied
    than fresh crops of the pixels.

``unfreeze >= number of blocks`` trains the whole network, stem included. Validation embeds
held-out images (by default whole held-out classes: the open-set case) whole at the exported
model's input size (``TrainConfig.embed_size``) after every epoch, from cached frozen activations.
A checkpoint is written after every epoch, so an interrupted run resumes where it stopped. After
the last epoch the exported network's embedding is whitened (``TrainConfig.whiten``), fitted on the
training images (:mod:`lookalike.train.whiten`).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lookalike import atomic
from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
import torch.nn.functional as F

from lookalike.evaluation import retrieval
from lookalike.images import ImageError, decode, folder, list_images
from lookalike.models.efficientnet_lite import build
from lookalike.models.registry import ModelError, ModelSpec, resolve
from lookalike.train import data as _data
from lookalike.train.average import Average
from lookalike.train.config import TrainConfig
from lookalike.train.head import EmbeddingNet, loss_for
from lookalike.train.whiten import Whitening, check_classes as check_whitening, fit as fit_whitening

CHECKPOINT = "checkpoint.pt"
CACHE_DIR = ".cache"
INIT_PER_CLASS = 8  # images per class whose mean embedding starts its proxy
CENTRE_IMAGES = 2000  # images of a centring folder embedded for its mean (a seeded sample of a larger one)


@dataclass
class Epoch:
    """One line of the training history; ``epoch == 0`` is the untrained network."""

    epoch: int
    loss: float | None
    seconds: float
    val: dict | None = None


@dataclass
class Prepared:
    """Data and frozen-part activations shared by every run with the same model, split and ``unfreeze``;
    ``spec`` is the base model, validation embeds at ``embed_size`` (0: its input size)."""

    spec: ModelSpec
    start: int
    train: _data.LabelledImages
    val: _data.LabelledImages | None
    train_acts: np.ndarray | None = None  # (N, 2, C, H, W) float16: image and mirror image
    val_acts: np.ndarray | None = None  # (N, C, H, W) float16, at the embedding size
    cache_dir: Path | None = None
    embed_size: int = 0
    centre: tuple[str, ...] = ()  # images whose mean embedding the exported one is centred on (none: the training images')
    centre_root: str | None = None
    centre_listed: int = 0  # images in the centring folder, of which ``centre`` is a sample

    @property
    def embedding(self) -> ModelSpec:
        """The exported model's spec: the base model at the embedding size."""
        return embedding_spec(self.spec, self.embed_size)

    def centred_on_val(self) -> Prepared:
        """A copy whose exports are centred on the validation images (see ``prepare``'s ``centre_dir``)."""
        return replace(self, centre=tuple(self.val.paths), centre_root=self.val.root, centre_listed=len(self.val))

    def close(self) -> None:
        """Delete the activation cache from disk."""
        self.train_acts = self.val_acts = None
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


@dataclass
class Result:
    """The network to export (``net``); ``history`` follows the trained weights epoch by epoch, and
    ``final`` is the exported network's validation when averaging or blending made it another one."""

    net: EmbeddingNet
    config: TrainConfig
    spec: ModelSpec
    history: list[Epoch] = field(default_factory=list)
    final: dict | None = None
    average: Average | None = field(default=None, repr=False)
    centre: dict | None = None  # the centring folder, images used and unreadable ones, when there was one

    @property
    def val(self) -> dict | None:
        if self.final is not None:
            return self.final
        return self.history[-1].val if self.history else None


Progress = Callable[[str, int, int, dict], None]
"""``progress(stage, done, total, info)``: stage "cache", "train" (info: epoch, loss) or "epoch" (info: the Epoch)."""


def _quiet(stage: str, done: int, total: int, info: dict) -> None:
    pass


def base_spec(config: TrainConfig) -> ModelSpec:
    """The registry model training starts from; only EfficientNet-Lite networks can be fine-tuned."""
    spec = resolve(config.model)
    if spec.family != "efficientnet-lite":
        raise ModelError(f"training starts from an EfficientNet-Lite model (efficientnet-lite0/1/2), not {spec.name}")
    return spec.with_layer(config.layer)


def embedding_spec(spec: ModelSpec, embed_size: int) -> ModelSpec:
    """``spec`` taking whole images of ``embed_size`` pixels (0: its own input size)."""
    if embed_size in (0, spec.preprocessing.size):
        return spec
    return replace(spec, preprocessing=replace(spec.preprocessing, size=embed_size))


def prepare(data_dir: str | os.PathLike, config: TrainConfig, cache_root: str | os.PathLike,
            val_dir: str | os.PathLike | None = None, progress: Progress = _quiet, workers: int = 2,
            follow_links: bool = False, centre_dir: str | os.PathLike | None = None) -> Prepared:
    """Scan and split the data and cache the frozen blocks' activations under ``cache_root``.

    The cache is keyed by the files, model and split, so a second call (a resumed run, another
    grid point of ``tune``) reuses it. ``val_dir`` validates on another folder instead of a split.
    ``follow_links`` also takes what symbolic links lead to outside the data folders. ``centre_dir``:
    the exported embedding is centred on the mean of its images (labelled or not; a seeded sample of
    ``CENTRE_IMAGES`` of more), not the training images'.
    """
    config.check()
    spec = base_spec(config)
    everything = _data.scan(data_dir, follow_links)
    if val_dir is not None:
        train, val = everything, _data.scan(val_dir, follow_links)
    else:
        tr, va = _data.split(everything.codes, config.val_split, config.val_fraction, config.seed)
        train, val = everything.subset(tr), (everything.subset(va) if va.size else None)
    net = EmbeddingNet(build(spec), config.dim).to(memory_format=torch.channels_last)
    start = max(0, net.n_blocks - config.unfreeze)
    prep = Prepared(spec, start, train, val, embed_size=config.embed_size)
    if centre_dir is not None:
        prep.centre_root = folder(centre_dir)
        listed = list(list_images(prep.centre_root, follow_links=follow_links))
        if not listed:
            raise ValueError(f"no images to centre on in {centre_dir}")
        chosen = np.random.default_rng(config.seed).choice(len(listed), min(len(listed), CENTRE_IMAGES), replace=False)
        prep.centre, prep.centre_listed = tuple(listed[i] for i in sorted(chosen)), len(listed)
    if start == 0:
        return prep
    prep.cache_dir = Path(cache_root) / _cache_key(spec, start, train, val)
    prep.cache_dir.mkdir(parents=True, exist_ok=True)
    if config.augment == "features":
        prep.train_acts = _cached(prep.cache_dir / "train.npy", net, spec, start, train.paths, True, progress,
                                  workers)
    if val is not None:
        size = prep.embedding.preprocessing.size
        name = "val.npy" if size == spec.preprocessing.size else f"val-{size}.npy"
        prep.val_acts = _cached(prep.cache_dir / name, net, prep.embedding, start, val.paths, False, progress,
                                workers)
    return prep


def _cache_key(spec: ModelSpec, start: int, *sets: _data.LabelledImages | None) -> str:
    h = hashlib.sha256(json.dumps([spec.name, spec.layer, spec.preprocessing.size, start]).encode())
    for s in sets:
        for p in (s.paths if s is not None else ["<none>"]):
            st = os.stat(p) if s is not None else None
            h.update(f"{p}\0{st.st_size if st else 0}\0{st.st_mtime_ns if st else 0}\n".encode())
    return h.hexdigest()[:16]


def _load_input(spec: ModelSpec, path: str) -> np.ndarray:
    return spec.preprocessing(decode(path, spec.preprocessing.size))


def _cached(path: Path, net: EmbeddingNet, spec: ModelSpec, start: int, paths: list[str], mirrored: bool,
            progress: Progress, workers: int, batch: int = 32) -> np.ndarray:
    """Activations at the input of block ``start`` for ``paths`` (and their mirror images), memory-mapped."""
    done = path.with_suffix(".done")
    if done.exists():
        return np.load(path, mmap_mode="r")
    size = spec.preprocessing.size
    with torch.no_grad():
        shape = tuple(net.prefix(torch.zeros(1, 3, size, size), start).shape[1:])
    views = 2 if mirrored else 1
    out = reserved_memmap(path, (len(paths), views, *shape) if mirrored else (len(paths), *shape))
    try:
        with ThreadPoolExecutor(workers) as pool, torch.no_grad():
            for at in range(0, len(paths), batch):
                x = np.stack(list(pool.map(lambda p: _load_input(spec, p), paths[at:at + batch])))
                if mirrored:
                    x = np.concatenate([x, x[..., ::-1]])
                x = torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last)
                acts = net.prefix(x, start).contiguous().numpy().astype(np.float16)
                n = len(acts) // views
                out[at:at + n] = np.stack([acts[:n], acts[n:]], axis=1) if mirrored else acts
                progress("cache", at + n, len(paths), {"name": path.stem})
        out.flush()
    except BaseException:
        del out
        path.unlink(missing_ok=True)
        raise
    del out
    done.touch()
    return np.load(path, mmap_mode="r")


def reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new float16 ``.npy`` of ``shape`` at ``path``, memory-mapped for writing, its blocks allocated
    first: a full disk is an ``OSError`` here (and no file is left), not a SIGBUS on a later page."""
    try:
        out = np.lib.format.open_memmap(path, "w+", np.float16, shape)  # a full disk can stop its header
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot reserve
                raise
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return out


def feature_crops(acts: torch.Tensor, size: int, rng: np.random.Generator, scale: float) -> torch.Tensor:
    """A random resized crop of each feature map (N, C, H, W), resampled to ``size`` x ``size``."""
    n, _, h, w = acts.shape
    theta = torch.zeros(n, 2, 3)
    for i in range(n):
        left, top, right, bottom = _data.crop_box(rng, w, h, (scale, 1.0))
        theta[i, 0, 0], theta[i, 0, 2] = right - left, right + left - 1
        theta[i, 1, 1], theta[i, 1, 2] = bottom - top, bottom + top - 1
    grid = F.affine_grid(theta, [n, acts.shape[1], size, size], align_corners=False)
    return F.grid_sample(acts, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _Batches:
    """Inputs for :meth:`EmbeddingNet.tail`: cached feature maps, or decoded images (``start`` 0)."""

    def __init__(self, prep: Prepared, config: TrainConfig, pool: ThreadPoolExecutor) -> None:
        self.prep, self.config, self.pool = prep, config, pool
        self.pre = prep.spec.preprocessing
        if prep.train_acts is not None:
            full = prep.train_acts.shape[-1]
            self.size = max(1, round(full * config.train_size / self.pre.size))

    def train(self, positions: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Augmented training inputs: feature-map crops of a random view, or pixel crops and flips."""
        acts = self.prep.train_acts
        if acts is None:
            seeds = rng.integers(0, 2**63, size=len(positions))
            paths = self.prep.train.paths
            detail = self.config.crop_size or self.config.train_size
            pre = replace(self.pre, size=self.config.train_size)  # resizes a crop of other pixels to train_size
            imgs = self.pool.map(lambda a: pre(_data.augment(decode(paths[a[0]], detail), detail,
                                                             np.random.default_rng(a[1]), (self.config.crop_scale, 1.0))),
                                 zip(positions, seeds))
            return torch.from_numpy(np.stack(list(imgs)))
        order = np.argsort(positions)  # memory-mapped rows read in file order
        views = rng.integers(0, acts.shape[1], size=len(positions))
        x = np.empty((len(positions), *acts.shape[2:]), np.float32)
        x[order] = acts[positions[order]][np.arange(len(order)), views[order]]
        return feature_crops(torch.from_numpy(x), self.size, rng, self.config.crop_scale)

    def whole(self, which: str, positions: np.ndarray, pixels: int | None = None) -> tuple[torch.Tensor, int]:
        """Unaugmented inputs for sorted ``positions`` at ``pixels`` (default: the base model's input
        size for training images, the embedding size for validation images), and the block they
        enter: cached feature maps, else images."""
        acts = self.prep.train_acts if which == "train" else self.prep.val_acts
        native = (self.pre if which == "train" else self.prep.embedding.preprocessing).size
        pixels = pixels or native
        if acts is None:
            pre = replace(self.pre, size=pixels)
            paths = (self.prep.train if which == "train" else self.prep.val).paths
            x = np.stack(list(self.pool.map(lambda i: pre(decode(paths[i], pixels)), positions)))
            return torch.from_numpy(x), 0
        rows = np.asarray(acts[positions], np.float32)
        x = torch.from_numpy(rows[:, 0] if which == "train" else rows)
        if pixels != native:
            size = max(1, round(x.shape[-1] * pixels / native))
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return x, self.prep.start


@torch.no_grad()
def embed(net: EmbeddingNet, batches: _Batches, which: str, positions: np.ndarray, pixels: int | None = None,
          batch: int = 64) -> np.ndarray:
    """Embeddings of unaugmented train or validation images at sorted ``positions``."""
    parts = [net.tail(*batches.whole(which, positions[a:a + batch], pixels)).numpy()
             for a in range(0, len(positions), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, net.embedding.proj.out_features), np.float32)


def validate(net: EmbeddingNet, prep: Prepared, batches: _Batches) -> dict | None:
    """Leave-one-out retrieval metrics on the validation images (None without validation data), with
    each class's count of queries and mAP (``by_class``)."""
    if prep.val is None or len(prep.val) < 2:
        return None
    x = embed(net, batches, "val", np.arange(len(prep.val)))
    r = retrieval.evaluate(x, prep.val.codes, "cosine")
    s = r.summary()
    return {**{k: s[k] for k in ("n_images", "n_classes", "recall@1", "recall@5", "recall@10", "map", "map@r",
                                 "median_rank")},
            "by_class": r.map_by_class(prep.val.labels)}


def fit(prep: Prepared, config: TrainConfig, checkpoint_dir: str | os.PathLike | None = None,
        progress: Progress = _quiet, resume: bool = False, workers: int = 2, device: str = "cpu",
        deadline: float | None = None, also_ema: tuple[float, ...] = ()) -> Result:
    """Train on ``prep`` and return the network; checkpoints go to ``checkpoint_dir`` after every epoch.

    ``resume`` continues from the checkpoint there. ``deadline`` (a ``time.perf_counter()`` value)
    stops after the epoch during which it passes. ``also_ema``: more moving averages to keep beside
    ``config.ema``'s, for :func:`reblend` to export from the same run.
    """
    config.check()
    if config.whiten:  # before the training it would follow
        check_whitening(prep.train.codes)
    dev = _device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = EmbeddingNet(build(prep.spec), config.dim).eval()
    loss_fn = loss_for(config.loss, config.dim, len(prep.train.classes), config.temperature, config.margin)
    average = Average(net, config.ema, also_ema)
    head = [*net.embedding.parameters(), *loss_fn.parameters()]
    opt = torch.optim.AdamW([*({"params": group, "lr": config.lr * config.lr_decay ** depth}
                               for depth, group in enumerate(net.trainable(prep.start))),
                             {"params": head, "lr": config.lr * config.head_lr_scale}],
                            weight_decay=config.weight_decay)
    steps = math.ceil(len(prep.train) / config.batch_size)
    total = steps * config.epochs
    warmup = min(steps, max(1, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    history: list[Epoch] = []
    first = 1
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    with ThreadPoolExecutor(workers) as pool:
        batches = _Batches(prep, config, pool)
        if resume and ckpt is not None and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            net.load_state_dict(state["net"])
            loss_fn.load_state_dict(state["loss"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            average.load(state.get("average"))
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            history = [Epoch(**e) for e in state["history"]]
            first = state["epoch"] + 1
        else:
            started = time.perf_counter()
            some = _data.per_class(prep.train.codes, INIT_PER_CLASS, rng)
            loss_fn.init_from(torch.from_numpy(embed(net, batches, "train", some, config.train_size)),
                              torch.from_numpy(prep.train.codes[some]))
            history.append(Epoch(0, None, time.perf_counter() - started, validate(net, prep, batches)))
            progress("epoch", 0, config.epochs, {"epoch": history[-1]})
        net.to(dev, memory_format=torch.channels_last)  # measured faster for these convolutions on CPU
        loss_fn.to(dev)
        for epoch in range(first, config.epochs + 1):
            if deadline is not None and time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            losses = []
            for i, positions in enumerate(_data.balanced_batches(prep.train.codes, config.batch_size,
                                                                 config.per_class, rng)):
                x = batches.train(positions, rng).to(dev, memory_format=torch.channels_last)
                if prep.train_acts is None and prep.start > 0:
                    with torch.no_grad():  # frozen blocks on augmented pixels
                        x = net.prefix(x, prep.start)
                loss = loss_fn(net.tail(x, prep.start), torch.from_numpy(prep.train.codes[positions]).to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                average.update()
                losses.append(loss.item())
                progress("train", i + 1, steps, {"epoch": epoch, "loss": float(np.mean(losses[-20:]))})
            net.cpu()
            history.append(Epoch(epoch, float(np.mean(losses)), time.perf_counter() - started,
                                 validate(net, prep, batches)))
            net.to(dev, memory_format=torch.channels_last)
            if ckpt is not None:
                _save(ckpt, {"net": net.state_dict(), "loss": loss_fn.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "rng": rng.bit_generator.state,
                             "torch_rng": torch.get_rng_state(), "epoch": epoch, "average": average.state(),
                             "history": [asdict(e) for e in history], "config": asdict(config)})
            progress("epoch", epoch, config.epochs, {"epoch": history[-1]})
        net.to("cpu", memory_format=torch.contiguous_format).eval()
        return reblend(Result(net, config, prep.embedding, history, average=average), prep, config.blend,
                       batches=batches)


def reblend(result: Result, prep: Prepared, share: float, ema: float | None = None,
            batches: _Batches | None = None, workers: int = 2, whiten: float | None = None) -> Result:
    """``result`` exporting ``share`` of its trained weights (``ema`` 0) or of their moving average
    of decay ``ema`` (default: the run's ``config.ema``) and ``1 - share`` of the starting ones, at
    ``prep``'s embedding size, whitened to the power ``whiten`` (default: the run's
    ``config.whiten``; 0: not at all), validated; the trained network itself when there is nothing
    to average, blend, whiten or embed at another size. ``tune`` scores several blends, averages,
    whitenings and embedding sizes of one training run this way."""
    ema = result.config.ema if ema is None else ema
    whiten = result.config.whiten if whiten is None else whiten
    config = replace(result.config, blend=share, ema=ema, whiten=whiten)
    if result.average is None:
        return replace(result, config=config, final=None)
    config = replace(config, embed_size=prep.embed_size)
    trained = ema == 0 and share == 1
    if trained and prep.embedding == result.spec and not whiten and not prep.centre:
        return replace(result, net=result.average.net, config=config, final=None)
    net = result.average.net if trained else result.average.exported(share, ema)
    centre = None
    with contextlib.ExitStack() as stack:
        if batches is None:
            batches = _Batches(prep, result.config, stack.enter_context(ThreadPoolExecutor(workers)))
        if whiten or prep.centre:
            net, centre = whitened(net, prep, batches, whiten)
        final = validate(net, prep, batches)
    return replace(result, net=net, spec=prep.embedding, config=config, final=final, centre=centre)


def whitened(net: EmbeddingNet, prep: Prepared, batches: _Batches, power: float) -> tuple[EmbeddingNet, dict | None]:
    """A copy of ``net`` whitening its embeddings to ``power`` (:mod:`lookalike.train.whiten`), fitted
    on every training image, embedded whole as the exported model embeds (at ``prep``'s embedding
    size), and centred on the mean of ``prep.centre``'s images when there are any (then ``power`` 0
    only centres); with what :func:`centring` reports of them (None without them)."""
    mean, matrix, centre = None, np.eye(net.embedding.proj.out_features), None
    if power:
        x = embed(net, batches, "train", np.arange(len(prep.train)), prep.embedding.preprocessing.size)
        mean, matrix = fit_whitening(x, prep.train.codes, power)
    if prep.centre:
        mean, centre = centring(net, prep, batches.pool)
    out = copy.deepcopy(net)
    out.whitening = Whitening(mean, matrix)
    return out.eval(), centre


@torch.no_grad()
def centring(net: EmbeddingNet, prep: Prepared, pool: ThreadPoolExecutor,
             batch: int = 64) -> tuple[np.ndarray, dict]:
    """The mean embedding by ``net`` of ``prep.centre``'s images, embedded whole as the exported model
    embeds, and ``{"data", "listed", "images", "unreadable"}`` (the folder, its images, those used, and
    the path and reason of each one that could not be decoded, which is skipped). ValueError when none could be."""
    unreadable: list[list[str]] = []

    def load(path: str) -> np.ndarray | None:
        try:
            return _load_input(prep.embedding, path)
        except ImageError as e:
            unreadable.append([path, str(e)])
            return None

    total, used = np.zeros(net.embedding.proj.out_features), 0
    for at in range(0, len(prep.centre), batch):
        x = [a for a in pool.map(load, prep.centre[at:at + batch]) if a is not None]
        if x:
            total += net.tail(torch.from_numpy(np.stack(x)), 0).double().sum(0).numpy()
            used += len(x)
    if not used:
        raise ValueError(f"none of the {len(prep.centre)} images to centre on in {prep.centre_root} could be read")
    return total / used, {"data": prep.centre_root, "listed": prep.centre_listed, "images": used,
                          "unreadable": sorted(unreadable)}


def saved_config(checkpoint_dir: str | os.PathLike) -> TrainConfig | None:
    """The configuration of the checkpoint in ``checkpoint_dir``, if there is one."""
    ckpt = Path(checkpoint_dir) / CHECKPOINT
    if not ckpt.exists():
        return None
    return TrainConfig.from_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["config"])


def _save(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` whole or not at all (a full disk leaves the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic.replacing(path) as f:
            torch.save(state, f)
    except RuntimeError as e:  # torch's zip writer reports a failed write (a full disk) as its own error
        if isinstance(e.__context__, OSError):
            raise e.__context__ from None
        raise


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda needs a CUDA build of torch and a GPU; neither was found")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or auto")
    return torch.device(device)
