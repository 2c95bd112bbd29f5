"""The newer surfaces for ``faults.py``: shard folders, milvus-lite databases, links and a stale index
under ``dedup``, special files, and a full disk under every file lookalike writes.

Each function returns entries of ``faults.py``'s shape (:func:`faults.entry`): a fault passes when it
ends in a one-line error (exit 1) that names what is wrong, or in the right answer, and loses nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from faults import entry, lookalike, one_line, rows

import numpy as np


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(proc: subprocess.CompletedProcess, *what) -> bool:
    """A one-line error that names each of ``what``."""
    return one_line(proc) and all(str(w) in proc.stderr for w in what)


def shard_faults(images: Path, work: Path) -> list[dict]:
    """A folder of shards with another model's shard, one of another width, or an empty, garbage,
    cut-short, damaged or foreign Parquet file: ``index --from`` stops in one line naming the file, and
    nothing reaches the catalog; ``embed`` into that folder stops too (it reads no vectors, so a
    damaged vector page is for loading to find)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lookalike.cluster.shards import MODEL_KEY, Shards, table

    good = work / "shards"
    done = lookalike("embed", images, "--out", good, "-q")
    if done.returncode:
        return [entry("shards", "embed", None, None, False, "embed failed", done.stderr)]
    first = Shards(str(good)).names()[0]
    real = Shards(str(good)).model()
    data = (good / first).read_bytes()

    def foreign(identity: dict, width: int) -> bytes:
        rows_ = {"path": ["/elsewhere/x.jpg"], "size": [1], "mtime_ns": [1], "hash": ["h"], "width": [4],
                 "height": [4], "error": [None]}
        shard = table(rows_, np.ones((1, width), np.float32), {**identity, "dim": width})
        shard = shard.replace_schema_metadata({MODEL_KEY: json.dumps(identity, sort_keys=True).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(shard, sink)
        return sink.getvalue().to_pybytes()

    damaged = bytearray(data)
    damaged[len(damaged) // 3] ^= 0x55
    plain = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    cases = {"another model's shard (16-d)": foreign({"name": "other-net", "layer": "head", "dim": 16}, 16),
             "a shard of another width than its model's": foreign(real, 16),
             "an empty .parquet": b"", "a garbage .parquet": b"not parquet " * 40,
             "a shard cut short": data[: len(data) // 2], "a shard with a damaged page": bytes(damaged),
             "a foreign Parquet file": plain.getvalue().to_pybytes()}
    out = []
    for what, content in cases.items():
        folder = work / "shards-fault"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(good, folder)
        name = first if "damaged page" in what else "part-0000aaaa.parquet"
        (folder / name).write_bytes(content)
        index = work / "from-shards"
        shutil.rmtree(index, ignore_errors=True)
        loaded = lookalike("index", "--from", folder, "--index", index, "-q")
        after = rows(index) if (index / "index.sqlite").exists() else set()
        embedded = lookalike("embed", images, "--out", folder, "-q")
        ok = (_names(loaded, name) and not after
              and ("damaged page" in what or _names(embedded, name)))
        out.append(entry("shards: " + what, f"{name} in the shard folder, then index --from and embed --out", set(),
                         after, ok, "one line naming the file; nothing loaded" if ok else
                         f"index --from exit {loaded.returncode}, {len(after or ())} rows loaded, embed exit "
                         f"{embedded.returncode}", loaded.stderr.strip()))
    return out


def milvus_faults(images: Path, work: Path) -> list[dict]:
    """A milvus-lite database damaged (schema, data, vector index; a file in its folder's place):
    ``query --uri`` and ``ingest`` stop in one line naming it and the remedy; ``ingest --rebuild``
    makes it again from the shards."""
    shards, pristine = work / "milvus-shards", work / "milvus.db"
    made = lookalike("embed", images, "--out", shards, "-q")
    made = made if made.returncode else lookalike("ingest", shards, "--uri", pristine, "-q")
    if made.returncode:
        return [entry("milvus-lite", "embed, ingest", None, None, False, "could not make one", made.stderr)]
    query = images / sorted(os.listdir(images))[0]
    out = []
    for what in ("schema.json", "data/*.parquet", "indexes/*", "an empty file", "a garbage file"):
        db = work / "mv.db"
        shutil.rmtree(db, ignore_errors=True) if db.is_dir() else db.unlink(missing_ok=True)
        shutil.copytree(pristine, db)
        if what.startswith("an empty") or what.startswith("a garbage"):
            shutil.rmtree(db)
            db.write_bytes(b"" if "empty" in what else b"not a database\n" * 20)
        else:
            (target,) = sorted((db / "collections" / "lookalike").rglob(what))  # the collection's own files
            target.write_bytes(b"garbage\n")
        runs = [lookalike("query", query, "--uri", db), lookalike("ingest", shards, "--uri", db, "-q")]
        rebuilt = lookalike("ingest", shards, "--uri", db, "--rebuild", "-q")
        again = lookalike("query", query, "--uri", db, "--json")
        answers = again.returncode == 0 and json.loads(again.stdout)["results"][0]["path"] == str(query)
        ok = all(_names(r, db, "--rebuild") for r in runs) and rebuilt.returncode == 0 and answers
        out.append(entry("milvus-lite: " + what.split("/")[0] + (" damaged" if not what.startswith("a") else ""),
                         f"{what} in the database {'made garbage' if '/' in what or '.' in what else ''}, then "
                         "query --uri, ingest; ingest --rebuild", None, None, ok,
                         "one line naming it and --rebuild; ingest --rebuild made it again" if ok else
                         f"exit {[r.returncode for r in runs]}, rebuild exit {rebuilt.returncode}, answers {answers}",
                         runs[0].stderr.strip()))
    return out


def _kept_after_removal(out: dict, listing: Path) -> list[str]:
    """Remove every listed file; the kept files that are then gone or hold other bytes (before: after)."""
    kept = {g["keep"]: _digest(Path(g["keep"])) for g in out["groups"]}
    for path in [os.fsdecode(p) for p in listing.read_bytes().split(b"\0")[:-1]]:
        os.remove(path)
    return [k for k, d in kept.items() if not os.path.exists(k) or _digest(Path(k)) != d]


def link_faults(images: Path, work: Path) -> list[dict]:
    """Deletion lists around symbolic links and a stale index: after ``xargs -0 rm`` on the list every
    group keeps a real file with its bytes; an index that no longer matches the disk lists nothing."""
    out = []
    root, outside = work / "links", work / "outside"
    for path in (root, outside):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    names = sorted(os.listdir(images))
    shutil.copy(images / names[0], root / "photo_original_long_name.jpg")
    (root / "p.jpg").symlink_to("photo_original_long_name.jpg")
    shutil.copy(images / names[1], outside / "t.jpg")
    (root / "l2_a_longer_name.jpg").symlink_to(outside / "t.jpg")
    (root / "l1.jpg").symlink_to("l2_a_longer_name.jpg")
    shutil.copy(images / names[2], root / "c.jpg")
    os.link(root / "c.jpg", root / "hard_link_to_c.jpg")
    listing = work / "links.nul"
    done = lookalike("dedup", root, "--index", work / "links-ix", "--follow-links", "--to-remove", listing, "-0",
                     "--json")
    lost = _kept_after_removal(json.loads(done.stdout), listing) if done.returncode == 0 else ["(dedup failed)"]
    out.append(entry("links: a link and its target", "p.jpg -> its target, a chain of links to a file outside, a "
                     "hard link; dedup --to-remove -0, then rm every listed file", None, None,
                     done.returncode == 0 and not lost, "every group keeps a real file with its bytes" if not lost
                     else f"lost: {lost}", done.stderr.strip()))
    for what in ("kept file deleted", "kept file overwritten", "bytes changed, size and time kept"):
        stale = work / "stale"
        shutil.rmtree(stale, ignore_errors=True)
        stale.mkdir()
        for name in names[:2]:
            shutil.copy(images / name, stale / name)
            shutil.copy(images / name, stale / f"copy_of_{name}")
        ix = work / "stale-ix"
        shutil.rmtree(ix, ignore_errors=True)
        lookalike("index", stale, "--index", ix, "-q")
        target = stale / names[0]
        if what == "kept file deleted":
            target.unlink()
        elif what == "kept file overwritten":
            shutil.copy(images / names[5], target)
        else:
            target = stale / f"copy_of_{names[0]}"
            st = target.stat()
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0xFF
            target.write_bytes(bytes(data))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        listing = work / "stale.txt"
        listing.unlink(missing_ok=True)
        done = lookalike("dedup", "--index", ix, "--to-remove", listing)
        ok = _names(done, target, "lookalike index") and not listing.exists()
        out.append(entry("stale index: " + what, f"{what} after indexing, then dedup --index --to-remove", None, None,
                         ok, "one line naming the file and the remedy; no list" if ok else
                         f"exit {done.returncode}, list written {listing.exists()}", done.stderr.strip()))
    return out


def _peak_rss_mb(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run the command line, and the peak resident memory of that process in MB."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors='surrogateescape')\n"
            "sys.stderr.write(p.stderr)\nsys.stdout.write(p.stdout)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\nsys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "lookalike", *map(str, args)],
                          capture_output=True, text=True, errors="surrogateescape", timeout=300)
    *lines, peak = proc.stderr.strip().splitlines()
    proc.stderr = "\n".join(lines) + "\n"
    return proc, int(peak) / 1024


def special_files(images: Path, work: Path, pristine: Path) -> list[dict]:
    """A FIFO and a device given to ``query``, a FIFO, a sparse 2 GB file and 300 MB of noise named
    .jpg under ``index``, and an indexed file replaced by a FIFO under ``serve``: refused without
    blocking, reading or memory growing; the server answers 404 for the FIFO and keeps serving."""
    out = []
    folder = work / "special"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    with open(folder / "big.jpg", "wb") as f:
        f.truncate(2 * 2**30)
    with open(folder / "noise.jpg", "wb") as f:
        for _ in range(300):
            f.write(os.urandom(2**20))
    for target in (folder / "pipe.jpg", Path("/dev/zero")):
        started = time.monotonic()
        done, peak = _peak_rss_mb("query", target, "--index", pristine)
        ok = _names(done, "regular file") and peak < 1024
        out.append(entry(f"special file: query {target.name}", f"query {target}", None, None, ok,
                         f"one line in {time.monotonic() - started:.1f} s, peak {peak:.0f} MB" if ok else
                         f"exit {done.returncode}, peak {peak:.0f} MB", done.stderr.strip()))
    done, peak = _peak_rss_mb("index", folder, "--index", work / "special-ix", "--json")
    reasons = {os.path.basename(s["path"]): s["reason"] for s in json.loads(done.stdout)["skipped"]} \
        if done.returncode == 0 else {}
    ok = (done.returncode == 0 and "regular file" in reasons.get("pipe.jpg", "") and peak < 1024
          and "too large" in reasons.get("big.jpg", "") and "not an image" in reasons.get("noise.jpg", ""))
    out.append(entry("special files under index", "a FIFO, a sparse 2 GB big.jpg, 300 MB of noise as noise.jpg",
                     None, None, ok, f"each skipped with its reason, peak {peak:.0f} MB" if ok else
                     f"exit {done.returncode}, reasons {reasons}, peak {peak:.0f} MB", done.stderr.strip()))
    out.append(_fifo_under_serve(images, work))
    return out


def _fifo_under_serve(images: Path, work: Path) -> dict:
    import httpx

    served = work / "served"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(images, served)
    ix = work / "served-ix"
    lookalike("index", served, "--index", ix, "-q")
    victim = served / sorted(os.listdir(served))[0]
    victim.unlink()
    os.mkfifo(victim)
    log = open(work / "serve.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(ix), "--port", "0"],
                              stdout=log, stderr=log)
    try:
        deadline, port = time.monotonic() + 120, None
        while port is None and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.5)
            log.seek(0)
            text = log.read()
            port = int(text.split("http://127.0.0.1:")[1].split("/")[0]) if "http://127.0.0.1:" in text else None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ids = {r["name"]: r["id"] for r in client.get("/api/query", params={"id": 1, "k": 100}).json()["results"]}
            started = time.monotonic()
            codes = [client.get(f"/api/{kind}/{ids[victim.name]}").status_code for kind in ("images", "thumbs") * 20]
            health = client.get("/healthz").status_code
            took = time.monotonic() - started
        ok = set(codes) == {404} and health == 200 and took < 10
        return entry("special file: FIFO in place of an indexed file, under serve",
                     "40 requests for its image and thumbnail, then /healthz", None, None, ok,
                     f"404 each, /healthz 200, {took:.1f} s in all" if ok else f"codes {set(codes)}, health {health}")
    except (httpx.HTTPError, KeyError, IndexError, TypeError) as e:
        return entry("special file: FIFO in place of an indexed file, under serve", "requests", None, None, False,
                     f"failed: {e!r}")
    finally:
        with contextlib.suppress(OSError):  # a reader blocked on the FIFO gets its end of file
            os.close(os.open(victim, os.O_WRONLY | os.O_NONBLOCK))
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        server.kill()
        log.close()


@contextlib.contextmanager
def small_disk(where: Path, free: int, files: dict[str, bytes]):
    """``where`` on a tmpfs holding ``files`` (of a page each at most) with ``free`` bytes left
    (rounded down to 4 KiB pages): a full disk."""
    where.mkdir(parents=True, exist_ok=True)
    pages = free // 4096 + len(files) + 1
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(where)], check=True)
    try:
        for name, data in files.items():
            (where / name).write_bytes(data)
        (where / ".filler").write_bytes(b"x" * 4096)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _whole(path: Path, reference: Path) -> bool:
    """Whether a file is a whole one: a list or page equal to the unconstrained run's, anything else
    readable to its end by its format."""
    if path.suffix in (".nul", ".html"):
        return reference.exists() and path.read_bytes() == reference.read_bytes()
    try:
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as img:
                img.load()
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
        elif path.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(onnx.load(str(path)))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        else:
            return path.stat().st_size > 0
    except Exception:  # noqa: BLE001 - any failure to read it back means it is not whole
        return False
    return True


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".filler")


