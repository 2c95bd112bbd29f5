"""What dedup reports (dedup/report.py): each duplicate and group as ``dedup --json`` shows them, the
to-remove list and its refusals, and the list written one name a line or NUL-separated."""

import os

import pytest

from lookalike.dedup import ondisk
from lookalike.dedup.geometry import Evidence
from lookalike.dedup.report import BestShot, DedupReport, Duplicate, Group, Shot, write_paths
from lookalike.dedup.rules import Rule
from lookalike.images import content_hash


def test_a_duplicate_in_json_rounds_its_distance_and_shows_only_what_it_has():
    assert Duplicate("/p/b.jpg", 0.12345678).to_dict() == {"path": "/p/b.jpg", "distance": 0.123457, "match": "near"}
    assert Duplicate("/p/c.jpg", 0.0, "exact", copy_of="/p/b.jpg").to_dict() == {
        "path": "/p/c.jpg", "distance": 0.0, "match": "exact", "copy_of": "/p/b.jpg"}
    found = Evidence(212, 300, rotation=90, agreement=0.98765, edits=["rotated 90°"])
    shown = Duplicate("/p/d.jpg", 0.2, evidence=found).to_dict()
    assert shown["evidence"]["inliers"] == 212 and shown["evidence"]["agreement"] == 0.988
    assert shown["evidence"]["summary"] == "212 inliers, 99% alike: rotated 90°"


def test_a_group_in_json_keeps_its_duplicates_in_order():
    group = Group("near", "/p/a.jpg", [Duplicate("/p/c.jpg", 0.2), Duplicate("/p/b.jpg", 0.1, "exact")])
    assert group.to_dict() == {"kind": "near", "keep": "/p/a.jpg", "duplicates": [
        {"path": "/p/c.jpg", "distance": 0.2, "match": "near"}, {"path": "/p/b.jpg", "distance": 0.1, "match": "exact"}]}


def test_a_group_of_shots_in_json_says_why_its_file_is_kept_and_what_each_was_compared_with():
    best = BestShot("/p/a.jpg", "the sharpest of 3 shots", {"/p/a.jpg": Shot(2.123456, 0.012345),
                                                             "/p/b.jpg": Shot(0.5, 0.0), "/p/c.jpg": Shot(0.4, 0.1)})
    group = Group("shots", "/p/a.jpg", [Duplicate("/p/b.jpg", 0.1), Duplicate("/p/c.jpg", 0.2, compared_with="/p/b.jpg")],
                  best)
    assert group.to_dict() == {"kind": "shots", "keep": "/p/a.jpg", "duplicates": [
        {"path": "/p/b.jpg", "distance": 0.1, "match": "near"},
        {"path": "/p/c.jpg", "distance": 0.2, "match": "near", "compared_with": "/p/b.jpg"}],
        "keep_reason": "the sharpest of 3 shots", "shots": [
            {"path": "/p/a.jpg", "sharpness": 2.123, "clipped": 0.0123}, {"path": "/p/b.jpg", "sharpness": 0.5, "clipped": 0.0},
            {"path": "/p/c.jpg", "sharpness": 0.4, "clipped": 0.1}]}


def test_the_report_in_json(tmp_path):
    files = {}
    for name, data in [("a.jpg", b"a" * 10), ("b.jpg", b"b" * 20)]:
        (tmp_path / name).write_bytes(data)
        st = os.stat(tmp_path / name)
        files[str(tmp_path / name)] = (st.st_size, st.st_mtime_ns, content_hash(data))
    a, b = list(files)
    report = DedupReport(Rule(0.05), None, 7, search="hnsw", seconds=1.23456, stages={"verified": 0},
                         groups=[Group("near", a, [Duplicate(b, 0.04)])], skipped=[("/p/x.jpg", "cannot be read")],
                         indexed=files)
    assert report.threshold == 0.05
    assert report.to_dict() == {
        "metric": "cosine", "threshold": 0.05, "preset": None, "n_images": 7, "search": "hnsw",
        "rule": Rule(0.05).to_dict(), "stages": {"verified": 0},
        "groups": [{"kind": "near", "keep": a, "duplicates": [{"path": b, "distance": 0.04, "match": "near"}]}],
        "to_remove": [b], "skipped": [{"path": "/p/x.jpg", "reason": "cannot be read"}], "seconds": 1.235}
    empty = DedupReport(Rule(0.05), "exact", 0).to_dict()
    assert (empty["search"], empty["groups"], empty["to_remove"], empty["skipped"], empty["seconds"]) == (
        "exact", [], [], [], 0.0)


