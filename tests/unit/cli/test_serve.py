"""``lookalike serve`` (cli/serve.py): the limits given in the user's units reach the server in bytes."""

from __future__ import annotations

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from helpers import sample_photo, tiny_model
from lookalike.cli import app


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    """An index of two photos made with the tiny model (milliseconds)."""
    root = tmp_path_factory.mktemp("serve")
    (root / "photos").mkdir()
    for name in ("chelsea", "coffee"):
        sample_photo(name).save(root / "photos" / f"{name}.png")
    result = CliRunner().invoke(app, ["index", str(root / "photos"), "--index", str(root / "ix"),
                                      "--model", str(tiny_model(root / "model")), "-q"])
    assert result.exit_code == 0, result.output
    return root / "ix"


def _serve(index, monkeypatch, *options) -> dict:
    """Run ``serve`` with ``options`` and, in place of the server loop, ask the app it built for its
    stats and for uploads of 1,572,864 bytes (1.5 MiB) and one byte more; what it answered."""
    answers = {}

    def run(server, sockets):
        with TestClient(server.config.app) as c:
            answers["stats"] = c.get("/api/stats").json()
            for size in (1_572_864, 1_572_865):
                r = c.post("/api/query", files={"file": ("x.jpg", b"\xff" * size, "image/jpeg")})
                answers[size] = r.status_code

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(app, ["serve", "--index", str(index), "--port", "0", *options])
    assert result.exit_code == 0, result.output
    return answers


def test_max_upload_mb_is_counted_in_mebibytes(tiny_index, monkeypatch):
    answers = _serve(tiny_index, monkeypatch, "--max-upload-mb", "1.5")
    assert answers["stats"]["max_upload_bytes"] == 1_572_864  # 1.5 x 1,048,576
    assert (answers[1_572_864], answers[1_572_865]) == (400, 413)  # at the limit: read (not an image); over: refused


def test_the_default_upload_limit_is_20_mebibytes(tiny_index, monkeypatch):
    answers = _serve(tiny_index, monkeypatch)
    assert answers["stats"]["max_upload_bytes"] == 20_971_520
    assert (answers[1_572_864], answers[1_572_865]) == (400, 400)
