"""A collection on a real Milvus server (HNSW; the session's ``milvus_server``): shards of a few
hundred generated images, embedded on Ray and written by 2 Ray workers answer as an index folder of the same shards; a
loader killed midway and run again leaves each file once; two ``serve`` processes answer alike
while a loader adds rows; the query side writes and reads no vector file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pymilvus")
pytest.importorskip("ray")

from pymilvus import MilvusClient  # noqa: E402

from helpers import WITHOUT_READ_OVERRIDE, assert_same_answers, free_port, wait_until_serving  # noqa: E402
from lookalike.api import Index  # noqa: E402
from lookalike.cluster.collection import MilvusCollection, open_index  # noqa: E402
from lookalike.cluster.embed import embed, model_spec  # noqa: E402
from lookalike.cluster.ingest import ingest  # noqa: E402
from lookalike.cluster.from_shards import index_shards  # noqa: E402
from lookalike.cluster.shards import Shards, table  # noqa: E402

pytestmark = pytest.mark.slow

N_IMAGES = 300


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """``N_IMAGES`` small distinct pictures in two folders, embedded on Ray (2 workers) into shards of
    at most 25 files."""
    root = tmp_path_factory.mktemp("server-collection")
    rng = np.random.default_rng(11)
    for i in range(N_IMAGES):
        folder = root / "images" / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        cells = (rng.random((5, 5, 3)) * 255).astype(np.uint8)
        Image.fromarray(cells).resize((56 + i % 4 * 8, 48), Image.BILINEAR).save(folder / f"img{i:04d}.jpg", quality=92)
    import ray

    ray.init(num_cpus=2, object_store_memory=128 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        embed(str(root / "images"), str(root / "shards"), model_spec(), "ray", workers=2, shard_rows=25)
    finally:
        ray.shutdown()
    return root


@pytest.fixture(scope="module")
def folder_index(generated, tmp_path_factory):
    with Index.open(tmp_path_factory.mktemp("reference") / "index", create=True, rebuild=True) as idx:
        index_shards(idx, str(generated / "shards"))
        yield idx


def count(uri: str, name: str) -> int:
    client = MilvusClient(uri)
    try:
        return int(client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])
    finally:
        client.close()


def test_two_ray_writers_fill_a_collection_that_answers_as_the_index_folder(milvus_server, generated, folder_index):
    import ray

    ray.init(num_cpus=2, object_store_memory=128 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        report = ingest(str(generated / "shards"), milvus_server, "ray2", engine="ray", workers=2)
    finally:
        ray.shutdown()
    shards = len(Shards(str(generated / "shards")).names())
    assert (report.workers, report.shards, report.written, report.total) == (2, shards, N_IMAGES, N_IMAGES)
    client = MilvusClient(milvus_server)
    try:  # the server's own kind of index for a text field, on the content hash
        assert client.list_indexes("ray2", field_name="hash") == ["hash"]
    finally:
        client.close()
    with open_index(milvus_server, "ray2") as idx:
        assert (len(idx), idx.index_type) == (N_IMAGES, "milvus-hnsw")
        queries = sorted((generated / "images").rglob("*.jpg"))[::60]
        assert_same_answers(idx, folder_index, queries, k=8)
        for q in queries:  # the vector index alone (no scan): the nearest 8 of 300 are found exactly
            got = idx.query(str(q), 8).results
            assert [m.path for m in got] == [m.path for m in folder_index.query(str(q), 8).results]
    assert ingest(str(generated / "shards"), milvus_server, "ray2").written == 0


def test_a_loader_killed_midway_and_run_again_leaves_each_file_once(milvus_server, generated, tmp_path):
    shards = tmp_path / "small"
    for name, t in Shards(str(generated / "shards")):  # the same files in 60 shards of 5
        for s in range(0, len(t), 5):
            Shards(str(shards)).write(t.slice(s, 5))
    command = [sys.executable, "-m", "lookalike", "ingest", str(shards), "--uri", milvus_server,
               "--collection", "killed", "--quiet"]
    loader = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = 0
    deadline = time.monotonic() + 120
    while seen == 0 and loader.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            seen = count(milvus_server, "killed")
        except Exception:  # the collection is not made yet
            seen = 0
    loader.send_signal(signal.SIGKILL)
    loader.wait(30)
    assert loader.returncode == -signal.SIGKILL, loader.stderr.read()
    assert 0 < count(milvus_server, "killed") < N_IMAGES  # killed midway
    again = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["total"] == N_IMAGES and report["written"] + report["unchanged"] == N_IMAGES
    collection = MilvusCollection(milvus_server, "killed")
    try:
        paths = [r["path"] for page in collection.pages(["path"]) for r in page]
    finally:
        collection.close()
    assert len(paths) == len(set(paths)) == N_IMAGES


def _far_shards(folder_index, location: Path, n: int) -> None:
    """Shards of ``n`` made-up files whose vectors point away from every indexed one (they never enter
    an indexed image's nearest), for a loader to add while servers answer."""
    ids, vectors = folder_index.vectors()
    far = -np.asarray(vectors)[np.arange(n) % len(ids)] * (1 + np.arange(n)[:, None] / n)
    ident = folder_index.model
    for s in range(0, n, 50):
        rows = range(s, min(s + 50, n))
        cols = {"path": [f"/made-up/far{i:05d}.jpg" for i in rows], "size": [1] * len(rows),
                "mtime_ns": [1] * len(rows), "hash": [f"{i:032x}" for i in rows], "width": [1] * len(rows),
                "height": [1] * len(rows), "error": [None] * len(rows)}
        Shards(str(location)).write(table(cols, far[s:s + len(rows)].astype(np.float32), ident))


def test_two_servers_answer_one_upload_alike_while_a_loader_adds_rows(milvus_server, generated, folder_index,
                                                                      tmp_path):
    ingest(str(generated / "shards"), milvus_server, "served")
    far = tmp_path / "far"
    _far_shards(folder_index, far, 1500)
    servers = []
    try:
        for n in range(2):
            port, log = free_port(), tmp_path / f"serve{n}.log"
            with open(log, "w") as err:
                servers.append((subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--uri", milvus_server,
                                                  "--collection", "served", "--port", str(port)],
                                                 stdout=subprocess.DEVNULL, stderr=err), port, log))
        for server, port, log in servers:
            wait_until_serving(server, port, log, 180)
        data = sorted((generated / "images").rglob("*.jpg"))[7].read_bytes()
        loader = subprocess.Popen([sys.executable, "-m", "lookalike", "ingest", str(far), "--uri", milvus_server,
                                   "--collection", "served", "--quiet"], stderr=subprocess.PIPE)
        answers = []
        while loader.poll() is None:
            answers.append([httpx.post(f"http://127.0.0.1:{port}/api/query", params={"k": 6},
                                       files={"file": ("q.jpg", data, "image/jpeg")}, timeout=60).json()
                            for _, port, _ in servers])
        assert loader.returncode == 0, loader.stderr.read()
        assert len(answers) >= 2 and count(milvus_server, "served") == N_IMAGES + 1500
        for one, two in answers:
            assert one == two and one["results"][0]["distance"] == 0
        assert all(pair[0] == answers[0][0] for pair in answers)  # the far rows never enter the nearest
        after = [httpx.get(f"http://127.0.0.1:{port}/api/query", params={"id": one["results"][1]["id"], "k": 4,
                                                                         "mode": "farthest"}, timeout=60).json()
                 for _, port, _ in servers]
        assert after[0] == after[1] and all(r["name"].startswith("far") for r in after[0]["results"])
    finally:
        for server, _, _ in servers:
            server.terminate()
            server.wait(30)


