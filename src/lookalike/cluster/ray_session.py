"""A Ray session for lookalike's work: started here unless one is running, and quiet unless asked.

A successful run prints nothing of Ray's own. Ray's Python loggers ("ray", "ray.data") stay at
ERROR, workers' output stays in their log files (``log_to_driver=False``) and Ray Data draws no
progress bars (lookalike draws its own). Ray's C++ core prints to the process's standard error
itself (``E … core_worker.cc`` about actor restarts, on every run of Ray Data's actor pools), so
for the session that file descriptor goes to a temporary file while Python's ``sys.stderr`` keeps
the terminal; when the session fails, what was caught there is printed after all. ``verbose``
leaves all of Ray's output as Ray makes it.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: Environment that Ray reads when it starts (Ray Data's logging config, also in the workers of a
#: local cluster, which inherit it); values a user has set are kept.
QUIET_ENV = {"RAY_DATA_LOG_LEVEL": "ERROR"}


@contextmanager
def ray_session(address: str | None = None, verbose: bool = False) -> Iterator[None]:
    """Ray connected to ``address`` (None: ``$RAY_ADDRESS``, else a local cluster started for the
    session; ``"auto"``, ``"ray://host:10001"``) for the duration; a session this process already
    holds is used as it is and left running."""
    if verbose:
        with _connected(address, verbose):
            yield
        return
    added = {k: v for k, v in QUIET_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        with _native_stderr_caught(), _connected(address, verbose):
            yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextmanager
def _connected(address: str | None, verbose: bool) -> Iterator[None]:
    import ray
    import ray.data

    own = not ray.is_initialized()
    if own:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR)
    context = ray.data.DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False
    levels = {name: logging.getLogger(name).level for name in ("ray", "ray.data")}
    if not verbose:
        for name in levels:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars = bars
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if own:
            ray.shutdown()


@contextmanager
def _native_stderr_caught() -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ core writes) into a temporary file, Python's ``sys.stderr``
    still to where it went; the file's text is written to ``sys.stderr`` when the block raises."""
    stream = sys.stderr
    stream.flush()
    saved = os.dup(2)
    caught = tempfile.TemporaryFile()
    os.dup2(caught.fileno(), 2)
    if _fileno(stream) == 2:  # Python's own messages and progress bars keep the terminal
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=stream.encoding, errors=stream.errors)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if sys.stderr is not stream:
            sys.stderr.close()
            sys.stderr = stream
        os.dup2(saved, 2)
        os.close(saved)
        if failed:
            caught.seek(0)
            stream.write(caught.read().decode(errors="replace"))
            stream.flush()
        caught.close()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return None
