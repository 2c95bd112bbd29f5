"""``lookalike query URL`` and ``show URL`` against an HTTP server the test starts on 127.0.0.1."""

import json

import pytest

from helpers import ImageServer
from helpers import run_cli as run


@pytest.fixture(scope="module")
def served(photo_dir, tmp_path_factory):
    """An index of the photos, and a server that serves the coffee photo's bytes."""
    ix = tmp_path_factory.mktemp("url") / "ix"
    run("index", photo_dir, "--index", ix, "--quiet")
    with ImageServer((photo_dir / "coffee.jpg").read_bytes()) as server:
        yield server, ix


def test_a_query_by_address_finds_the_file_with_the_same_bytes(served, photo_dir):
    server, ix = served
    url = server.url("/redirect/2")  # through two redirects
    out = json.loads(run("query", url, "-k", "2", "--index", ix, "--json").stdout)
    assert out["query"] == url
    assert out["results"][0]["path"] == str(photo_dir / "coffee.jpg") and out["results"][0]["distance"] == 0.0


def test_an_address_that_is_not_an_image_is_one_line_among_answered_queries(served, photo_dir):
    server, ix = served
    page = server.url("/page.html")
    proc = run("query", page, photo_dir / "chelsea.jpg", "-k", "1", "--index", ix, "--format", "paths", check=False)
    assert proc.returncode == 1 and proc.stdout == f"{photo_dir / 'chelsea.jpg'}\n"
    assert proc.stderr.splitlines()[0] == f"error: {page}: not an image: the server says its content is text/html"


def test_show_draws_an_image_by_its_address(served, tmp_path):
    server, ix = served
    run("show", server.url("/img.jpg"), "-n", "2", "--seed", "1", "--out", tmp_path / "v.png", "--index", ix)
    assert (tmp_path / "v.png").stat().st_size > 10_000
