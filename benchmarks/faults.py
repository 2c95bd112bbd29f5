"""Faults: kill -9 during ``index``, damaged derived files and catalog, a read-only folder, a file-size
limit; and the newer surfaces (:mod:`fault_surfaces`): damaged and foreign shards, a damaged
milvus-lite database, symbolic links and a stale index under ``dedup``, FIFOs, devices and huge
files, and a full disk under every file lookalike writes.

Each index fault is done to a copy of an index of generated images (``--images`` files, approximate
search on, so a FAISS file exists), then the commands a user would run next are run through the
command line. A fault passes when it ends in self-repair (the command succeeds and answers as before
the fault) or in a one-line error with exit status 1, and when no committed row is lost: every
(id, path, hash) row of the catalog before the fault is still there after it. Prints JSON, one
entry per fault: what was done, the outcome, the first line of any error, rows before and after.
Exit status 1 when a fault does not pass.

    python benchmarks/faults.py --kills 8 --out faults.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import generated_image  # noqa: E402

DB = "index.sqlite"


def lookalike(*args, limit: int | None = None, prefix: tuple = ()) -> subprocess.CompletedProcess:
    """Run the command line (under a file-size ``limit`` in bytes, after a command ``prefix``)."""
    def limited() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([*prefix, sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True,
                          text=True, errors="surrogateescape", timeout=900, preexec_fn=limited if limit else None)


def rows(index: Path) -> set[tuple] | None:
    """The committed (id, path, hash) rows of embedded images, or None when the catalog cannot be read."""
    try:
        with sqlite3.connect(f"file:{index / DB}?mode=ro", uri=True) as conn:
            return set(conn.execute("SELECT id, path, hash FROM images WHERE status = 'ok'").fetchall())
    except sqlite3.DatabaseError:
        return None


def answer(index: Path, query: Path) -> list | None:
    """The paths and distances ``query --json`` answers (exact search), or None when it fails."""
    done = lookalike("query", query, "-k", "5", "--exact", "--index", index, "--json")
    return [(r["path"], r["distance"]) for r in json.loads(done.stdout)["results"]] if done.returncode == 0 else None


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(done: subprocess.CompletedProcess) -> bool:
    """Exit 1 with a one-line error and no traceback: stderr is that line alone, or it ends with the one
    ``error:`` line after what the command printed while it ran (progress, warnings, skipped files)."""
    lines = done.stderr.strip().splitlines()
    if done.returncode != 1 or not lines or "Traceback" in done.stderr:
        return False
    return len(lines) == 1 or (lines[-1].startswith("error: ")
                               and not any(line.startswith("error: ") for line in lines[:-1]))


def entry(fault: str, done: str, before: set | None, after: set | None, ok: bool, outcome: str,
          message: str = "") -> dict:
    kept = before is not None and after is not None and before <= after
    return {"fault": fault, "done": done, "outcome": outcome, "message": message[:300],
            "rows_before": None if before is None else len(before), "rows_after": None if after is None else len(after),
            "committed_rows_kept": kept, "pass": ok and (kept or before is None)}


def kills(images: Path, work: Path, n: int, rng: random.Random, took: float) -> list[dict]:
    """kill -9 ``index --batch 4`` at random moments within ``took`` seconds (what a whole run took),
    ``n`` times, resuming each time."""
    index = work / "killed"
    out = []
    full = len(os.listdir(images))
    for i in range(n):
        before = rows(index) if (index / DB).exists() else set()
        cmd = [sys.executable, "-m", "lookalike", "index", str(images), "--index", str(index), "--batch", "4", "-q"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        at = rng.uniform(0.2, 1.0) * took
        time.sleep(at)
        ran_out = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after_kill = rows(index) if (index / DB).exists() else set()
        check = lookalike("query", images / sorted(os.listdir(images))[0], "-k", "1", "--index", index, "--json")
        opens = check.returncode == 0 or (not (index / DB).exists() and one_line(check))
        out.append(entry("kill -9 during index", f"kill -9 after {at:.1f} s" + (" (it had finished)" if ran_out else ""),
                         before, after_kill, opens and after_kill is not None,
                         "opens and answers" if opens else "does not open", check.stderr.strip()))
        if after_kill is not None and len(after_kill) == full:
            shutil.rmtree(index)  # start again, to kill it at other moments
    if index.exists():
        before = rows(index)
        done = lookalike("index", images, "--index", index, "--json")
        after = rows(index)
        leftovers = sorted(p.name for p in index.iterdir() if p.name.startswith("."))
        ok = done.returncode == 0 and after is not None and len(after) == full and not leftovers
        out.append(entry("resume after kill -9", "index again without a kill", before, after, ok,
                         f"resumed: {len(after or ())} of {full} images" + (f"; left over: {leftovers}" if leftovers else ""),
                         done.stderr.strip()))
    return out


def damaged(pristine: Path, work: Path, images: Path, baseline: list) -> list[dict]:
    """Derived files (vector cache, FAISS) truncated, zeroed, emptied or deleted: each must be rebuilt."""
    query = images / sorted(os.listdir(images))[0]
    out = []
    vectors = next(pristine.glob("vectors-*.npy")).name
    ids = next(pristine.glob("ids-*.npy")).name
    stamp = next(pristine.glob("vectors-*.json")).name

    def truncate(p: Path) -> None:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def zero(p: Path) -> None:
        size = p.stat().st_size
        with open(p, "r+b") as f:
            f.seek(128)
            f.write(bytes(size - 128))

    def garbage(p: Path) -> None:
        p.write_bytes(b"\x93NUMPY garbage" + os.urandom(64))

    actions = {"truncated": truncate, "zeroed": zero, "emptied (0 bytes)": lambda p: p.write_bytes(b""),
               "deleted": Path.unlink, "replaced by garbage": garbage}
    for name in (vectors, ids, stamp, "ann.faiss"):
        for what, act in actions.items():
            if name == stamp and what == "zeroed":
                continue
            index = work / "damaged"
            shutil.rmtree(index, ignore_errors=True)
            shutil.copytree(pristine, index)
            before = rows(index)
            act(index / name)
            got = answer(index, query)
            approximate = lookalike("query", query, "-k", "1", "--index", index, "--json")
            ann_ok = approximate.returncode == 0 and json.loads(approximate.stdout)["results"][0]["distance"] == 0.0
            after = rows(index)
            repaired = (index / name).exists() and (name == "ann.faiss" or digest(index / name) == digest(pristine / name))
            ok = got == baseline and ann_ok and repaired
            out.append(entry(f"{name.split('-')[0].split('.')[0]} file {what}", f"{name} {what}, then query",
                             before, after, ok, "self-repair: same answers, file rebuilt" if ok else
                             f"answers {'same' if got == baseline else 'differ'}, file {'rebuilt' if repaired else 'not rebuilt'}",
                             (approximate.stderr or "").strip()))
    return out


def catalog(pristine: Path, work: Path, images: Path) -> list[dict]:
    """A malformed or empty ``index.sqlite``: one line, nothing touched."""
    query = images / sorted(os.listdir(images))[0]
    out = []
    for what in ("malformed (pages overwritten)", "emptied (0 bytes)", "truncated to its header"):
        index = work / "catalog"
        shutil.rmtree(index, ignore_errors=True)
        shutil.copytree(pristine, index)
        before = rows(index)
        db = index / DB
        good = db.read_bytes()
        if what.startswith("malformed"):
            bad = bytearray(good)
            bad[4096 + 100:4096 * 4:7] = b"\xab" * len(bad[4096 + 100:4096 * 4:7])
            db.write_bytes(bytes(bad))
        else:
            db.write_bytes(b"" if what.startswith("emptied") else good[:100])
        damaged_bytes = digest(db)
        cache = {p.name: digest(p) for p in index.iterdir() if not p.name.startswith(DB)}
        runs = [lookalike("index", images, "--index", index, "-q"), lookalike("query", query, "--index", index),
                lookalike("dedup", images, "--index", index, "-q")]
        untouched = digest(db) == damaged_bytes and cache == {
            p.name: digest(p) for p in index.iterdir() if not p.name.startswith(DB)}  # SQLite may add -wal, -shm
        ok = all(one_line(r) for r in runs) and untouched
        db.write_bytes(good)  # restored from a backup: everything is there
        out.append(entry("catalog " + what, f"index.sqlite {what}, then index, query, dedup", before, rows(index), ok,
                         ("one-line error from each, catalog and cache untouched" if ok else
                          f"exit {[r.returncode for r in runs]}, untouched {untouched}"), runs[0].stderr.strip()))
    return out


def read_only(pristine: Path, work: Path, images: Path, baseline: list) -> dict:
    """A read-only index folder: queries answer, an index run with a new file says read-only."""
    index = work / "readonly"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(pristine, index)
    before = rows(index)
    extra = images.parent / "more"
    shutil.copytree(images, extra)
    generated_image(10**6).save(extra / "new.jpg", quality=90)
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
              "-dac_override,-dac_read_search", "--") if os.geteuid() == 0 else ()
    for path in (index, *index.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        query = lookalike("query", images / sorted(os.listdir(images))[0], "-k", "5", "--exact", "--index", index,
                          "--json", prefix=prefix)
        got = [(r["path"], r["distance"]) for r in json.loads(query.stdout)["results"]] if query.returncode == 0 else None
        write = lookalike("index", extra, "--index", index, "-q", prefix=prefix)
    finally:
        for path in (index, *index.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(extra)
    ok = got == baseline and one_line(write) and "read-only" in write.stderr
    return entry("read-only index folder", "chmod 555/444, then query and index with a new file", before, rows(index), ok,
                 "query answers; index: one-line read-only error" if ok else f"query {query.returncode}, index {write.returncode}",
                 write.stderr.strip())


def file_size_limit(images: Path, work: Path) -> list[dict]:
    """``ulimit -f`` (RLIMIT_FSIZE) during ``index``: one line, what was committed kept, then resumed."""
    out = []
    index = work / "limited"
    shutil.rmtree(index, ignore_errors=True)
    full = len(os.listdir(images))
    for limit in (64 * 1024, 256 * 1024):
        before = rows(index) if (index / DB).exists() else set()
        done = lookalike("index", images, "--index", index, "--batch", "4", "-q", limit=limit)
        after = rows(index) if (index / DB).exists() else set()
        ok = (one_line(done) or (done.returncode == 0 and after is not None and len(after) == full)) and after is not None
        out.append(entry("file-size limit", f"index under ulimit -f {limit // 1024} KB", before, after, ok,
                         "one-line error" if one_line(done) else f"exit {done.returncode}", done.stderr.strip()))
    before = rows(index)
    done = lookalike("index", images, "--index", index, "--json")
    after = rows(index)
    ok = done.returncode == 0 and after is not None and len(after) == full
    out.append(entry("file-size limit lifted", "index again without the limit", before, after, ok,
                     f"resumed: {len(after or ())} of {full} images", done.stderr.strip()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--kills", type=int, default=8, help="kill -9 during index this many times.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    parser.add_argument("--only", choices=("index", "surfaces"), help="Only the index-folder faults, or only the "
                        "newer surfaces (shards, milvus-lite, links, special files, a full disk) [default: both].")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lookalike-faults-"))
    images = work / "images"
    images.mkdir()
    for i in range(args.images):
        generated_image(i).save(images / f"f{i:05d}.jpg", quality=90)
    pristine = work / "pristine"
    began = time.monotonic()
    first = lookalike("index", images, "--index", pristine, "--ann", "hnsw", "--batch", "4", "-q")
    took = time.monotonic() - began
    if first.returncode:
        raise SystemExit(first.stderr)
    lookalike("query", images / "f00000.jpg", "-k", "1", "--index", pristine)  # every derived file written
    baseline = answer(pristine, images / sorted(os.listdir(images))[0])
    faults = []
    if args.only != "surfaces":
        faults += [*kills(images, work, args.kills, rng, took), *damaged(pristine, work, images, baseline),
                   *catalog(pristine, work, images), read_only(pristine, work, images, baseline),
                   *file_size_limit(images, work)]
    if args.only != "index":
        import fault_surfaces as new

        few = work / "few"  # the surfaces that embed or train again: a few images are enough
        few.mkdir()
        for name in sorted(os.listdir(images))[:24]:
            shutil.copy(images / name, few / name)
        for surface, inputs in ((new.shard_faults, (few, work)), (new.milvus_faults, (few, work)),
                                (new.link_faults, (images, work)), (new.special_files, (few, work, pristine)),
                                (new.full_disk, (few, work, pristine))):
            try:
                faults += surface(*inputs)
            except Exception as e:  # noqa: BLE001 - the harness itself failed: say so and go on
                faults.append(entry(surface.__name__, "the benchmark's own steps", None, None, False,
                                    f"the harness failed: {e!r}"))
    result = {"images": args.images, "faults": faults, "passed": sum(f["pass"] for f in faults),
              "failed": [f["fault"] + ": " + f["done"] for f in faults if not f["pass"]],
              "seconds": round(time.monotonic() - started, 1), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    lines = ",\n".join("    " + json.dumps(f, ensure_ascii=False) for f in faults)
    text = json.dumps({**result, "faults": []}, indent=2).replace('"faults": []', '"faults": [\n' + lines + "\n  ]")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
