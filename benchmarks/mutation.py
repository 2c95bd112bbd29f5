"""Mutation testing (mutmut 3) of the modules whose bugs lose or misreport data; prints JSON.

Each module is mutated on its own, in a scratch copy of the repository (``src/``, ``tests/`` and
``pyproject.toml`` with a ``[tool.mutmut]`` section written for it), against the fast unit tests
that exercise it, within a wall-clock budget per module. Per module the JSON gives the mutants,
how many were killed, survived, timed out, had no test, or were not reached in the budget, the
score (killed and timed out over those checked), and the names of the survivors (see them with
``mutmut show NAME`` in the scratch copy kept by ``--keep``).

    nice -n 10 python benchmarks/mutation.py                       # every module in MODULES
    nice -n 10 python benchmarks/mutation.py store indexer --budget 900 --jobs 2 --out mutation.json

Needs the ``dev`` extra (mutmut). CI does not run it: a full run takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import emit

REPO = Path(__file__).resolve().parent.parent

# module -> the unit tests that exercise it (the fast ones: no subprocess, no training), with any
# pytest options narrowing them
VECTOR_TESTS = ["tests/unit/vectors/test_metric.py", "tests/unit/vectors/test_searcher.py",
                "tests/unit/vectors/test_backends.py", "tests/unit/vectors/test_backend_ties.py"]
MODULES = {
    "src/lookalike/vectors/metric.py": VECTOR_TESTS,
    "src/lookalike/vectors/searcher.py": VECTOR_TESTS,
    "src/lookalike/vectors/backend.py": VECTOR_TESTS,
    "src/lookalike/index/indexer.py": ["tests/unit/index/test_indexer.py"],
    "src/lookalike/index/store.py": ["tests/unit/index/test_store.py", "tests/unit/index/test_indexer.py", "tests/unit/test_api.py"],
    "src/lookalike/index/vector_cache.py": ["tests/unit/index/test_vector_cache.py", "tests/unit/index/test_store.py"],
    # test_dedup.py's end-to-end cases embed real photos with the ONNX model: only its grouping cases here
    "src/lookalike/dedup/keep.py": ["tests/unit/dedup/test_keep.py", "tests/unit/dedup/test_dedup.py", "-k",
                                    "test_keep or keep_order or flipped or file_traits or around_the_keeper "
                                    "or byte_copies or no_kept_file or overlapping_groups"],
    "src/lookalike/dedup/candidates.py": ["tests/unit/dedup/test_find.py", "tests/unit/dedup/test_candidates.py",
                                          "tests/unit/dedup/test_dedup.py", "-k",
                                          "test_find or neighbours or nearest_only or candidates or too_many_pairs "
                                          "or around_the_keeper"],
    "src/lookalike/dedup/find.py": ["tests/unit/dedup/test_find.py"],
    "src/lookalike/evaluation/retrieval.py": ["tests/unit/evaluation/test_retrieval.py"],
}

STATUSES = ("killed", "survived", "timeout", "no tests", "not checked", "suspicious", "skipped", "segfault")


def mutmut_config(module: str, tests: list[str]) -> str:
    """The ``[tool.mutmut]`` section mutating ``module`` only, tested by ``tests``."""
    return "\n".join([
        "",
        "[tool.mutmut]",
        'source_paths = ["src"]',
        f"only_mutate = [{json.dumps(module)}]",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow and not browser"]',
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "",
    ])


def scratch_copy(module: str, tests: list[str], work: Path | None = None) -> Path:
    """A directory holding what mutmut needs: ``src/``, ``tests/``, and a pyproject with its section.

    An existing ``work`` directory is reused: its mutants' results stand (mutmut goes on with those
    not yet checked) and its ``tests/`` is refreshed from the repository, so that new tests count.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="lookalike-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "src").exists():
        shutil.copytree(REPO / "src", work / "src", ignore=ignore)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore, dirs_exist_ok=True)
    text = (REPO / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(re.sub(r"\n\[tool\.mutmut\][^\[]*", "", text) + mutmut_config(module, tests))
    return work


def results(work: Path, env: dict) -> dict[str, str]:
    """Mutant name -> status, as ``mutmut results --all true`` reports them."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and status in STATUSES or status == "check was interrupted by user":
            found[name] = status
    return found


def run_module(module: str, tests: list[str], budget: float, jobs: int, keep: bool,
               scratch: Path | None = None, mutants: list[str] | None = None) -> dict:
    """Mutate one module for at most ``budget`` seconds; its counts and survivors.

    With ``scratch``, work in (and keep) that directory, going on from its earlier runs; with
    ``mutants`` (names or globs, as ``mutmut results`` prints them), check those again only.
    """
    keep = keep or scratch is not None
    work = scratch_copy(module, tests, scratch)
    # mutmut puts mutants/src first on sys.path itself; an outer PYTHONPATH would shadow it
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "LOOKALIKE_CACHE": os.environ.get("LOOKALIKE_CACHE", str(work / "cache"))}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *(mutants or [])],
                            cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=budget)
        finished = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            log, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
        finished = False
    seconds = time.monotonic() - started
    status = results(work, env)
    counts = Counter("not checked" if s == "check was interrupted by user" else s for s in status.values())
    checked = sum(counts[s] for s in ("killed", "survived", "timeout", "no tests", "suspicious", "segfault"))
    row = {"module": module, "tests": tests, "mutants": len(status),
           **{s.replace(" ", "_"): counts[s] for s in STATUSES},
           "score": round((counts["killed"] + counts["timeout"]) / checked, 4) if checked else None,
           "finished": finished and proc.returncode == 0, "seconds": round(seconds, 1),
           "survivors": sorted(n for n, s in status.items() if s in ("survived", "no tests", "suspicious"))}
    if not row["finished"]:
        row["log_tail"] = log[-1000:]
    if keep:
        row["scratch"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="source paths (default: every module in MODULES); "
                        "a path not in MODULES needs --tests")
    parser.add_argument("--tests", nargs="+", help="the tests for modules not in MODULES")
    parser.add_argument("--budget", type=float, default=900, help="seconds per module (default 900)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep each scratch copy (for mutmut show)")
    parser.add_argument("--scratch", type=Path, help="work in this directory and keep it; run again to go on "
                        "where the budget stopped (one module per directory)")
    parser.add_argument("--mutants", nargs="+", help="check only these mutants again (names or globs, as "
                        "mutmut results prints them), e.g. after adding tests; needs --scratch")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    chosen = args.modules or list(MODULES)
    if args.scratch and len(chosen) != 1:
        parser.error("--scratch takes one module")
    if args.mutants and not args.scratch:
        parser.error("--mutants needs --scratch (the directory of the run that found them)")
    rows = []
    for module in chosen:
        tests = MODULES.get(module) or args.tests
        if not tests:
            parser.error(f"{module} is not in MODULES: name its tests with --tests")
        if not (REPO / module).is_file():
            parser.error(f"no such module: {module}")
        rows.append(run_module(module, tests, args.budget, args.jobs, args.keep, args.scratch, args.mutants))
        print(f"{module}: {rows[-1]['killed']}/{rows[-1]['mutants']} killed", file=sys.stderr, flush=True)
    total = Counter()
    for row in rows:
        total.update({s: row[s.replace(" ", "_")] for s in STATUSES} | {"mutants": row["mutants"]})
    checked = sum(total[s] for s in ("killed", "survived", "timeout", "no tests", "suspicious", "segfault"))
    report = {"tool": "mutmut", "jobs": args.jobs, "budget_per_module_s": args.budget,
              "loadavg": [round(x, 2) for x in os.getloadavg()], "modules": rows,
              "total": {"mutants": total["mutants"], **{s.replace(" ", "_"): total[s] for s in STATUSES},
                        "score": round((total["killed"] + total["timeout"]) / checked, 4) if checked else None}}
    emit(report, args.out)


if __name__ == "__main__":
    main()