def _hidden(folder: Path) -> list[str]:
    """Files under ``folder`` in or named as temporaries (a name starting with a dot)."""
    return [str(p.relative_to(folder)) for p in _files(folder)
            if any(part.startswith(".") for part in p.relative_to(folder).parts)]


def full_disk(images: Path, work: Path, pristine: Path, only: str = "") -> list[dict]:
    """Every file lookalike writes (those whose name starts with ``only``), onto a full disk (nothing
    left) and one that fills midway (half of what the file needs): one line, exit 1, and each file
    there is whole, the previous one, or absent; no temporary file left. Needs root (a tmpfs is
    mounted); skipped otherwise."""
    if os.geteuid() != 0:
        return [entry("full disk", "a tmpfs", None, None, True, "skipped: mounting a tmpfs needs root")]
    dup = work / "dups"
    shutil.rmtree(dup, ignore_errors=True)
    dup.mkdir()
    first = images / sorted(os.listdir(images))[0]
    for i in range(30):  # long names: a list of some 8 KB
        shutil.copy(first, dup / f"copy {i:02d} {'x' * 200}.jpg")
    for name in sorted(os.listdir(images))[1:4]:
        shutil.copy(images / name, dup / name)
    labelled = work / "labelled"
    shutil.rmtree(labelled, ignore_errors=True)
    for n, name in enumerate(sorted(os.listdir(images))[:24]):
        (labelled / f"class{n % 4}").mkdir(parents=True, exist_ok=True)
        shutil.copy(images / name, labelled / f"class{n % 4}" / name)
    dix = work / "dups-ix"
    lookalike("dedup", dup, "--index", dix, "-q")
    train = ["--epochs", "1", "--unfreeze", "0", "--dim", "16", "--train-size", "64", "--batch", "8",
             "--val-split", "none"]
    writers = {  # what: (the command, given where its output goes; a single file, or a folder)
        "dedup --to-remove list": (lambda o: ["dedup", "--index", dix, "--to-remove", o / "list.nul", "-0"], "list.nul"),
        "dedup --review page": (lambda o: ["dedup", "--index", dix, "--review", o / "review.html"], "review.html"),
        "dedup --montage PNGs": (lambda o: ["dedup", "--index", dix, "--montage", o / "montages"], None),
        "show PNG": (lambda o: ["show", first, "--index", pristine, "--seed", "3", "-o", o / "show.png"], "show.png"),
        "evaluate --report": (lambda o: ["evaluate", labelled, "--report", o / "report"], None),
        "train model folder": (lambda o: ["train", labelled, "-o", o / "model", *train], None),
        "tune tables": (lambda o: ["tune", labelled, "--grid", "lr=1e-4", "-o", o / "tune", "--epochs", "1",
                                   "--val-fraction", "0.25", "-q"], None),
        "index catalog": (lambda o: ["index", images, "--index", o / "ix", "-q"], None),
        "embed shards": (lambda o: ["embed", images, "--out", o / "shards", "-q"], None),
    }
    out = []
    for what, (command, single) in [(w, c) for w, c in writers.items() if w.startswith(only)]:
        reference = work / "reference" / what.replace(" ", "_")
        shutil.rmtree(reference, ignore_errors=True)
        reference.mkdir(parents=True)
        made = lookalike(*command(reference))
        need = sum(p.stat().st_size for p in _files(reference))
        if made.returncode:
            out.append(entry(f"full disk: {what}", "the run without a full disk", None, None, False,
                             f"exit {made.returncode}", made.stderr.strip()))
            continue
        for free in (0, need // 2):
            disk = work / "disk"
            previous = b"an earlier whole file\n"
            with small_disk(disk, free, {single: previous} if single and free else {}):  # to be left as it is
                done = lookalike(*command(disk))
                found = _files(disk)
                left = _hidden(disk)
                broken = [p.name for p in found if not (p.name == single and p.read_bytes() == previous)
                          and not _whole(p, reference / p.relative_to(disk))]
                ok = one_line(done) and not left and not broken
            out.append(entry(f"full disk: {what}", f"{free // 1024} KB free of the {need // 1024} KB it writes",
                             None, None, ok, f"one line; {len(found)} whole files, none cut short, no temporaries"
                             if ok else f"exit {done.returncode}, cut short {broken}, left over {left}",
                             done.stderr.strip()))
    return out
