"""Mutation testing (mutmut 3) of every module of src/, one at a time; prints JSON.

Each module is mutated on its own, in a scratch copy of the repository (``src/``, ``tests/`` and
``pyproject.toml`` with a ``[tool.mutmut]`` section written for it), against the fast unit tests
that exercise it, within a budget of running time per module (time the run spent stopped, as
background jobs are while a measurement runs, does not count). Per module the JSON gives the mutants,
how many were killed, survived, timed out, had no test, or were not reached in the budget, the
score (killed and timed out over those checked), and the names of the survivors (see them with
``mutmut show NAME`` in the scratch copy kept by ``--keep``).

    nice -n 10 python benchmarks/mutation.py                       # every module of src/
    nice -n 10 python benchmarks/mutation.py src/lookalike/index/store.py --budget 900 --out m.json
    python benchmarks/mutation.py --workdir ~/mutation-run --budget 100000   # again to go on after a stop

The default model is exported once per run, by the unmutated source, and each mutant's test session
starts from a copy of it (``$LOOKALIKE_TEST_MODELS``, honoured by ``tests/conftest.py``) instead of
exporting it again; the sessions of ``lookalike/models/``'s modules, whose mutants may change an
export, and of every module with ``--no-share-model`` export it themselves.

Needs the ``dev`` extra (mutmut). CI does not run it. ``MODULES`` names every module of ``src/``
with its tests (a full run refuses to start while one is missing); a full run of all of them at the
default budget takes up to a day on 2 cores: run the modules a change touches, or keep a full run in a
``--workdir`` and go on with it in several sittings, on the same commit or a later one. Each row names
the commit it was measured on; on a later commit a row stands only while its module, its tests and the
files of tests/ they may import (conftest.py files, helpers: every file there but test_*.py) are the
same, and is measured again otherwise (a change elsewhere in src/ does not re-run it). The JSON names
the commit checked out (``+changes`` when src/, tests/ or pyproject.toml differed from it) and sums
the modules' running time.
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
# pytest options narrowing them. Every module of src/ is here (a full run refuses to start when one is
# missing); a module whose own tests are all slow (Ray, Milvus, torch) is mutated against them all the
# same and its row says so through "no tests".
U = "tests/unit/"
VECTOR_TESTS = [U + "vectors/test_metric.py", U + "vectors/test_searcher.py",
                U + "vectors/test_backends.py", U + "vectors/test_backend_ties.py"]
INDEX_TESTS = [U + "index/test_store.py", U + "index/test_indexer.py", U + "test_api.py"]
# over a stand-in index (no model), each test building its own app (the server's other tests share one app
# through a module-scoped fixture, which hides their catches, and index with the default model)
SERVER_TESTS = [U + "server/test_routes.py", U + "server/test_state.py"]
MAP_TESTS = [U + "map/test_cache.py", U + "map/test_groups.py", U + "map/test_layout.py", U + "map/test_packed.py",
             U + "map/test_payload.py", U + "server/test_mapview.py"]
CLUSTER_TESTS = [U + "cluster/test_shards.py", U + "cluster/test_sources.py", U + "cluster/test_ray_session.py",
                 U + "cluster/test_from_shards.py", U + "cluster/test_embed.py", U + "cluster/test_collection.py"]
MODEL_TESTS = [U + "models/test_registry.py", U + "models/test_embedder.py", U + "models/test_zoo.py"]
EVALUATE_FAST = ("report_calls or report_row or report_table or rows_and_neighbours or exactly_two or extends "
                 "or re_ranked or without_two or curves_drawn or curve_stops or cmc_figure or rounded_to_6 "
                 "or one_per_data or changed_in_its or made_for_the or embedded_skipped or under_their_group "
                 "or two_images_draws or same_average_precision or shortened_in_the_middle or frames_colour "
                 "or plain_grey or indexing_options or opens_the_index or seed_asked")
MODULES = {
    "src/lookalike/__init__.py": [U + "test_package.py"],
    "src/lookalike/__main__.py": [U + "cli/test_main.py"],
    "src/lookalike/api.py": [U + "test_api.py"],  # the server and evaluation tests index with the default model
    "src/lookalike/atomic.py": [U + "test_atomic.py"],
    "src/lookalike/fetch.py": [U + "test_fetch.py"],
    "src/lookalike/images.py": [U + "test_images.py"],
    "src/lookalike/paths.py": [U + "test_paths.py"],
    "src/lookalike/text.py": [U + "test_text.py"],
    # each command's module against its own in-process tests (the tiny model, hand-made indexes, stand-ins
    # for training and Milvus); the commands as subprocesses are tests/e2e's
    "src/lookalike/cli/__init__.py": [U + "cli/test_main.py"],
    # (the ann and dedup command tests are named apart from vectors/test_ann.py and dedup/test_dedup.py)
    **{f"src/lookalike/cli/{m}.py": [U + f"cli/test_{t}.py"] for m, t in (
        ("ann", "ann_command"), ("dedup", "dedup_command"), ("indexing", "indexing"), ("search", "search"),
        ("training", "training"))},
    "src/lookalike/cli/maps.py": [U + "cli/test_maps.py"],
    "src/lookalike/cli/serve.py": [U + "cli/test_serve.py"],
    "src/lookalike/cli/common.py": [U + "cli/test_common.py"],
    "src/lookalike/cli/present.py": [U + "cli/test_present.py"],
    # Ray, Milvus and the default model make cluster/'s own tests slow: its modules against fast tests with
    # the tiny model, Ray's calls in plain Python and a stand-in Milvus (tests/unit/cluster/milvus_standin.py)
    "src/lookalike/cluster/__init__.py": CLUSTER_TESTS,  # no mutants: a docstring
    "src/lookalike/cluster/embed.py": [U + "cluster/test_embed_tiny.py"],
    "src/lookalike/cluster/ray_session.py": [U + "cluster/test_ray_session.py"],
    "src/lookalike/cluster/collection.py": [U + "cluster/test_collection_rows.py"],
    "src/lookalike/cluster/collection_search.py": [U + "cluster/test_collection_search.py"],
    "src/lookalike/cluster/ingest.py": [U + "cluster/test_ingest.py"],
    "src/lookalike/cluster/milvus.py": [U + "cluster/test_milvus.py"],
    "src/lookalike/cluster/from_shards.py": [U + "cluster/test_from_shards.py"],
    "src/lookalike/cluster/shards.py": [U + "cluster/test_from_shards.py", U + "cluster/test_shards.py",
                                        U + "cluster/test_ingest.py", U + "cluster/test_embed_tiny.py"],
    "src/lookalike/cluster/sources.py": [U + "cluster/test_sources.py"],
    "src/lookalike/dedup/__init__.py": [U + "dedup/test_dedup.py", U + "dedup/test_find.py", U + "test_package.py"],
    "src/lookalike/dedup/capture.py": [U + "dedup/test_capture.py"],
    "src/lookalike/dedup/geometry.py": [U + "dedup/test_geometry.py", U + "dedup/test_review.py"],
    # test_dedup.py's end-to-end cases embed real photos with the ONNX model: only its grouping cases here
    "src/lookalike/dedup/keep.py": [U + "dedup/test_keep.py", U + "dedup/test_dedup.py", "-k",
                                    "test_keep or keep_order or flipped or file_traits or around_the_keeper "
                                    "or byte_copies or no_kept_file or overlapping_groups"],
    "src/lookalike/dedup/candidates.py": [U + "dedup/test_find.py", U + "dedup/test_candidates.py",
                                          U + "dedup/test_dedup.py", "-k",
                                          "test_find or neighbours or nearest_only or candidates or too_many_pairs "
                                          "or around_the_keeper"],
    # the shots preset's grouping (_best_shots) and find_duplicates' whole runs are test_dedup.py's
    "src/lookalike/dedup/find.py": [U + "dedup/test_find.py", U + "dedup/test_dedup.py"],
    "src/lookalike/dedup/ondisk.py": [U + "dedup/test_ondisk.py"],
    "src/lookalike/dedup/phash.py": [U + "dedup/test_phash.py"],
    "src/lookalike/dedup/report.py": [U + "dedup/test_report.py", U + "dedup/test_ondisk.py",
                                      U + "dedup/test_review.py"],
    "src/lookalike/dedup/review.py": [U + "dedup/test_review.py"],
    "src/lookalike/dedup/rules.py": [U + "dedup/test_rules.py"],
    "src/lookalike/dedup/verifier.py": [U + "dedup/test_verifier.py"],
    "src/lookalike/evaluation/__init__.py": [U + "evaluation/test_evaluate.py"],
    # test_evaluate.py's cases with the default model embed real photos: its hand-made and tiny-model cases here
    "src/lookalike/evaluation/evaluate.py": [U + "evaluation/test_evaluate.py", "-k", EVALUATE_FAST],
    "src/lookalike/evaluation/rerank.py": [U + "evaluation/test_rerank.py"],
    "src/lookalike/evaluation/retrieval.py": [U + "evaluation/test_retrieval.py"],
    "src/lookalike/index/__init__.py": INDEX_TESTS,
    "src/lookalike/index/approximate.py": [U + "index/test_approximate.py"],
    "src/lookalike/index/collection.py": INDEX_TESTS,
    "src/lookalike/index/embedded.py": INDEX_TESTS + [U + "index/test_approximate.py", U + "index/test_embedded.py"],
    "src/lookalike/index/indexer.py": [U + "index/test_indexer.py"],
    "src/lookalike/index/sqlite.py": [U + "index/test_store.py"],
    "src/lookalike/index/store.py": INDEX_TESTS,
    "src/lookalike/index/vector_cache.py": [U + "index/test_vector_cache.py", U + "index/test_store.py"],
    "src/lookalike/map/__init__.py": MAP_TESTS,
    "src/lookalike/map/cache.py": [U + "map/test_cache.py", U + "map/test_packed.py"],
    "src/lookalike/map/groups.py": [U + "map/test_groups.py", U + "map/test_payload.py"],
    "src/lookalike/map/layout.py": [U + "map/test_layout.py", U + "map/test_cache.py"],
    "src/lookalike/map/packed.py": [U + "map/test_packed.py"],
    "src/lookalike/map/page.py": [U + "map/test_page.py"],
    "src/lookalike/map/payload.py": [U + "map/test_payload.py", U + "map/test_packed.py", U + "map/test_page.py"],
    "src/lookalike/map/picture.py": [U + "map/test_picture.py"],
    **{f"src/lookalike/models/{m}.py": MODEL_TESTS for m in ("errors", "registry")},
    # tiny ONNX graphs and stand-in modules: these export no real network
    "src/lookalike/models/__init__.py": [U + "models/test_registry.py"],
    "src/lookalike/models/embedder.py": [U + "models/test_embedder.py", U + "models/test_registry.py"],
    "src/lookalike/models/export.py": [U + "models/test_export.py"],
    "src/lookalike/models/efficientnet_lite.py": [U + "models/test_efficientnet_lite.py", U + "train/test_head.py"],
    # the FID Inception's shapes on PyTorch's meta device and its blocks on hand-made inputs: no export
    "src/lookalike/models/fid_preprocess.py": [U + "models/test_fid_preprocess.py", U + "models/test_zoo.py"],
    "src/lookalike/models/fid_weights.py": [U + "models/test_fid_weights.py", U + "models/test_zoo.py"],
    "src/lookalike/models/inception_fid.py": [U + "models/test_inception_fid.py"],
    "src/lookalike/models/preprocess.py": [U + "models/test_preprocess.py"],
    **{f"src/lookalike/server/{m}.py": SERVER_TESTS for m in ("__init__", "app", "state", "schemas")},
    "src/lookalike/server/mapview.py": [U + "server/test_mapview_state.py"],  # a stand-in index: no model, no UMAP
    "src/lookalike/server/uploads.py": [U + "server/test_uploads.py"],
    "src/lookalike/server/files.py": [U + "server/test_files.py"],
    # the loop and a run on a stand-in network (tiny_lite.py): the EfficientNet-Lite0 trainings are slow
    "src/lookalike/train/__init__.py": [U + "train/test_loop.py"],
    "src/lookalike/train/loop.py": [U + "train/test_loop.py", U + "train/test_train_loop.py"],
    "src/lookalike/train/run.py": [U + "train/test_run.py"],
    "src/lookalike/train/omp.py": [U + "train/test_omp.py"],  # no mutants (module-level code); a fast reload test
    "src/lookalike/train/save.py": [U + "train/test_save.py"],  # a stand-in network: no training, a tiny export
    "src/lookalike/train/config.py": [U + "train/test_config.py"],
    "src/lookalike/train/head.py": [U + "train/test_normsoftmax.py", U + "train/test_proxy_anchor.py",
                                    U + "train/test_head.py"],
    "src/lookalike/train/average.py": [U + "train/test_average.py"],
    "src/lookalike/train/data.py": [U + "train/test_train_data.py"],
    "src/lookalike/train/tune.py": [U + "train/test_tune.py"],
    "src/lookalike/train/whiten.py": [U + "train/test_whiten.py"],
    "src/lookalike/vectors/__init__.py": VECTOR_TESTS,
    "src/lookalike/vectors/ann.py": [U + "vectors/test_ann.py", U + "vectors/test_faiss_backend.py"],
    "src/lookalike/vectors/backend.py": VECTOR_TESTS,
    # FaissBackend.within (the approximate range search) is exercised by the searcher's and backends' tests
    "src/lookalike/vectors/faiss_backend.py": [U + "vectors/test_faiss_backend.py", U + "vectors/test_ann.py",
                                               U + "vectors/test_searcher.py", U + "vectors/test_backends.py"],
    "src/lookalike/vectors/hamming.py": [U + "vectors/test_hamming.py"],
    "src/lookalike/vectors/metric.py": VECTOR_TESTS,
    "src/lookalike/vectors/searcher.py": VECTOR_TESTS,
}


def unlisted() -> list[str]:
    """The modules of ``src/`` that MODULES does not name (a full run refuses while there are any)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "src").rglob("*.py")
                  if str(p.relative_to(REPO)) not in MODULES)


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
        # mutmut stops a session after (the tests' time + 1 s) x this, in wall time: its default, 15, counted
        # sessions slowed by a loaded machine, or stopped while another job measured, as timed out (killed)
        "timeout_multiplier = 100.0",
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
    # no timeout: a run paused while others measure may wait long (its mutants' results were kept)
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and status in STATUSES or status == "check was interrupted by user":
            found[name] = status
    return found