def test_the_disk_is_checked_once_before_the_first_list(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"a")
    (tmp_path / "b.jpg").write_bytes(b"b")
    st = os.stat(tmp_path / "b.jpg")
    b = str(tmp_path / "b.jpg")
    report = DedupReport(Rule(0.1), None, 2, groups=[Group("near", str(tmp_path / "a.jpg"), [Duplicate(b, 0.05)])],
                         indexed={b: (st.st_size, st.st_mtime_ns, content_hash(b"b"))})
    stale = DedupReport(Rule(0.1), None, 2, groups=report.groups, indexed={b: (st.st_size + 1, st.st_mtime_ns, "x")})
    with pytest.raises(ondisk.StaleIndex, match="size or modification time"):
        stale.to_remove()
    assert report.to_remove() == [b]
    os.remove(b)  # checked already: the list the user was shown does not change under it
    assert report.to_remove() == [b]


@pytest.mark.parametrize("groups", [
    [Group("exact", "/a", [Duplicate("/b", 0.0, "exact")]), Group("near", "/c", [Duplicate("/a", 0.05)])],  # a kept file listed
    [Group("near", "/a", [Duplicate("/b", 0.05)]), Group("near", "/c", [Duplicate("/b", 0.05)])],  # listed twice
    [Group("near", "/a", [Duplicate("/b", 0.05)]), Group("near", "/a", [Duplicate("/c", 0.05)])],  # kept twice
])
def test_overlapping_groups_are_refused(groups):
    with pytest.raises(RuntimeError, match="^duplicate groups overlap; refusing to write a list of files to remove$"):
        DedupReport(Rule(0.1), None, 3, groups=groups).to_remove()


def test_a_list_that_would_take_a_kept_links_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "t.jpg").write_bytes(b"x")
    (tmp_path / "p.jpg").symlink_to("t.jpg")
    keep, t = str(tmp_path / "p.jpg"), str(tmp_path / "t.jpg")
    report = DedupReport(Rule(0.1), None, 2, groups=[Group("exact", keep, [Duplicate(t, 0.0, "exact")])])
    with pytest.raises(RuntimeError) as e:
        report.to_remove()
    assert str(e.value) == (f"removing the listed files would leave {keep} without its file; "
                            "refusing to write a list of files to remove")


def test_write_paths_refuses_line_breaks_unless_nul_separated(tmp_path):
    names = ["/x/a b.jpg", "/x/new\nline.jpg", "/x/\udcff raw.jpg"]
    out = tmp_path / "list"
    with pytest.raises(ValueError) as e:
        write_paths(names, out)
    assert str(e.value) == ("a file name holds a line break ('/x/new\\nline.jpg'): a one-per-line list would be "
                            "ambiguous; use -0 (NUL-separated) or --json")
    with pytest.raises(ValueError, match=r"\('/x/cr\\rname.jpg'\)"):
        write_paths(["/x/cr\rname.jpg"], out)
    assert not out.exists()
    write_paths(names, out, null=True)
    assert out.read_bytes() == b"/x/a b.jpg\0/x/new\nline.jpg\0/x/\xff raw.jpg\0"
    write_paths([names[0], names[2]], out)
    assert out.read_bytes() == b"/x/a b.jpg\n/x/\xff raw.jpg\n"
    write_paths([], out)
    assert out.read_bytes() == b""


def test_why_each_duplicate_is_listed_with_or_without_evidence():
    found = Evidence(212, 300, rotation=90, agreement=0.98765, edits=["rotated 90°"])
    one_stage = DedupReport(Rule(0.05), None, 4)
    assert one_stage.why(Duplicate("/p/b.jpg", 0.0, "exact")) == "same bytes"
    assert one_stage.why(Duplicate("/p/c.jpg", 0.04)) == ""  # within the radius: nothing more to say
    # a byte copy of a near duplicate: only whose bytes it has, when there is no evidence to add
    assert one_stage.why(Duplicate("/p/c2.jpg", 0.04, copy_of="/p/c.jpg")) == "same bytes as c.jpg"
    assert one_stage.why(Duplicate("/p/d2.jpg", 0.2, copy_of="/q/d.jpg", evidence=found, compared_with="/q/x.jpg")) == (
        "same bytes as d.jpg; 212 inliers, 99% alike: rotated 90° (against x.jpg)")
