"""The ``lookalike`` command line: a thin Typer shell over :mod:`lookalike.api`.

Exit codes: 0 success (skipped files are not failures), 1 user error with a one-line message,
2 usage error.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lookalike import __version__
from lookalike.cli import ann, dedup, indexing, maps, search, serve, training
from lookalike.cli.common import err, say
from lookalike.images import ImageError
from lookalike.models.registry import ModelError
from lookalike.index.store import StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Content-based image similarity search: nearest, random and farthest images.")
USER_ERRORS = (ImageError, ModelError, StoreError, ValueError, OSError)


def _print_version(value: bool) -> None:
    if value:
        print(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Options given before the command."""


for _command in (indexing.index, indexing.embed, indexing.ingest, search.query, search.show, indexing.models, serve.serve, dedup.dedup,
                 training.evaluate, training.train):
    app.command()(_command)
app.command(context_settings={"allow_extra_args": True})(training.tune)
app.command("map")(maps.map_command)
app.add_typer(ann.app, name="ann")


class _Command(typer.core.TyperCommand):
    """Help in the usual style: ``IMAGE...`` and ``[FOLDER]`` as their metavars say (not typer's
    ``{IMAGE...}...``), no ``<list[Path]>`` type tags on arguments, and ``<int>`` for typer's
    ``<int range>`` (the range follows the help, as in ``[x>=1]``)."""

    @staticmethod
    def _arguments(params) -> list:
        return [p for p in params if p.param_type_name == "argument" and not getattr(p, "hidden", False)]

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [self.options_metavar, *(p.metavar or p.name.upper() for p in self._arguments(self.get_params(ctx)))]

    def format_options(self, ctx, formatter) -> None:
        params = self.get_params(ctx)
        sections = (("Arguments", [(p.metavar or p.name.upper(), p.help or "") for p in self._arguments(params)]),
                    ("Options", [(r[0].replace(" range>", ">"), r[1]) for p in params
                                 if p.param_type_name == "option" and (r := p.get_help_record(ctx))]))
        for title, rows in sections:
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


for _info in (*app.registered_commands, *ann.app.registered_commands):
    if _info.cls is typer.core.TyperCommand:  # not one that asked for another class
        _info.cls = _Command


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1.

    Output keeps a file name's own bytes, also where they are not valid UTF-8.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="surrogateescape")
    try:
        app()
    except USER_ERRORS as e:
        say("error", "bold red", str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; what was committed is kept")
        sys.exit(130)
