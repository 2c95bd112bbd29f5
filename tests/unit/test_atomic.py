"""Files written for the user exist whole or not at all, on a full disk too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lookalike import atomic


def test_write_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    out = tmp_path / "list.txt"
    out.write_bytes(b"old")
    atomic.write(out, "new ü\n")
    assert out.read_bytes() == "new ü\n".encode() and os.listdir(tmp_path) == ["list.txt"]
    umask = os.umask(0)
    os.umask(umask)
    atomic.write(tmp_path / "fresh", b"x")
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_error_while_writing_leaves_the_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "page.html"
    out.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic.replacing(out, "w", encoding="utf-8") as f:
            f.write("half a page")
            raise RuntimeError("stop")
    assert out.read_text() == "previous" and os.listdir(tmp_path) == ["page.html"]


@pytest.mark.parametrize("existing", [None, b"an earlier whole file\n"])
def test_a_file_size_limit_leaves_the_previous_file_or_none(tmp_path, existing):
    """What a full disk does to a write (EFBIG under RLIMIT_FSIZE, as ENOSPC on a full file system)."""
    out = tmp_path / "out.bin"
    if existing is not None:
        out.write_bytes(existing)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from lookalike import atomic\n"
            "try:\n"
            f"    atomic.write({str(out)!r}, b'p' * 100_000)\n"
            "except OSError as e:\n"
            "    sys.exit(f'error {e.errno}')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "error 27" in proc.stderr, proc.stderr  # EFBIG
    assert (out.read_bytes() == existing) if existing is not None else not out.exists()
    assert os.listdir(tmp_path) == (["out.bin"] if existing is not None else [])


def test_text_is_written_in_the_encoding_asked_for_and_a_long_name_gets_a_temporary_that_fits(tmp_path):
    atomic.write(tmp_path / "latin.txt", "café", encoding="latin-1")
    assert (tmp_path / "latin.txt").read_bytes() == b"caf\xe9"
    longest = tmp_path / ("n" * 255)  # the longest name a file system allows: the temporary's is cut
    atomic.write(longest, b"x")
    assert longest.read_bytes() == b"x" and os.listdir(tmp_path) == sorted(["latin.txt", "n" * 255])


def test_an_interrupt_while_writing_leaves_the_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "list.txt"
    out.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt), atomic.replacing(out) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert out.read_bytes() == b"previous" and os.listdir(tmp_path) == ["list.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files through /proc (Linux)")
def test_the_bytes_and_then_the_rename_are_synced_to_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.path.getsize(f"/proc/self/fd/{fd}")
                       if os.path.isfile(f"/proc/self/fd/{fd}") else None))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write(tmp_path / "out.bin", b"12345")
    assert len(synced) == 2
    (temporary, size), (folder, _) = synced
    assert os.path.dirname(temporary) == str(tmp_path) and temporary.endswith(".part") and size == 5
    assert folder == str(tmp_path)  # the folder, after the rename, so that the new name lasts too
