"""Shared fixtures: small real photos (scikit-image's samples) and variants made by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from helpers import PHOTOS, sample_photo, variants


def pytest_itemcollected(item):
    """Every end-to-end test (``tests/e2e``: the CLI as a subprocess, a server, a browser) is slow: out of
    the quick loop ``pytest -m "not slow"``, whichever file it is added to."""
    if "e2e" in item.path.relative_to(item.config.rootpath).parts:
        item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    """Keep exported models and default indexes out of the user's directories, shared per session.

    ``$LOOKALIKE_TEST_MODELS``, a folder of exported ONNX files (as the cache's ``onnx/`` holds them),
    is copied into the session's fresh cache, so a session need not export them again (mutation testing
    runs a session per mutant); the copy keeps the folder safe from what the session writes.
    """
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    if os.environ.get("LOOKALIKE_TEST_MODELS"):
        shutil.copytree(os.environ["LOOKALIKE_TEST_MODELS"], cache / "onnx")
    mp.setenv("LOOKALIKE_CACHE", str(cache))
    mp.setenv("LOOKALIKE_INDEX", str(tmp_path_factory.mktemp("default") / "index"))
    yield
    mp.undo()


#: The Milvus components whose advertised address is set to loopback.
_MILVUS_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord",
                      "dataNode")


class _MilvusServer:
    """The test session's Milvus server: started by the first test that asks for it, stopped (its
    files deleted) right after the last test that asks for it, so it runs beside those tests only."""

    def __init__(self) -> None:
        self.server, self.base, self.last = None, None, None

    def start(self, base) -> str:
        from milvus import MilvusServer

        if self.server is None:
            server = MilvusServer()
            server.set_base_dir(str(base))
            server.config.extra_configs.update({f"{c}.ip": "127.0.0.1" for c in _MILVUS_COMPONENTS})
            server.start()
            self.server, self.base = server, base
        return f"http://127.0.0.1:{self.server.config.configurable_items['proxy_port'][1]}"

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            shutil.rmtree(self.base, ignore_errors=True)


_MILVUS = _MilvusServer()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Note the last test that uses the Milvus server (items are in running order by now)."""
    users = [item for item in items if "milvus_server" in getattr(item, "fixturenames", ())]
    _MILVUS.last = users[-1].nodeid if users else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test that uses the Milvus server, and its fixtures, are torn down: stop it."""
    try:
        return (yield)
    finally:
        if item.nodeid == _MILVUS.last:
            _MILVUS.stop()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The URI of a Milvus standalone server (the ``milvus`` package: Milvus 2.3 with embedded etcd and
    local storage) on loopback, running from the first test that uses it to the last."""
    pytest.importorskip("milvus")
    try:
        yield _MILVUS.start(tmp_path_factory.mktemp("milvus-server"))
    finally:
        _MILVUS.stop()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """A folder of 12 distinct photos plus a flipped and a cropped copy of three of them."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        img = sample_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        if name in ("chelsea", "coffee", "astronaut"):
            v = variants(img)
            v["flip"].save(root / f"{name}_flip.jpg", quality=90)
            v["crop"].save(root / f"{name}_crop.png")
    return root


@pytest.fixture(scope="module")
def index(folder, tmp_path_factory):
    """An index of the requesting module's ``folder`` fixture (the server tests' served photos)."""
    from lookalike.api import Index

    idx = Index.open(tmp_path_factory.mktemp("server-index"), create=True)
    idx.index(folder)
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def client(index):
    """FastAPI's test client over the app serving the module's ``index``."""
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    with TestClient(create_app(index)) as c:
        yield c


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(free)``: a new folder on a tmpfs with ``free`` bytes left (in 4 KiB pages) beside a
    ``.filler`` file, a full disk; unmounted after the test. Mounting needs root: skipped otherwise."""
    mounted = []

    def make(free: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        size = (free // 4096 + 1) * 4096
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                               capture_output=True).returncode != 0:
            pytest.skip("mounting a small tmpfs needs root")
        mounted.append(where)
        (where / ".filler").write_bytes(b"x" * 4096)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)
