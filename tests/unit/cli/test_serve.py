"""``lookalike serve`` (cli/serve.py): the limits given in the user's units reach the server in bytes."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

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


def _started(index, monkeypatch, *options) -> tuple:
    """Run ``serve`` with ``options``, create_app and the server loop replaced: (the CLI's result,
    create_app's arguments, the port the server was given a socket on)."""
    import lookalike.server

    built, ports = {}, []
    real = lookalike.server.create_app

    def create_app(idx, *args, **kwargs):
        built.update(args=args, kwargs=kwargs)
        return real(idx, *args, **kwargs)

    monkeypatch.setattr(lookalike.server, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: ports.extend(s.getsockname()[1] for s in sockets))
    result = CliRunner().invoke(app, ["serve", "--index", str(index), "--port", "0", *options])
    return result, built, ports


@pytest.mark.parametrize("options, shown, fetching", [
    ([], "127.0.0.1", ""),
    (["--host", "localhost"], "localhost", ""),
    (["--host", "::1"], "[::1]", ""),  # an IPv6 address in brackets, as a URL needs it
    (["--fetch-urls"], "127.0.0.1", "; it fetches images by address (public addresses only)"),
    (["--fetch-urls", "--fetch-private"], "127.0.0.1", "; it fetches images by address"),
])
def test_serve_says_what_it_serves_where_and_whether_it_fetches(tiny_index, monkeypatch, options, shown, fetching):
    result, built, ports = _started(tiny_index, monkeypatch, *options)
    assert result.exit_code == 0, result.output
    assert len(ports) == 1 and ports[0] > 0  # port 0: a free one, bound before the app is built
    assert result.stderr == (f"serving 2 images from {tiny_index} at http://{shown}:{ports[0]}/ (Ctrl+C stops)"
                             f"{fetching}\n")
    assert built["kwargs"] == {"fetch_urls": "--fetch-urls" in options, "fetch_private": "--fetch-private" in options}


def test_serving_beyond_this_machine_warns_who_can_see_the_images(tiny_index, monkeypatch):
    result, _, ports = _started(tiny_index, monkeypatch, "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: listening on 0.0.0.0: anyone who can reach this machine can search and view the indexed images",
        f"serving 2 images from {tiny_index} at http://0.0.0.0:{ports[0]}/ (Ctrl+C stops)"]


def test_on_a_terminal_the_warning_label_is_bold_yellow(tiny_index, monkeypatch):
    from rich.console import Console

    from lookalike.cli import common

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, color_system="standard", width=200))
    result, _, _ = _started(tiny_index, monkeypatch, "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert out.getvalue().startswith("\x1b[1;33mwarning:\x1b[0m listening on 0.0.0.0: anyone who can reach")


def test_the_limits_reach_the_app_in_bytes_and_pixels(tiny_index, monkeypatch):
    from lookalike.images import UPLOAD_MAX_PIXELS

    _, built, _ = _started(tiny_index, monkeypatch)
    assert built["args"] == (20 * 1024 * 1024, UPLOAD_MAX_PIXELS)
    _, built, _ = _started(tiny_index, monkeypatch, "--max-upload-mb", "0.001", "--max-pixels", "1")
    assert built["args"] == (1048, 1)  # 0.001 MiB: 1,048.576 bytes, whole bytes only


def test_fetch_private_alone_is_refused_before_anything_listens(tiny_index, monkeypatch):
    result, built, ports = _started(tiny_index, monkeypatch, "--fetch-private")
    assert (result.exit_code, result.stderr) == (1, "error: --fetch-private goes with --fetch-urls\n")
    assert built == {} and ports == []


def test_a_busy_port_or_an_address_not_this_machines_is_one_line_before_the_index_opens(tiny_index, monkeypatch):
    import socket

    from lookalike.cli import common

    monkeypatch.setattr(common.Index, "open", lambda *a, **k: pytest.fail("the index was opened"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--index", str(tiny_index), "--port", str(port)])
    assert (result.exit_code, result.stderr) == (1, f"error: cannot listen on 127.0.0.1:{port}: Address already in "
                                                    "use; another program is using it, choose another with --port\n")
    result = CliRunner().invoke(app, ["serve", "--index", str(tiny_index), "--host", "192.0.2.1", "--port", "0"])
    assert (result.exit_code, result.stderr) == (1, "error: cannot listen on 192.0.2.1:0: Cannot assign requested "
                                                    "address\n")  # TEST-NET-1: no hint about another program


def test_a_name_that_does_not_resolve_is_one_line_with_the_resolvers_words(tiny_index):
    result = CliRunner().invoke(app, ["serve", "--index", str(tiny_index), "--host", "no-such-host.invalid",
                                      "--port", "0"])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    said = result.stderr.rstrip("\n")
    assert said.startswith("error: cannot listen on no-such-host.invalid:0: ") and "[Errno" not in said
    assert said != "error: cannot listen on no-such-host.invalid:0: "  # why, in words


def test_the_index_or_collection_asked_for_is_opened_with_its_threads(monkeypatch):
    from lookalike.cli import serve as serve_module

    opened = []

    def open_index(index_path, uri, collection, **options):
        opened.append((index_path, uri, collection, options))
        raise SystemExit(0)  # no further: what was asked for is recorded

    monkeypatch.setattr(serve_module, "open_index", open_index)
    CliRunner().invoke(app, ["serve", "--uri", "http://milvus:19530", "--collection", "photos", "--threads", "3",
                             "--port", "0"])
    CliRunner().invoke(app, ["serve", "--index", "ix", "--port", "0"])
    assert opened == [(None, "http://milvus:19530", "photos", {"threads": 3}), (Path("ix"), None, None, {"threads": None})]


def test_the_server_logs_warnings_only_and_answers_stalled_headers_with_408(tiny_index, monkeypatch):
    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: configs.append(server.config))
    result = CliRunner().invoke(app, ["serve", "--index", str(tiny_index), "--port", "0"])
    assert result.exit_code == 0, result.output
    # no line per request on the terminal: uvicorn's logs at WARNING (its default is INFO)
    assert [logging.getLogger(n).level for n in ("uvicorn.error", "uvicorn.access")] == [logging.WARNING] * 2
    assert configs[0].http.__qualname__ == "stalled_headers_answered_408.<locals>.HeaderTimeout"


def test_the_documented_defaults_are_shown_in_help():
    text = " ".join(CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).stdout.split())
    for option, default in (("--host", "127.0.0.1"), ("--port", "8000"), ("--max-upload-mb", "20.0")):
        assert re.search(rf"{option} [^[]*\[default: {re.escape(default)}[;\]]", text), option