def export_default_model(cache: Path) -> Path:
    """Export the default model once, with the unmutated source, into ``cache``; the folder of its
    ONNX file, which each mutant's test session copies (``$LOOKALIKE_TEST_MODELS``, see
    ``tests/conftest.py``) instead of exporting the model again."""
    code = ("from lookalike.models.export import onnx_file; from lookalike.models.registry import resolve; "
            "onnx_file(resolve())")
    # no timeout: a run at low priority, or paused, may wait long for the CPU
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src"), "LOOKALIKE_CACHE": str(cache)})
    return cache / "onnx"


def wait_running(proc: subprocess.Popen, budget: float, tick: float = 1.0, gap: float = 5.0,
                 progress=None) -> tuple[bool, float, float]:
    """Wait for ``proc`` until it ends or has run ``budget`` seconds; (ended, seconds run, seconds paused).

    Time while this process was stopped (SIGSTOP, as a measurement that pauses background jobs does
    to the whole process tree) is not counted: a tick that took more than ``gap`` seconds was a pause.
    ``progress(seconds run, seconds paused)``, when given, is called about once a minute.
    """
    ran = paused = 0.0
    last = reported = time.monotonic()
    while ran < budget:
        if progress is not None and last - reported >= 60:
            progress(ran, paused)
            reported = last
        try:
            proc.wait(timeout=min(tick, budget - ran))
            ended = True
        except subprocess.TimeoutExpired:
            ended = False
        now = time.monotonic()
        if now - last > gap:
            paused += now - last
        else:
            ran += now - last
        last = now
        if ended:
            return True, ran, paused
    return False, ran, paused


