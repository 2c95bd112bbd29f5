"""What the tests share besides fixtures: small real photos (scikit-image's samples) and variants made
from them, running the CLI as a user would, and reference implementations written out from the
definitions. Fixtures live in ``conftest.py``."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

#: A folder name with brackets Rich would read as markup, spaces and unicode.
ODD_NAME = "set [s] [bold]x ü 漢"

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "hubble_deep_field",
          "immunohistochemistry", "retina", "moon", "text")


def sample_photo(name: str) -> Image.Image:
    """One of scikit-image's sample pictures as an RGB PIL image."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype != np.uint8:
        arr = (arr * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def variants(img: Image.Image) -> dict[str, Image.Image]:
    """Edited copies of a photo: flip, centre crop, colour jitter."""
    w, h = img.size
    return {
        "flip": ImageOps.mirror(img),
        "crop": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "bright": ImageEnhance.Brightness(img).enhance(1.25),
    }


def tiny_model(folder, dim: int = 8, size: int = 32, seed: int = 0):
    """A model directory (``model.onnx`` and its ``lookalike.json``) that indexes, queries and dedups in
    milliseconds, without torch: a seeded random 3x3 convolution (stride 2), ReLU and global average
    pooling, from (N, 3, ``size``, ``size``) inputs to ``dim``-d features that tell photos and their edits apart."""
    import json
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.standard_normal((dim, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array((rng.standard_normal(dim) * 0.1).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["output"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", dim])], [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    (folder / "lookalike.json").write_text(json.dumps({"name": f"tiny-{seed}", "input_size": size,
                                                       "mean": [0.5] * 3, "std": [0.5] * 3, "dim": dim}))
    return folder


class MeanColourEmbedder:
    """A stand-in for a model (no ONNX session): an image's mean value per channel after the default
    model's preprocessing, repeated to ``dim`` values; ``images`` counts the images it embedded."""

    def __init__(self, dim: int = 8) -> None:
        from lookalike.models.registry import resolve

        self.preprocess = resolve().preprocessing
        self.dim = dim
        self.images = 0

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return np.stack([np.resize(x.mean((1, 2)), self.dim) for x in batch]).astype(np.float32)

    def embed_images(self, images) -> np.ndarray:
        return self.embed(np.stack([self.preprocess(img) for img in images]))


def stand_in_index(root, dim: int = 8):
    """A new index folder at ``root`` under the default model's identity (its dedup presets apply) whose
    images :class:`MeanColourEmbedder` embeds: indexing and queries in milliseconds, no model export."""
    from lookalike.api import Index
    from lookalike.index.embedded import EmbeddedCollection
    from lookalike.index.store import Store
    from lookalike.models.registry import resolve

    spec = resolve()
    store = Store.create(root, {**spec.identity(), "dim": dim}, ref=spec.name)
    return Index(EmbeddedCollection(store), spec, embedder=MeanColourEmbedder(dim))


# Run a command without root's power to read any file, so file modes count even when the tests run as root.
WITHOUT_READ_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                         "--inh-caps", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def shard_rows(location) -> dict[str, dict]:
    """Every row of the embedding shards at ``location`` by path; fails on a path held twice."""
    from lookalike.cluster.shards import Shards, paths  # the cluster extra: only the tests that use it need it

    rows: dict[str, dict] = {}
    for _, shard in Shards(str(location)):
        for path, row in zip(paths(shard), shard.to_pylist()):
            assert path not in rows, f"{path} is in the shards twice"
            rows[path] = row
    return rows


def stand_in_ray(monkeypatch, fake, module):
    """Install ``fake`` as the ``ray`` module and give ``module`` a ``ray_session`` that records each
    ``(address, verbose)`` in ``fake.sessions`` instead of starting Ray; returns ``fake``."""

    @contextmanager
    def session(address, verbose):
        fake.sessions.append((address, verbose))
        yield

    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(module, "ray_session", session)
    return fake


def run_cli(*args, check: bool = True, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m lookalike ARGS`` as a user would (after ``prefix``, a command that wraps it);
    with ``check``, a non-zero exit fails the test."""
    proc = subprocess.run([*prefix, sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def run_cli_utf8(*args, prefix: list[str] = (), limit: int | None = None) -> tuple[int, str, str]:
    """Run ``python -m lookalike`` with a strict UTF-8 terminal, after the command ``prefix`` and under a
    file-size ``limit``; (exit code, stdout, stderr) decoded keeping non-UTF-8 bytes as surrogate escapes,
    as Python does for file names."""
    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([*prefix, sys.executable, "-m", "lookalike", *map(os.fspath, args)], capture_output=True,
                          timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
                          preexec_fn=limited if limit else None)
    decode = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
    return proc.returncode, decode(proc.stdout), decode(proc.stderr)


def photo_folder(folder, names=("chelsea", "rocket", "coffee")):
    """``folder``, made, holding the sample photos ``names`` as JPEGs."""
    folder.mkdir()
    for name in names:
        sample_photo(name).save(folder / f"{name}.jpg")
    return folder


def without_root_override() -> list[str]:
    """A command prefix under which file modes bind even for root (CAP_DAC_OVERRIDE dropped)."""
    import pytest

    if WITHOUT_READ_OVERRIDE and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes do not bind")
    return WITHOUT_READ_OVERRIDE


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving_in_thread(app, **config):
    """A uvicorn server over the ASGI ``app`` (``config`` as :class:`uvicorn.Config` takes it) in a thread
    of this process; yields its port on loopback."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, port=free_port(), log_level="error", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield server.config.port
    finally:
        server.should_exit = True
        thread.join(10)


#: Debian's chromium, which the browser tests drive (``apt-get install -y chromium``); skipped without it.
CHROMIUM = "/usr/bin/chromium"


@contextmanager
def served(index, **options):
    """A uvicorn server over ``index`` (``create_app``'s ``options``) in a thread, on a loopback socket
    bound to a free port; yields its URL."""
    import threading

    import uvicorn

    from lookalike.server import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(index, **options), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def served_folder(folder, index_dir):
    """:func:`served` over a new index of ``folder`` kept in ``index_dir``; yields its URL."""
    from lookalike.api import Index

    index = Index.open(index_dir, create=True)
    index.index(folder)
    try:
        with served(index) as url:
            yield url
    finally:
        index.close()


def results(page) -> list[tuple[str, float]]:
    """(name, distance) of the result cards of the web page, in order."""
    cards = page.locator("#results li a")
    return [(c.locator(".name").inner_text(), float(c.locator(".distance").inner_text())) for c in cards.all()]


def wait_results(page, count: int, first: str | None = None) -> list[tuple[str, float]]:
    """:func:`results` once the page shows ``count`` cards (the first named ``first``, when given)."""
    from playwright.sync_api import expect

    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#results li")).to_have_count(count)
    if first is not None:
        expect(page.locator("#results li .name").first).to_have_text(first)
    return results(page)


def wait_until_serving(server: subprocess.Popen, port: int, log, seconds: float = 120):
    """The ``/healthz`` answer of a ``lookalike serve`` process on ``port`` once it answers; the test
    fails with the server's ``log`` when the process ends first, or after ``seconds``."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no answer in {seconds} s"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.TransportError:
            time.sleep(0.2)


def distances_reference(queries: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """(Q, N) float64 distances, written out from the definitions (``1 - cos`` or Euclidean)."""
    q, x = queries.astype(np.float64), x.astype(np.float64)
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1.0 - qn @ xn.T
    return np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def ranking_reference(X: np.ndarray, labels: np.ndarray, metric: str):
    """Leave-one-out retrieval written out per query in float64, independent of ``lookalike.evaluation.retrieval``:
    (query ids, AP, AP@R, first-positive rank); negatives rank before positives at equal distance."""
    X = X.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Xn = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
        D = 1.0 - Xn @ Xn.T
    else:
        D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    ids, aps, aprs, firsts = [], [], [], []
    for q in range(len(X)):
        others = np.arange(len(X)) != q
        positive = labels[others] == labels[q]
        if not positive.any():
            continue
        order = np.lexsort((positive, D[q, others]))  # by distance, then negatives (False) first
        ranks = np.flatnonzero(positive[order]) + 1.0
        precision = np.arange(1, ranks.size + 1) / ranks
        ids.append(q)
        aps.append(precision.mean())
        aprs.append(precision[ranks <= ranks.size].sum() / ranks.size)
        firsts.append(ranks[0])
    return np.array(ids), np.array(aps), np.array(aprs), np.array(firsts)


def assert_same_answers(got, want, queries, k: int = 6) -> None:
    """Index ``got`` answers every query image as index ``want`` does: nearest and farthest (cosine
    and l2) give the same paths with the same distances; random draws of one seed give files at the
    distances ``want`` gives them (the draw itself depends on the ids, which differ between stores)."""
    for q in queries:
        for mode in ("nearest", "farthest"):
            for metric in ("cosine", "l2"):
                a = got.query(str(q), k=k, mode=mode, metric=metric).results
                b = want.query(str(q), k=k, mode=mode, metric=metric).results
                assert [m.path for m in a] == [m.path for m in b], (q, mode, metric)
                np.testing.assert_allclose([m.distance for m in a], [m.distance for m in b], atol=1e-9)
        for metric in ("cosine", "l2"):
            drawn = got.query(str(q), k=k, mode="random", metric=metric, seed=5).results
            assert drawn == got.query(str(q), k=k, mode="random", metric=metric, seed=5).results
            assert len({m.path for m in drawn}) == min(k, len(want))
            every = {m.path: m.distance for m in want.query(str(q), k=len(want), metric=metric).results}
            # computed over other batches of rows than the reference's: float64 rounding, which an l2
            # distance near 0 (the square root of a difference of squared norms) turns into ~1e-7
            np.testing.assert_allclose([m.distance for m in drawn], [every[m.path] for m in drawn], atol=1e-6)
class ImageServer:
    """An HTTP server on 127.0.0.1 (a thread) that serves test answers by path: ``/img.jpg`` a
    JPEG, ``/redirect/N`` N redirects before it, ``/to?u=URL`` a redirect to URL, ``/page.html``
    HTML, ``/big`` a JPEG header claiming more bytes than any limit, ``/stream`` an unsized JPEG
    body of ``?n=`` bytes, ``/slow`` a JPEG that trickles a byte every 0.2 s. ``hosts`` records the
    Host header of every request. Use as a context manager; ``url(path)`` is its address."""

    def __init__(self, jpeg: bytes) -> None:
        import http.server
        import threading
        from urllib.parse import parse_qs, urlsplit

        server_self = self
        self.hosts: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def send(self, code: int, kind: str, body: bytes = b"", **headers) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", headers.pop("length", str(len(body))))
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server_self.hosts.append(self.headers.get("Host", ""))
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/img.jpg":
                    self.send(200, "image/jpeg", jpeg)
                elif parts.path.startswith("/redirect/"):
                    n = int(parts.path.rsplit("/", 1)[1])
                    self.send(302, "text/plain", Location="/img.jpg" if n <= 1 else f"/redirect/{n - 1}")
                elif parts.path == "/to":
                    self.send(302, "text/plain", Location=query["u"][0])
                elif parts.path == "/page.html":
                    self.send(200, "text/html; charset=utf-8", b"<html>not an image</html>")
                elif parts.path == "/big":
                    self.send(200, "image/jpeg", length=str(10**12))
                elif parts.path == "/stream":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    left = int(query["n"][0])
                    while left > 0:
                        part = min(left, 65536)
                        self.wfile.write(b"%x\r\n" % part + b"\0" * part + b"\r\n")
                        left -= part
                    self.wfile.write(b"0\r\n\r\n")
                elif parts.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.end_headers()
                    try:
                        for i in range(len(jpeg)):
                            self.wfile.write(jpeg[i:i + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:  # the client gave up
                        pass
                else:
                    self.send(404, "text/plain", b"no such thing")

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that stops reading at its limit (the point of some tests) is no error here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.server_address[1]}{path}"

    def __enter__(self) -> "ImageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_binary_map(data: bytes) -> tuple[dict, dict]:
    """(header, columns) of a map in typed arrays (lookalike.map.payload.binary), read by the layout
    its docstring gives: magic, header length, JSON header, little-endian columns at aligned offsets."""
    import json
    import struct

    from lookalike.map.payload import ALIGN, MAGIC

    assert data[:len(MAGIC)] == MAGIC
    (length,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    head = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + length])
    start = -(-(len(MAGIC) + 4 + length) // ALIGN) * ALIGN
    kinds = {"float64": "<f8", "float32": "<f4", "int32": "<i4"}
    columns = {}
    for name, kind, offset, size in head["columns"]:
        assert offset % ALIGN == 0 and (start + offset) % ALIGN == 0
        raw = data[start + offset:start + offset + size]
        columns[name] = raw.decode("utf-8").split("\0")[:-1] if kind == "utf8" else np.frombuffer(raw, kinds[kind])
    assert start + offset + size <= len(data) < start + offset + size + ALIGN
    return head, columns


def tiny_index(root, names=("astronaut", "camera", "chelsea", "coffee", "rocket", "horse"), size=(48, 40)):
    """``root/photos`` holding the sample photos ``names`` as small PNGs, indexed with :func:`tiny_model`
    into ``root/ix``; (photos folder, index folder, model folder)."""
    from pathlib import Path

    from lookalike.api import Index

    root = Path(root)
    folder = root / "photos"
    folder.mkdir(parents=True)
    for name in names:
        sample_photo(name).resize(size).save(folder / f"{name}.png")
    model = tiny_model(root / "model")
    with Index.open(root / "ix", model=str(model), create=True, threads=1) as idx:
        idx.index(folder)
    return folder, root / "ix", model
