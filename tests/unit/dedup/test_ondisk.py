"""Deletion lists checked against the disk: link chains and files changed since indexing (dedup/ondisk.py)."""

import os

import pytest

from lookalike.dedup import ondisk
from lookalike.dedup.report import DedupReport, Duplicate, Group
from lookalike.dedup.rules import Rule
from lookalike.images import content_hash


def test_link_chain_follows_each_link_to_the_file_with_folders_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "t.jpg").write_bytes(b"x")
    (tmp_path / "alias").symlink_to("real")  # a folder link on the way
    (tmp_path / "l2.jpg").symlink_to("alias/t.jpg")
    (tmp_path / "l1.jpg").symlink_to(tmp_path / "l2.jpg")
    real = os.path.realpath(tmp_path)
    assert ondisk.link_chain(str(tmp_path / "l1.jpg")) == [f"{real}/l1.jpg", f"{real}/l2.jpg", f"{real}/real/t.jpg"]
    assert ondisk.link_chain(str(tmp_path / "alias" / "t.jpg")) == [f"{real}/real/t.jpg"]
    assert [ondisk.link_hops(str(tmp_path / n)) for n in ("l1.jpg", "l2.jpg", "real/t.jpg")] == [2, 1, 0]


def test_a_link_loop_ends(tmp_path):
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    assert len(ondisk.link_chain(str(tmp_path / "a.jpg"))) == ondisk.MAX_HOPS + 1


def test_removal_that_would_take_a_kept_links_file_is_found_and_a_hard_link_is_not(tmp_path):
    (tmp_path / "t.jpg").write_bytes(b"x")
    (tmp_path / "p.jpg").symlink_to("t.jpg")
    os.link(tmp_path / "t.jpg", tmp_path / "h.jpg")
    keep, t, h = str(tmp_path / "p.jpg"), str(tmp_path / "t.jpg"), str(tmp_path / "h.jpg")
    assert ondisk.lost_by_removal([keep], [t]) == [keep]
    assert ondisk.lost_by_removal([keep], [h]) == [] and ondisk.lost_by_removal([t], [keep, h]) == []
    report = DedupReport(Rule(0.1), None, 2, groups=[Group("exact", keep, [Duplicate(t, 0.0, "exact")])])
    with pytest.raises(RuntimeError, match="without its file"):
        report.to_remove()


def _indexed(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, content_hash(open(path, "rb").read())


def test_confirm_passes_files_as_indexed_and_names_what_changed(tmp_path):
    names = ["gone.jpg", "bytes.jpg", "size.jpg", "fifo.jpg", "same.jpg", "link.jpg"]
    for name in names[:5]:
        (tmp_path / name).write_bytes(b"0123456789" * 100)
    (tmp_path / "link.jpg").symlink_to("same.jpg")
    facts = {str(tmp_path / n): _indexed(tmp_path / n) for n in names}
    ondisk.confirm(facts)  # nothing changed yet
    ondisk.confirm({k: facts[k] for k in facts if "same" in k or "link" in k})
    (tmp_path / "gone.jpg").unlink()
    st = os.stat(tmp_path / "bytes.jpg")
    (tmp_path / "bytes.jpg").write_bytes(b"9123456789" * 100)  # same size and time, other bytes
    os.utime(tmp_path / "bytes.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "size.jpg").write_bytes(b"short")
    (tmp_path / "fifo.jpg").unlink()
    os.mkfifo(tmp_path / "fifo.jpg")
    expected = {"gone.jpg": "is gone", "bytes.jpg": "other bytes", "size.jpg": "size or modification time",
                "fifo.jpg": "no longer a regular file"}
    for name, why in expected.items():
        with pytest.raises(ondisk.StaleIndex) as caught:
            ondisk.confirm({str(tmp_path / name): facts[str(tmp_path / name)]})
        message = str(caught.value)
        assert name in message and why in message and "lookalike index" in message and "\n" not in message
    with pytest.raises(ondisk.StaleIndex, match=r"and 3 more files"):
        ondisk.confirm(facts)


def test_each_change_is_said_in_one_whole_line_with_the_remedy_and_how_many_more_there_are(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"0123456789")
    facts = {str(tmp_path / n): _indexed(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")}
    remedy = "; nothing was listed. Update it (lookalike index FOLDER, or give dedup the FOLDER) and run dedup again"
    a, b, c = facts

    def message(indexed):
        with pytest.raises(ondisk.StaleIndex) as caught:
            ondisk.confirm(indexed)
        return str(caught.value)

    (tmp_path / "a.jpg").unlink()
    assert message({a: facts[a]}) == f"the index no longer matches the disk: {a} is gone (or its link leads nowhere){remedy}"
    (tmp_path / "b.jpg").write_bytes(b"012345678")
    assert message({a: facts[a], b: facts[b]}) == (
        f"the index no longer matches the disk: {a} is gone (or its link leads nowhere) (and 1 more file){remedy}")
    assert message({b: facts[b]}) == (
        f"the index no longer matches the disk: {b} changed since it was indexed (size or modification time){remedy}")
    st = os.stat(tmp_path / "c.jpg")
    (tmp_path / "c.jpg").write_bytes(b"9123456789")
    os.utime(tmp_path / "c.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert message({c: facts[c]}) == f"the index no longer matches the disk: {c} holds other bytes than were indexed{remedy}"
    (tmp_path / "c.jpg").unlink()
    (tmp_path / "c.jpg").mkdir()
    assert message({c: facts[c]}) == f"the index no longer matches the disk: {c} is no longer a regular file{remedy}"