def run_module(module: str, tests: list[str], budget: float, jobs: int, keep: bool,
               scratch: Path | None = None, mutants: list[str] | None = None, models: Path | None = None,
               progress=None) -> dict:
    """Mutate one module for at most ``budget`` seconds; its counts and survivors.

    With ``scratch``, work in (and keep) that directory, going on from its earlier runs; with
    ``mutants`` (names or globs, as ``mutmut results`` prints them), check those again only. With
    ``models``, the test sessions start from those exported ONNX files, except for a module of
    ``lookalike/models/`` (its mutants may change what an export writes). ``progress`` is passed to
    :func:`wait_running`.
    """
    keep = keep or scratch is not None
    work = scratch_copy(module, tests, scratch)
    # mutmut puts mutants/src first on sys.path itself; an outer PYTHONPATH would shadow it
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "LOOKALIKE_CACHE": os.environ.get("LOOKALIKE_CACHE", str(work / "cache"))}
    env.pop("LOOKALIKE_TEST_MODELS", None)
    if models is not None and not module.startswith("src/lookalike/models/"):
        env["LOOKALIKE_TEST_MODELS"] = str(models)
    log_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *(mutants or [])],
                            cwd=work, env=env,
                            stdout=log_file, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    finished, seconds, paused = wait_running(proc, budget, progress=progress)
    if not finished:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log_file.seek(0)
    log = log_file.read()
    log_file.close()
    status = results(work, env)
    counts = Counter("not checked" if s == "check was interrupted by user" else s for s in status.values())
    checked = sum(counts[s] for s in ("killed", "survived", "timeout", "no tests", "suspicious", "segfault"))
    row = {"module": module, "tests": tests, "mutants": len(status),
           **{s.replace(" ", "_"): counts[s] for s in STATUSES},
           "score": round((counts["killed"] + counts["timeout"]) / checked, 4) if checked else None,
           # mutmut exits non-zero when a module has nothing to mutate: that run is complete too
           "finished": finished and (proc.returncode == 0 or not status), "seconds": round(seconds, 1),
           "paused_s": round(paused, 1),
           "survivors": sorted(n for n, s in status.items() if s in ("survived", "no tests", "suspicious"))}
    if not row["finished"]:
        row["log_tail"] = log[-1000:]
    if keep:
        row["scratch"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return row


def commit_of(repo: Path) -> str:
    """The commit checked out in ``repo``, with ``+changes`` when its src/, tests/ or pyproject.toml differ."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()
    changed = git("status", "--porcelain", "--", "src", "tests", "pyproject.toml")
    return (git("rev-parse", "HEAD") or "unknown") + ("+changes" if changed else "")


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` whole or not at all (a run killed mid-write keeps the last copy)."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(part, path)


def support_files(repo: Path) -> list[str]:
    """The files of ``tests/`` that any test may import: every file there but the ``test_*.py``."""
    return sorted(str(p.relative_to(repo)) for p in (repo / "tests").rglob("*.py")
                  if not p.name.startswith("test_"))


def unchanged(repo: Path, old: str, new: str, paths: list[str]) -> bool:
    """Whether ``paths`` are the same at commits ``old`` and ``new`` of ``repo``."""
    return subprocess.run(["git", "diff", "--quiet", old, new, "--", *paths], cwd=repo).returncode == 0


def kept_module(workdir: Path, module: str, tests: list[str], budget: float, jobs: int,
                models: Path | None, commit: str) -> dict:
    """One module of a run kept in ``workdir``: its saved row if it finished, else mutated further.

    The module's scratch copy and row live in ``workdir``; a run stopped by its budget, or killed, goes
    on from the mutants already checked, and the row's seconds sum the running time of every part
    (saved about once a minute, so a killed part loses at most a minute of it). A row of an earlier
    commit whose module, tests or test support files differ at ``commit``, or whose test selection
    differs from ``tests``, is dropped with its scratch copy and measured afresh.
    """
    slug = module.replace("/", "__")
    saved = workdir / f"{slug}.json"
    fresh = {"commit": commit, "tests": tests, "seconds": 0.0, "paused_s": 0.0, "parts": 0}
    before = json.loads(saved.read_text()) if saved.exists() else fresh
    if before is not fresh and (before["tests"] != tests or before["commit"] != commit and not unchanged(
            REPO, before["commit"], commit, [module, *tests, *support_files(REPO)])):
        print(f"{module}: changed since {before['commit'][:10]}, measured again", file=sys.stderr, flush=True)
        shutil.rmtree(workdir / slug, ignore_errors=True)
        before = fresh
    if before.get("finished"):
        return before

    def progress(ran: float, paused: float) -> None:
        write_json(saved, {**before, "seconds": before["seconds"] + ran, "paused_s": before["paused_s"] + paused,
                           "finished": False})

    row = run_module(module, tests, budget, jobs, True, workdir / slug, None, models, progress)
    row.update(commit=before["commit"], seconds=round(before["seconds"] + row["seconds"], 1),
               paused_s=round(before["paused_s"] + row["paused_s"], 1), parts=before["parts"] + 1)
    write_json(saved, row)
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
    parser.add_argument("--workdir", type=Path, help="keep the run here (each module's scratch copy and row, "
                        "with the commit measured) and run again with the same directory to go on where it "
                        "stopped, on this commit or a later one: a full run in several parts")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--no-share-model", dest="share_model", action="store_false",
                        help="let every test session export the default model itself, as the test suite does "
                        "(by default it is exported once per run and copied into each session's cache)")
    args = parser.parse_args()
    if not args.modules and unlisted():
        parser.error("MODULES names no tests for " + ", ".join(unlisted()))
    chosen = args.modules or list(MODULES)
    if args.scratch and len(chosen) != 1:
        parser.error("--scratch takes one module")
    if args.mutants and not args.scratch:
        parser.error("--mutants needs --scratch (the directory of the run that found them)")
    commit = commit_of(REPO)
    if args.workdir:
        if args.scratch:
            parser.error("--workdir keeps a scratch copy per module itself: leave out --scratch")
        if commit.endswith("+changes"):
            parser.error("a --workdir run measures committed source (each row names its commit): commit the "
                         "changes to src/, tests/ and pyproject.toml first")
        args.workdir.mkdir(parents=True, exist_ok=True)
    for module in chosen:
        if not (MODULES.get(module) or args.tests):
            parser.error(f"{module} is not in MODULES: name its tests with --tests")
        if not (REPO / module).is_file():
            parser.error(f"no such module: {module}")
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lookalike-mutation-models-") as cache:
        models = export_default_model(Path(cache)) if args.share_model else None
        for module in chosen:
            tests = MODULES.get(module) or args.tests
            if args.workdir:
                rows.append(kept_module(args.workdir, module, tests, args.budget, args.jobs, models, commit))
            else:
                rows.append(run_module(module, tests, args.budget, args.jobs, args.keep, args.scratch, args.mutants,
                                       models))
            print(f"{module}: {rows[-1]['killed']}/{rows[-1]['mutants']} killed", file=sys.stderr, flush=True)
    total = Counter()
    for row in rows:
        total.update({s: row[s.replace(" ", "_")] for s in STATUSES} | {"mutants": row["mutants"]})
    checked = sum(total[s] for s in ("killed", "survived", "timeout", "no tests", "suspicious", "segfault"))
    report = {"tool": "mutmut", "commit": commit, "jobs": args.jobs, "budget_per_module_s": args.budget,
              "loadavg": [round(x, 2) for x in os.getloadavg()], "wall_s": round(time.monotonic() - started, 1),
              "modules": rows,
              "total": {"mutants": total["mutants"], **{s.replace(" ", "_"): total[s] for s in STATUSES},
                        "score": round((total["killed"] + total["timeout"]) / checked, 4) if checked else None,
                        "finished": sum(row["finished"] for row in rows),
                        "seconds": round(sum(row["seconds"] for row in rows), 1),
                        "paused_s": round(sum(row["paused_s"] for row in rows), 1)}}
    emit(report, args.out)


if __name__ == "__main__":
    main()
