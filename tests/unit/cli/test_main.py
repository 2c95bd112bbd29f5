"""The ``lookalike`` entry point (cli/__init__.py, __main__.py) in-process: --version, a user error as
one line and exit code 1, an interrupt as exit code 130, output keeping a file name's own bytes, and
the help's usage line and option types. Every command's help is tests/e2e/test_main_cli.py."""

from __future__ import annotations

import io
import runpy
import sys

import pytest
from typer.testing import CliRunner

import lookalike
from lookalike import cli
from lookalike.images import ImageError
from lookalike.index.store import StoreError
from lookalike.models.registry import ModelError


def test_version_prints_the_packages_version_and_nothing_else():
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"lookalike {lookalike.__version__}\n"
    assert CliRunner().invoke(cli.app, ["--version", "index", "--bogus"]).exit_code == 0  # eager: before the command


@pytest.mark.parametrize("error", [ImageError("not an image"), ModelError("unknown model"), StoreError("no index"),
                                   ValueError("bad value"), FileNotFoundError("no such file")])
def test_a_user_error_is_one_line_on_stderr_and_exit_code_1(error, monkeypatch, capsys):
    def fail():
        raise error

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {error}\n"


def test_an_interrupt_exits_130_saying_what_is_kept_and_other_errors_are_not_caught(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted; what was committed is kept\n"

    def bug():
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main()


def test_output_keeps_a_file_names_own_bytes(monkeypatch):
    """A name that is not UTF-8 (lone surrogates to Python) prints as its bytes, on stdout and stderr."""
    streams = {name: io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for name in ("stdout", "stderr")}
    for name, stream in streams.items():
        monkeypatch.setattr(sys, name, stream)
    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")
    monkeypatch.setattr(cli, "app", lambda: (print(name), print(name, file=sys.stderr)))
    cli.main()
    for stream in streams.values():
        stream.flush()
        assert stream.buffer.getvalue() == b"caf\xe9.jpg\n"


def test_python_dash_m_lookalike_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lookalike", "--version"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("lookalike", run_name="__main__")
    assert e.value.code == 0 and capsys.readouterr().out == f"lookalike {lookalike.__version__}\n"


def test_help_names_arguments_by_their_metavar_and_integer_ranges_as_int():
    result = CliRunner().invoke(cli.app, ["query", "--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "Usage: root query [OPTIONS] IMAGE..." in lines
    args = lines.index("Arguments:")
    assert lines[args + 1].split()[0] == "IMAGE..." and "list[" not in result.stdout
    k = next(line for line in lines if line.lstrip().startswith("-k, --k"))
    assert k.split() == ["-k,", "--k", "<int>", "Number", "of", "results.", "[default:", "10;", "x>=1]"]
    dedup = CliRunner().invoke(cli.app, ["dedup", "--help"], terminal_width=200).stdout
    assert "Usage: root dedup [OPTIONS] [FOLDER]" in dedup.splitlines()
    ann = CliRunner().invoke(cli.app, ["ann", "check", "--help"], terminal_width=200).stdout
    assert "Usage: root ann check [OPTIONS]" in ann.splitlines() and "Arguments:" not in ann
    assert "Options:" in ann and "--queries" in ann


def test_help_of_a_command_lists_arguments_by_metavar_or_upper_name_with_their_help_and_hides_hidden_ones():
    import typer

    demo = typer.Typer(rich_markup_mode=None)

    @demo.command(cls=cli._Command)
    def run(source: str = typer.Argument(..., help="Where from."), quiet_one: str = typer.Argument("x"),
            secret: str = typer.Argument("s", hidden=True), level: int = typer.Option(1, min=0, help="How much.")):
        """Demo."""

    @demo.command(cls=cli._Command)
    def other():
        """Another."""

    text = CliRunner().invoke(demo, ["run", "--help"], terminal_width=200).stdout
    lines = [line.rstrip() for line in text.splitlines()]
    assert "Usage: root run [OPTIONS] SOURCE QUIET_ONE" in lines
    args = lines.index("Arguments:")
    assert lines[args + 1].split() == ["SOURCE", "Where", "from."] and lines[args + 2].split() == ["QUIET_ONE"]
    assert "SECRET" not in text and "secret" not in text
    assert any(line.split()[:3] == ["--level", "<int>", "How"] for line in lines if line.strip())


def test_on_a_terminal_a_user_errors_label_is_bold_red(monkeypatch):
    from rich.console import Console

    from lookalike.cli import common

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, color_system="standard", width=200))
    monkeypatch.setattr(cli, "app", lambda: (_ for _ in ()).throw(ValueError("bad value")))
    with pytest.raises(SystemExit):
        cli.main()
    assert out.getvalue() == "\x1b[1;31merror:\x1b[0m bad value\n"
