"""``lookalike dedup`` and ``lookalike query --duplicates`` as a user runs them."""

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from helpers import run_cli as run
from helpers import sample_photo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four distinct photos; chelsea with a half-size copy and a mirror, coffee with a byte copy; a corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "rocket", "camera"):
        sample_photo(name).save(root / f"{name}.png")
    chelsea = sample_photo("chelsea")
    chelsea.resize((chelsea.width // 2, chelsea.height // 2), Image.LANCZOS).save(root / "chelsea small.jpg", quality=85)
    ImageOps.mirror(chelsea).save(root / "chelsea_flip.jpg", quality=90)
    (root / "sub").mkdir()
    shutil.copyfile(root / "coffee.png", root / "sub" / "coffee.png")
    st = os.stat(root / "coffee.png")
    os.utime(root / "sub" / "coffee.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the copy is newer
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.fixture(scope="module")
def deduped(folder, tmp_path_factory):
    work = tmp_path_factory.mktemp("dedup")
    proc = run("dedup", folder, "--index", work / "index", "--json", "--to-remove", work / "remove.txt",
               "--montage", work / "montages", "--device", "cpu")
    return work, json.loads(proc.stdout)


def test_dedup_indexes_the_folder_and_reports_groups(deduped, folder):
    _, out = deduped
    assert out["index"]["indexed"] == 7 and out["n_images"] == 7
    assert out["preset"] == "near" and out["metric"] == "cosine" and out["search"] == "exact"
    groups = {(g["kind"], g["keep"]): sorted(d["path"] for d in g["duplicates"]) for g in out["groups"]}
    assert groups == {
        ("exact", str(folder / "coffee.png")): [str(folder / "sub" / "coffee.png")],
        ("near", str(folder / "chelsea.png")): sorted([str(folder / "chelsea small.jpg"), str(folder / "chelsea_flip.jpg")]),
    }
    exact = next(g for g in out["groups"] if g["kind"] == "exact")
    assert exact["duplicates"][0]["distance"] == 0.0
    near = next(g for g in out["groups"] if g["kind"] == "near")
    assert all(0 < d["distance"] <= out["threshold"] for d in near["duplicates"])
    assert out["rule"]["min_inliers"] > 0 and out["stages"]["pairs_verified"] >= 2
    flip = next(d for d in near["duplicates"] if d["path"].endswith("chelsea_flip.jpg"))
    assert flip["evidence"]["flipped"] and "flipped" in flip["evidence"]["summary"]


def test_corrupt_file_is_skipped_with_a_reason(deduped, folder):
    _, out = deduped
    assert [s["path"] for s in out["skipped"]] == [str(folder / "broken.png")]
    assert out["skipped"][0]["reason"]


def test_to_remove_and_montages(deduped, folder):
    work, out = deduped
    removed = (work / "remove.txt").read_text().splitlines()
    assert sorted(removed) == sorted([str(folder / "sub" / "coffee.png"), str(folder / "chelsea small.jpg"),
                                      str(folder / "chelsea_flip.jpg")])
    assert not {g["keep"] for g in out["groups"]} & set(removed)
    assert all(os.path.exists(p) for p in removed)  # listed, never deleted
    pngs = sorted(os.listdir(work / "montages"))
    assert pngs == ["group-0001-exact.png", "group-0002-near.png"]
    with Image.open(work / "montages" / pngs[1]) as img:
        assert img.width > 300 and img.height > 150


def test_dedup_of_an_existing_index_prints_a_table(deduped, folder):
    work, _ = deduped
    proc = run("dedup", "--index", work / "index", "--threshold", "exact")
    assert "chelsea small.jpg" not in proc.stdout  # a half-size copy is not an "exact" duplicate
    assert "coffee.png" in proc.stdout
    assert "1 exact group (2 files), 1 near group (2 files) among 7 images; 2 files could go" in proc.stdout
    strict = run("dedup", "--index", work / "index", "-t", "0")
    assert "0 near groups" in strict.stdout
    assert "; 1 file could go (--to-remove)" in strict.stdout  # the exact copy alone, in the singular


def test_bad_threshold_is_a_one_line_error(deduped):
    work, _ = deduped
    proc = run("dedup", "--index", work / "index", "--threshold", "loose", check=False)
    assert proc.returncode == 1 and "unknown preset" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_query_duplicates(deduped, folder, tmp_path):
    work, _ = deduped
    again = tmp_path / "chelsea again.jpg"
    sample_photo("chelsea").save(again, quality=75)
    out = json.loads(run("query", again, "--duplicates", "--index", work / "index", "--json").stdout)
    assert out["mode"] == "duplicates"
    assert {os.path.basename(r["path"]) for r in out["results"]} == {"chelsea.png", "chelsea small.jpg", "chelsea_flip.jpg"}
    new = tmp_path / "astronaut.jpg"
    sample_photo("astronaut").save(new)
    proc = run("query", new, "--duplicates", "--index", work / "index", "--json")
    assert json.loads(proc.stdout)["results"] == [] and "no duplicate of" in proc.stderr


def test_deletion_list_never_lists_every_copy_and_handles_line_breaks(tmp_path):
    # Three byte copies of a half-size chelsea (one named with a newline and non-ASCII), near the original.
    root = tmp_path / "photos"
    root.mkdir()
    chelsea = sample_photo("chelsea")
    chelsea.save(root / "chelsea.png")
    small = root / "фото ü 😀.jpg"
    chelsea.resize((chelsea.width // 2, chelsea.height // 2), Image.LANCZOS).save(small, quality=85)
    for name in ("copy [1].jpg", "new\nline.jpg"):
        shutil.copyfile(small, root / name)
    sample_photo("coffee").save(root / "coffee.png")
    listing = tmp_path / "remove.txt"
    index = tmp_path / "index"
    proc = run("dedup", root, "--index", index, "--to-remove", listing, "--device", "cpu", "-q", check=False)
    assert proc.returncode == 1 and "line break" in proc.stderr and "-0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not listing.exists()
    out = json.loads(run("dedup", "--index", index, "--to-remove", listing, "-0", "--json").stdout)
    listed = [os.fsdecode(p) for p in listing.read_bytes().split(b"\0")[:-1]]
    assert listed == out["to_remove"]
    assert [(g["kind"], g["keep"]) for g in out["groups"]] == [("near", str(root / "chelsea.png"))]
    assert sorted(listed) == sorted(str(root / n) for n in ("фото ü 😀.jpg", "copy [1].jpg", "new\nline.jpg"))
    assert {d["match"] for d in out["groups"][0]["duplicates"]} == {"near"}
    assert all(os.path.exists(p) for p in listed)


def test_the_original_is_kept_over_a_flipped_copy_larger_in_bytes(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    chelsea = sample_photo("chelsea")
    chelsea.save(root / "chelsea.jpg", quality=90)
    ImageOps.mirror(chelsea).save(root / "chelsea_flipped.jpg", quality=90, comment=b"edited " * 200)
    assert os.path.getsize(root / "chelsea_flipped.jpg") > os.path.getsize(root / "chelsea.jpg")
    os.utime(root / "chelsea_flipped.jpg", ns=(0, 0))  # and older
    out = json.loads(run("dedup", root, "--index", tmp_path / "index", "--json", "--device", "cpu").stdout)
    assert [(g["keep"], out["to_remove"]) for g in out["groups"]] == [
        (str(root / "chelsea.jpg"), [str(root / "chelsea_flipped.jpg")])]
    assert "shorter name" in run("dedup", "--help").stdout


def test_review_page_shows_groups_with_the_keeper_marked_and_evidence(deduped, tmp_path):
    work, out = deduped
    page = tmp_path / "review.html"
    proc = run("dedup", "--index", work / "index", "--review", page, "--json")
    assert json.loads(proc.stdout)["to_remove"] == out["to_remove"]
    text = page.read_text(encoding="utf-8")
    assert text.count("<section>") == len(out["groups"]) and text.count('class="keep"') == len(out["groups"])
    assert text.count(" checked>") == len(out["to_remove"])  # ticked as the report lists them
    for g in out["groups"]:
        for d in g["duplicates"]:
            assert f'data-path="{html.escape(json.dumps(d["path"]), quote=True)}" checked' in text
            if "evidence" in d:
                assert html.escape(d["evidence"]["summary"]) in text
    assert "data:image/jpeg;base64," in text and "never deletes" in text
    assert all(os.path.exists(p) for p in out["to_remove"])


def test_the_readme_example_keeps_the_original_over_its_centre_crop(tmp_path):
    # examples/make_photos.py writes astronaut.jpg (512 x 512) and astronaut_cropped.jpg, its 75 %
    # centre crop (384 x 384); a JPEG that large is decoded at half size for the model, and the
    # catalog once stored that 256 x 256 as its size, so the crop was kept and the original listed.
    subprocess.run([sys.executable, str(REPO / "examples" / "make_photos.py"), str(tmp_path / "photos")], check=True,
                   capture_output=True, timeout=120)
    out = json.loads(run("dedup", tmp_path / "photos", "--index", tmp_path / "index", "--json", "--device", "cpu").stdout)
    group, = [g for g in out["groups"] if "astronaut" in os.path.basename(g["keep"])]
    assert os.path.basename(group["keep"]) == "astronaut.jpg"
    crop, = [d for d in group["duplicates"] if d["path"].endswith("astronaut_cropped.jpg")]
    evidence = crop["evidence"]
    assert abs(evidence["scale"] - 1.0) < 0.03 and 0.5 < evidence["shown"] < 0.62 and evidence["filled"] > 0.95
    assert "cropped (shows 56%)" in evidence["edits"] and not any("border" in e for e in evidence["edits"])
    assert str(tmp_path / "photos" / "astronaut.jpg") not in out["to_remove"]
