"""``lookalike serve`` as a user starts it: a subprocess answering on loopback."""

import shutil
import subprocess
import sys

import httpx
import pytest

from helpers import free_port, wait_until_serving
from lookalike.api import Index

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from lookalike.cli import main; main()"]


@pytest.fixture(scope="module")
def index_dir(photo_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve-cli") / "index"
    with Index.open(path, create=True) as idx:
        idx.index(photo_dir)
    return path


def test_serve_answers_on_loopback_by_default(index_dir, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        server = subprocess.Popen([*CLI, "serve", "--index", str(index_dir), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        health = wait_until_serving(server, port, log)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").json()["count"] == 18
        if shutil.which("ss"):  # bound to loopback only
            listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
            assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{port}"]
    finally:
        server.terminate()
        server.wait(30)
    assert f"at http://127.0.0.1:{port}/" in log.read_text()
    assert "warning" not in log.read_text()


def test_serve_without_an_index_is_a_one_line_error(tmp_path):
    proc = subprocess.run([*CLI, "serve", "--index", str(tmp_path / "none")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no index at") and len(proc.stderr.strip().splitlines()) == 1