_AUDIT = """
import os, sys
record, opened = sys.argv.pop(), []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(os.fsdecode(args[0]))
sys.addaudithook(hook)
from lookalike.cli import main
try:
    main()
finally:
    with open(record, "w") as f:
        f.write("\\n".join(opened))
"""


def test_the_query_side_writes_and_reads_no_vector_file(milvus_server, generated, tmp_path):
    ingest(str(generated / "shards"), milvus_server, "stateless")
    home, cache, work, record = tmp_path / "home", tmp_path / "cache", tmp_path / "work", tmp_path / "opened.txt"
    for folder in (home, cache, work):
        folder.mkdir()
    work.chmod(0o555)  # read-only, also for root: the command runs without the power to override file modes
    env = {**os.environ, "HOME": str(home), "LOOKALIKE_CACHE": str(cache), "LOOKALIKE_INDEX": str(home / "index"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "xdg-cache")}
    query = tmp_path / "new.jpg"  # not in the collection: embedded here, so the model is exported
    Image.fromarray((np.random.default_rng(5).random((5, 5, 3)) * 255).astype(np.uint8)).resize((64, 48)).save(query)
    out = subprocess.run([*WITHOUT_READ_OVERRIDE, sys.executable, "-c", _AUDIT, "query", str(query), "--uri", milvus_server, "--collection",
                          "stateless", "--json", "-k", "3", str(record)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["results"]) == 3
    written = sorted(str(p.relative_to(tmp_path)) for d in (home, cache, work) for p in d.rglob("*") if p.is_file())
    ours = [p for p in written if not p.startswith("home/xdg-cache/Microsoft/DeveloperTools/.onnxruntime/")]
    assert ours == ["cache/onnx/efficientnet-lite0-pool-224.onnx"], written  # beside ONNX Runtime's own device id
    assert not list(work.iterdir())
    opened = record.read_text().splitlines()
    assert not [p for p in opened if p.endswith((".npy", ".sqlite", ".faiss", ".parquet", ".db"))], opened
