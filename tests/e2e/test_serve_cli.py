"""``lookalike serve`` as a user starts it and a script or the page uses it: loopback by default, one-line
errors, options as form fields, random seeds, the folder of each result, and a recent upload searched
again by its hash."""

import io
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

from helpers import free_port, sample_photo, wait_until_serving
from helpers import run_cli as run
from lookalike.api import Index


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


def test_serve_on_a_busy_port_is_a_one_line_error(odd):
    _, ix = odd
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "lookalike", "serve", "--index", str(ix), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert len(proc.stderr.splitlines()) == 1 and "serving" not in proc.stderr


@pytest.fixture(scope="module")
def url(photo_dir, tmp_path_factory):
    """The address of ``lookalike serve --port 0`` over photos in class folders ``cats`` and ``other``."""
    root = tmp_path_factory.mktemp("served")
    for folder, names in {"cats": ("chelsea", "chelsea_flip"), "other": ("coffee", "rocket", "moon", "horse")}.items():
        (root / "photos" / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(photo_dir / f"{name}.jpg", root / "photos" / folder / f"{name}.jpg")
    run("index", root / "photos", "--index", root / "ix", "--quiet")
    log = root / "serve.log"
    with open(log, "w") as err:
        server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(root / "ix"),
                                   "--port", "0"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while "serving" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        base = log.read_text().split(" at ", 1)[1].split()[0].rstrip("/")
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(30)


def post(url, path, data: bytes, fields=None, params=None):
    return httpx.post(url + path, files={"file": ("q.jpg", data, "image/jpeg")}, data=fields or {}, params=params,
                      timeout=60)


def test_form_fields_are_honoured_like_query_parameters(url, photo_dir):
    data = (photo_dir / "coffee.jpg").read_bytes()
    form = post(url, "/api/query", data, {"k": "3", "mode": "farthest", "metric": "l2"})
    assert form.status_code == 200, form.text
    body = form.json()
    assert (body["mode"], body["metric"], len(body["results"])) == ("farthest", "l2", 3)
    distances = [r["distance"] for r in body["results"]]
    assert distances == sorted(distances, reverse=True)
    query = post(url, "/api/query", data, params={"k": 3, "mode": "farthest", "metric": "l2"}).json()
    assert body == query
    excluded = post(url, "/api/query", data, {"k": "6", "exclude_self": "true"}).json()
    assert "coffee.jpg" not in [r["name"] for r in excluded["results"]] and len(excluded["results"]) == 5

    dupes = post(url, "/api/duplicates", data, {"threshold": "0.0001"}).json()
    assert dupes["threshold"] == 0.0001 and dupes["preset"] is None
    assert [r["name"] for r in dupes["results"]] == ["coffee.jpg"]


@pytest.mark.parametrize("fields, params, message", [
    ({"top": "3"}, None, "top"),  # a field that is no option
    ({"k": "0"}, None, "greater than or equal to 1"),
    ({"mode": "sideways"}, None, "mode"),
    ({"k": "3"}, {"k": 3}, "k given both as a form field and in the query string"),
])
def test_form_fields_that_cannot_be_honoured_are_refused(url, photo_dir, fields, params, message):
    r = post(url, "/api/query", (photo_dir / "coffee.jpg").read_bytes(), fields, params)
    assert r.status_code == 422 and message in r.text
    assert post(url, "/api/duplicates", b"x", {"k": "3"}).status_code == 422


def test_random_draw_returns_its_seed_and_repeats_with_it(url, photo_dir):
    data = (photo_dir / "rocket.jpg").read_bytes()
    first = post(url, "/api/query", data, {"mode": "random", "k": "4"}).json()
    assert isinstance(first["seed"], int)
    again = post(url, "/api/query", data, {"mode": "random", "k": "4", "seed": str(first["seed"])}).json()
    assert again == first
    assert post(url, "/api/query", data, {"k": "2"}).json()["seed"] is None


def test_results_carry_their_folder_and_an_indexed_query_its_own(url, photo_dir):
    body = post(url, "/api/query", (photo_dir / "chelsea.jpg").read_bytes(), {"k": "6"}).json()
    folders = {r["name"]: r["folder"] for r in body["results"]}
    assert folders == {"chelsea.jpg": "cats", "chelsea_flip.jpg": "cats", "coffee.jpg": "other",
                       "rocket.jpg": "other", "moon.jpg": "other", "horse.jpg": "other"}
    by_id = httpx.get(f"{url}/api/query", params={"id": body["results"][1]["id"], "k": 1}).json()
    assert by_id["query"]["folder"] == "cats"
    full = httpx.get(f"{url}/api/images/{body['results'][0]['id']}")
    assert full.content == (photo_dir / "chelsea.jpg").read_bytes()


def test_a_recent_upload_is_searched_again_by_its_hash(url):
    out = io.BytesIO()
    sample_photo("chelsea").rotate(4).save(out, "JPEG", quality=80)  # not indexed bytes
    first = post(url, "/api/query", out.getvalue(), {"k": "3"}).json()
    digest = first["query"]["upload"]
    assert first["query"]["id"] is None and len(digest) == 32
    again = httpx.get(f"{url}/api/uploads/{digest}/query", params={"k": 3}).json()
    assert again == first  # the same name, hash and results, without sending the bytes
    farthest = httpx.get(f"{url}/api/uploads/{digest}/query", params={"k": 3, "mode": "farthest"}).json()
    assert farthest["results"][0]["distance"] > first["results"][-1]["distance"]
    gone = httpx.get(f"{url}/api/uploads/{'0' * 32}/query")
    assert gone.status_code == 404 and "upload the image again" in gone.json()["detail"]
