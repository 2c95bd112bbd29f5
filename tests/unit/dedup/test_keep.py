"""The keep rule on real file headers, grouping around keepers, and the report's groups (dedup/keep.py)."""

import io

import numpy as np
import pytest
from PIL import Image

from helpers import sample_photo
from lookalike.dedup import keep
from lookalike.dedup.keep import (LOSSLESS, OTHER_LOSSY, Traits, assemble_groups, best_shot, file_traits, group_around_keepers,
                                  keep_order, shot_quality)
from lookalike.dedup.report import Shot


@pytest.fixture(scope="module")
def photo():
    return sample_photo("coffee").resize((64, 48))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "PPM"])
def test_lossless_formats_rank_above_any_jpeg(tmp_path, photo, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    photo.save(path, format=fmt)
    assert file_traits(str(path)) == Traits(101, "", fmt) and LOSSLESS == 101
    assert file_traits(str(path)).encoding() == fmt


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_other_lossy_formats_get_the_default_rank(tmp_path, photo, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    photo.save(path, format=fmt)
    assert file_traits(str(path)) == Traits(90, "", fmt) and OTHER_LOSSY == 90
    assert file_traits(str(path)).encoding() == fmt


def test_a_multi_picture_jpeg_is_ranked_as_other_lossy_not_read_as_a_jpeg(tmp_path, photo):
    path = tmp_path / "a.mpo"  # some cameras' stereo or depth pictures: JPEG tables, format "MPO"
    photo.save(path, format="MPO", save_all=True, append_images=[photo.transpose(0)], quality=60)
    assert file_traits(str(path)) == Traits(OTHER_LOSSY, "", "MPO")


def test_the_reference_table_is_the_one_libjpeg_writes_at_quality_50(tmp_path, photo):
    photo.save(tmp_path / "a.jpg", quality=50)  # libjpeg's scale at 50 is 100 %: its base table, as written
    with Image.open(tmp_path / "a.jpg") as img:
        assert list(img.quantization[0]) == keep._JPEG_LUMA.astype(int).tolist()


@pytest.mark.parametrize("quality", [*range(20, 96, 5), 51])
def test_the_jpeg_quality_a_file_was_saved_at_is_read_back(tmp_path, photo, quality):
    # libjpeg scales its quality-50 table by 5000/q below 50 and by 200-2q above: both inverted exactly
    photo.save(tmp_path / "a.jpg", quality=quality)
    traits = file_traits(str(tmp_path / "a.jpg"))
    assert traits == Traits(quality, "", "JPEG") and traits.encoding() == f"JPEG q{quality}"


def test_a_hand_made_table_just_below_a_rounding_edge_reads_as_the_lower_quality(tmp_path, photo):
    # about 2.04 x libjpeg's base table, entries nudged by +-1: 100 x mean(table / base) = 204.094,
    # so 5000 / 204.094 = 24.498 reads as quality 24 (5001 / 204.094 = 24.503 would read as 25)
    table = [34, 22, 20, 32, 48, 81, 103, 123, 23, 25, 29, 40, 53, 118, 123, 113, 29, 27, 33, 50, 81, 117, 142, 113,
             29, 36, 45, 58, 105, 178, 164, 125, 36, 46, 74, 114, 138, 221, 210, 157, 49, 70, 111, 130, 164, 213, 231,
             188, 99, 131, 160, 177, 210, 248, 246, 207, 147, 189, 195, 200, 229, 205, 211, 202]
    assert 5000 / 24.5 < 100 * np.mean(np.array(table) / keep._JPEG_LUMA) < 5001 / 24.5
    photo.save(tmp_path / "a.jpg", qtables=[table])
    with Image.open(tmp_path / "a.jpg") as img:
        assert list(img.quantization[0]) == table
    assert file_traits(str(tmp_path / "a.jpg")).quality == 24


def test_jpeg_quality_is_clamped_to_1_for_tables_coarser_than_libjpeg_makes(tmp_path, photo):
    # every step 32767 (a 16-bit table): scale 100 * mean(32767 / table50) > 5000, 5000/scale rounds to 0
    coarse = [32767] * 64
    photo.save(tmp_path / "a.jpg", qtables=[coarse, coarse])
    assert file_traits(str(tmp_path / "a.jpg")).quality == 1


def test_the_capture_time_is_exifs_original_time_else_its_file_time(tmp_path, photo):
    both = Image.Exif()
    both[306] = "2020:02:02 02:02:02"  # DateTime: when the file was last written
    both.get_ifd(0x8769)[36867] = "2019:01:01 01:01:01"  # DateTimeOriginal: when the photo was taken
    photo.save(tmp_path / "both.jpg", quality=90, exif=both)
    only_file_time = Image.Exif()
    only_file_time[306] = "2020:02:02 02:02:02"
    photo.save(tmp_path / "file_time.jpg", quality=90, exif=only_file_time)
    photo.save(tmp_path / "none.jpg", quality=90)
    assert file_traits(str(tmp_path / "both.jpg")).taken == "2019:01:01 01:01:01"
    assert file_traits(str(tmp_path / "file_time.jpg")).taken == "2020:02:02 02:02:02"
    assert file_traits(str(tmp_path / "none.jpg")).taken == ""


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_an_unreadable_file_gets_the_defaults(tmp_path, content):
    (tmp_path / "x.png").write_bytes(content)
    assert file_traits(str(tmp_path / "x.png")) == Traits(90, "", "")
    assert file_traits(str(tmp_path / "missing.jpg")).encoding() == "unknown"


def test_keep_order_breaks_ties_by_earliest_capture_then_file_name_length_then_age_then_path():
    paths = ["/p/late.jpg", "/p/early.jpg", "/a/very/long/dir/b.jpg", "/z/ab.jpg", "/y/b.jpg", "/x/b.jpg"]
    traits = [Traits(80, "2021:01:01 00:00:00"), Traits(80, "2020:06:01 00:00:00")] + [Traits(80)] * 4
    mtime = np.array([0, 5, 9, 0, 3, 3])
    order = keep_order(np.full(6, 100), paths, mtime, traits)
    # dated files first, the earliest first; then shorter base names ("b.jpg" whatever its folder),
    # the older of those, and for the same age the smaller path; the longer name last
    assert order.tolist() == [1, 0, 5, 4, 2, 3]


def test_keep_order_without_traits_uses_pixels_names_and_age_only():
    order = keep_order(np.array([10, 20, 20, 20]), ["/a/1.jpg", "/b/22.jpg", "/c/1.jpg", "/d/1.jpg"],
                       np.array([0, 0, 7, 6]))
    assert order.tolist() == [3, 2, 1, 0]


def test_a_file_ranks_before_links_to_it_whatever_their_names_and_ages():
    # same pixels, traits and content: the file itself (0 hops), then a link to it, then a link to that link
    paths = ["/p/a_very_long_original_name.jpg", "/p/l.jpg", "/p/l2.jpg"]
    order = keep_order(np.full(3, 100), paths, np.array([9, 0, 0]), hops=np.array([0, 2, 1]))
    assert order.tolist() == [0, 2, 1]
    # hops rank below the picture itself: more pixels still win over being a link
    assert keep_order(np.array([50, 100]), paths[:2], np.zeros(2), hops=np.array([0, 1])).tolist() == [1, 0]


def _csr(n, pairs):
    """CSR neighbour lists (offsets, columns) of an undirected graph on ``n`` rows, neighbours in pair order."""
    adj = [[] for _ in range(n)]
    for a, b in pairs:
        adj[a].append(b)
        adj[b].append(a)
    return np.cumsum([0] + [len(a) for a in adj]), np.array([j for a in adj for j in a], np.int64)


def test_a_keeper_claims_its_free_neighbours_and_rejected_ones_stay_free():
    # 0 ~ 1, 0 ~ 2, 0 ~ 3, 2 ~ 4, 3 ~ 4; the check refuses the pair (0, 2)
    offsets, columns = _csr(6, [(0, 1), (0, 2), (0, 3), (2, 4), (3, 4)])
    asked = []

    def accept(row, members):
        asked.append((row, members.tolist()))
        return [not (row == 0 and m == 2) for m in members]

    groups = group_around_keepers(np.array([0, 2, 1, 3, 4, 5]), offsets, columns, accept)
    assert groups == [(0, [1, 3]), (2, [4])]
    assert all(isinstance(k, int) and all(isinstance(m, int) for m in ms) for k, ms in groups)
    # asked about free neighbours only, never with none left (1, 3, 4 taken; 5 has none)
    assert asked == [(0, [1, 2, 3]), (2, [4])]
    # unchecked, 0 takes all three, and 4 finds its neighbours taken
    assert group_around_keepers(np.array([0, 2, 1, 3, 4, 5]), offsets, columns) == [(0, [1, 2, 3])]


def test_with_reach_a_keeper_claims_its_members_neighbours_checked_against_itself():
    # 0 ~ 1, 0 ~ 2, 1 ~ 3, 3 ~ 4, 2 ~ 5, 1 ~ 5, 6 ~ 5: 3, 4 and 5 are no neighbours of 0
    offsets, columns = _csr(7, [(0, 1), (0, 2), (1, 3), (3, 4), (2, 5), (1, 5), (6, 5)])
    asked = []

    def accept(row, members):
        asked.append((row, members.tolist()))
        return [(row, m) != (0, 5) for m in members]  # 5 is no duplicate of 0

    groups = group_around_keepers(np.array([0, 1, 2, 3, 4, 5, 6]), offsets, columns, accept,
                                  onward=np.ones(len(columns), bool))
    # 3 joins through 1 and 4 through 3, each checked against 0; 5, refused by 0, is free to keep 6
    assert groups == [(0, [1, 2, 3, 4]), (5, [6])]
    # each row is offered to a keeper once, though it neighbours two of its members (5: of 1 and 2)
    assert asked == [(0, [1, 2]), (0, [3, 5]), (0, [4]), (5, [6])]
    # without reach, 1 ~ 3 is a pair 0 never checks: 3 keeps 4 for itself
    asked.clear()
    assert group_around_keepers(np.array([0, 1, 2, 3, 4, 5, 6]), offsets, columns, accept) == [(0, [1, 2]), (3, [4]), (5, [6])]


def test_only_the_neighbours_marked_onward_of_a_member_are_offered_to_its_keeper():
    # 0 ~ 1 (a copy), 1 ~ 2 marked onward (a likely copy of 1), 1 ~ 3 not (another photo of its kind)
    offsets, columns = _csr(4, [(0, 1), (1, 2), (1, 3)])
    rows = np.repeat(np.arange(4), np.diff(offsets))
    onward = np.array([{r, c} != {1, 3} for r, c in zip(rows.tolist(), columns.tolist())])
    asked = []

    def accept(row, members):
        asked.append((row, members.tolist()))
        return np.ones(len(members), bool)

    assert group_around_keepers(np.array([0, 1, 2, 3]), offsets, columns, accept, onward) == [(0, [1, 2])]
    # 3 is never offered to 0 (with every pair marked, as before, it was: (0, [2, 3])); it stays free
    assert asked == [(0, [1]), (0, [2])]


def test_rows_after_one_already_taken_are_still_visited():
    offsets, columns = _csr(4, [(0, 1), (2, 3)])
    assert group_around_keepers(np.array([0, 1, 2, 3]), offsets, columns) == [(0, [1]), (2, [3])]


def test_a_row_with_every_neighbour_refused_forms_no_group():
    offsets, columns = _csr(2, [(0, 1)])
    assert group_around_keepers(np.array([1, 0]), offsets, columns, lambda row, members: np.zeros(len(members))) == []


def test_report_groups_list_exact_groups_first_then_near_by_kept_path():
    paths = ["/k/b.jpg", "/k/a.jpg", "/x/1.jpg", "/x/2.jpg", "/a/z.jpg", "/n/y.jpg", "/n/m1.jpg", "/n/m2.jpg",
             "/n/m2copy.jpg", "/n/alone.jpg", "/a/y.jpg", "/n/m3.jpg"]
    content = ["B", "A", "A", "B", "Z", "Y", "M1", "M2", "M2", "ALONE", "Y2", "M3"]
    order = np.arange(12)
    # near groups among representatives: z keeps m2 (0.3), m1 (0.3, the same distance: by path) and m3
    # (0.1, nearest though its row comes last); y2 keeps y; the near keepers' paths sort before the exact ones'
    near = [(4, [(7, 0.3, "a-ev"), (6, 0.3, "b-ev"), (11, 0.1, "z-ev")]), (10, [(5, 0.2, None)])]
    groups = assemble_groups(order, content, near, paths)
    assert [(g.kind, g.keep) for g in groups] == [("exact", "/k/a.jpg"), ("exact", "/k/b.jpg"), ("near", "/a/y.jpg"),
                                                  ("near", "/a/z.jpg")]
    assert [(d.path, d.distance, d.match) for d in groups[0].duplicates] == [("/x/1.jpg", 0.0, "exact")]
    assert [(d.path, d.distance, d.match) for d in groups[1].duplicates] == [("/x/2.jpg", 0.0, "exact")]
    assert [(d.path, d.distance, d.match, d.copy_of, d.evidence) for d in groups[3].duplicates] == [
        ("/n/m3.jpg", 0.1, "near", None, "z-ev"), ("/n/m1.jpg", 0.3, "near", None, "b-ev"),
        ("/n/m2.jpg", 0.3, "near", None, "a-ev"), ("/n/m2copy.jpg", 0.3, "near", "/n/m2.jpg", "a-ev")]


def test_the_best_ranked_file_of_a_content_represents_it_and_keeps_its_copies():
    paths = ["/a.jpg", "/b.jpg", "/c.jpg", "/d.jpg"]
    order = np.array([2, 0, 3, 1])  # /c ranks first
    groups = assemble_groups(order, ["h"] * 4, [], paths)
    assert [(g.kind, g.keep) for g in groups] == [("exact", "/c.jpg")]
    assert [d.path for d in groups[0].duplicates] == ["/a.jpg", "/d.jpg", "/b.jpg"]  # in keep order


def test_a_near_keepers_byte_copies_come_first_at_distance_zero():
    paths = ["/keep.jpg", "/keep_copy.jpg", "/near.jpg"]
    groups = assemble_groups(np.arange(3), ["k", "k", "n"], [(0, [(2, 0.12, None)])], paths)
    assert [(g.kind, g.keep) for g in groups] == [("near", "/keep.jpg")]
    assert [(d.path, d.distance, d.match, d.copy_of) for d in groups[0].duplicates] == [
        ("/keep_copy.jpg", 0.0, "exact", None), ("/near.jpg", 0.12, "near", None)]


def _png(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_shots_sharpness_falls_with_blur_and_not_with_brightness_contrast_size_or_re_encoding():
    from PIL import ImageEnhance, ImageFilter

    photo = sample_photo("chelsea")
    sharp = shot_quality(_png(photo)).sharpness
    assert shot_quality(_png(photo.filter(ImageFilter.GaussianBlur(2)))).sharpness < sharp / 5
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=30)
    for same in (ImageEnhance.Brightness(photo).enhance(0.6), ImageEnhance.Contrast(photo).enhance(0.8),
                 photo.resize((400, 266), Image.LANCZOS), buf.getvalue()):
        assert shot_quality(same if isinstance(same, bytes) else _png(same)).sharpness == pytest.approx(sharp, rel=0.1)


def test_a_shots_clipped_share_counts_blown_highlights_and_crushed_shadows():
    from PIL import ImageEnhance

    photo = sample_photo("chelsea")
    assert shot_quality(_png(photo)).clipped < 0.01
    assert shot_quality(_png(ImageEnhance.Brightness(photo).enhance(2.0))).clipped > 0.1
    assert shot_quality(_png(photo.point(lambda v: max(0, 2 * v - 200)))).clipped > 0.05  # shadows crushed
    assert shot_quality(b"not an image") == Shot(0.0, 1.0)


def test_the_best_shot_is_the_best_exposed_then_the_sharpest_then_the_first_by_the_keep_rule():
    q = {"a": Shot(1.0, 0.0), "b": Shot(3.0, 0.0), "c": Shot(2.8, 0.01), "d": Shot(9.0, 0.2)}
    # d is sharpest but clipped; b and c are as sharp (within 10 %) and exposed alike: c comes first
    best = best_shot(["d", "a", "c", "b"], q)
    assert best.keep == "c" and best.shots == {k: q[k] for k in "dacb"} and best.other_shots
    assert best.reason == ("as sharp as any well-exposed one and first by the keep rule of 4 shots (sharpness 2.80, "
                           "clipped 1.0%; others: sharpness 9.00, 1.00, 3.00, clipped 20.0%, 0.0%, 0.0%)")
    assert best_shot(["a", "b"], q).reason == ("the sharpest of 2 shots (sharpness 3.00, clipped 0.0%; others: "
                                               "sharpness 1.00, clipped 0.0%)")
    assert best_shot(["d", "a"], q).reason.startswith("the best exposed of 2 shots (sharpness 1.00, clipped 0.0%")
    assert best_shot(["d", "a", "b"], q, other_shots=False).reason.startswith("the sharpest well-exposed of 3 copies")
    assert best_shot(["b", "c"], q).reason.startswith("as sharp and well exposed as any and first by the keep rule of 2")
    q["e"] = Shot(9.0, 0.021)  # just past the exposure slack of a's 0.0
    assert best_shot(["e", "a"], q).keep == "a"
    q["f"] = Shot(1.0 / 0.9 + 1e-9, 0.0)  # just sharper than the sharp share allows a to match
    assert best_shot(["a", "f"], q).keep == "f" and best_shot(["a", "f"], q).reason.startswith("the sharpest")
    q["g"] = Shot(1.0 / 0.9 - 1e-9, 0.0)
    assert best_shot(["a", "g"], q).keep == "a"


def _stripes(low, high):
    """A 256 x 256 gray picture (the features' size: measured as it is) of one-pixel columns alternating ``low``, ``high``."""
    return np.tile(np.array([low, high], np.uint8), (256, 128))


def test_a_shots_sharpness_is_its_aperture_3_laplacians_variance_over_its_gray_variance():
    # columns alternating 100, 150: each second difference across is +-100; the aperture-3 Laplacian
    # weights it by the 1, 2, 1 smoothing down the column (x 4): +-400, variance 160000; the gray
    # variance is 25 ** 2 = 625, so 256 (the 3 x 3 aperture-1 Laplacian would give 16)
    assert shot_quality(_stripes(100, 150)) == Shot(256.0, 0.0)
    # alternating 100, 101: Laplacian +-8, variance 64; a gray variance of 0.25 is below the floor of
    # 1 that keeps a nearly flat picture from measuring sharp, so 64, not 256
    assert shot_quality(_stripes(100, 101)) == Shot(64.0, 0.0)
    assert shot_quality(np.full((256, 256), 128, np.uint8)) == Shot(0.0, 0.0)  # flat: no edge at all


def test_gray_levels_at_either_clipping_end_count_as_clipped_and_one_level_inside_do_not():
    picture = np.full((256, 256), 128, np.uint8)
    picture[:64], picture[64:128] = keep.CLIP_LOW, keep.CLIP_HIGH  # 2 and 253: a quarter each
    picture[128:160], picture[160:192] = keep.CLIP_LOW + 1, keep.CLIP_HIGH - 1  # 3 and 252: not clipped
    assert shot_quality(picture).clipped == 0.5


def test_the_best_shot_at_exactly_each_limit():
    q = {"a": Shot(0.9, 0.0), "b": Shot(1.0, 0.0), "c": Shot(9.0, keep.EXPOSURE_SLACK)}
    # a has exactly the sharp share of b's sharpness: as sharp, and first by the keep rule
    assert best_shot(["a", "b"], q).keep == "a"
    # b is kept, and a is within the sharp share of it: b is not "the sharpest", only first by the keep rule
    assert best_shot(["b", "a"], q).reason.startswith("as sharp and well exposed as any and first by the keep rule")
    # c is clipped by exactly the exposure slack more than a: still well exposed, and the sharpest
    best = best_shot(["a", "c"], q)
    assert best.keep == "c" and best.reason.startswith("the sharpest of 2 shots")


def test_a_group_of_flat_pictures_keeps_its_first_by_the_keep_rule():
    # every sharpness 0 (a plain colour, or files that cannot be read: 0 sharp, 1 clipped)
    flat = {"x": Shot(0.0, 0.0), "y": Shot(0.0, 0.0)}
    assert best_shot(["y", "x"], flat).keep == "y"
    unreadable = {"x": Shot(0.0, 1.0), "y": Shot(0.0, 1.0)}
    assert best_shot(["x", "y"], unreadable).keep == "x"


def test_the_best_shot_says_whether_its_group_holds_other_shots_or_copies_only():
    q = {"a": Shot(1.0, 0.0), "b": Shot(3.0, 0.0)}
    assert best_shot(["a", "b"], q).other_shots is True
    copies = best_shot(["a", "b"], q, other_shots=False)
    assert copies.other_shots is False and copies.keep == "b" and " of 2 copies " in copies.reason


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint32, np.uint64, np.uint8])
def test_pixel_counts_in_any_integer_type_rank_the_larger_picture_first(dtype):
    # unsigned counts too: negated as they are, 0 would stay 0 and rank an empty picture first
    order = keep_order(np.array([0, 7, 200], dtype), ["/a.jpg", "/b.jpg", "/c.jpg"], np.zeros(3, np.int64))
    assert order.tolist() == [2, 1, 0]


def test_with_reach_a_keeper_whose_every_neighbour_is_refused_forms_no_group():
    offsets, columns = _csr(3, [(0, 1), (1, 2)])
    onward = np.ones(len(columns), bool)
    refuse = lambda row, members: np.zeros(len(members), bool)  # noqa: E731
    assert group_around_keepers(np.array([0, 1, 2]), offsets, columns, refuse, onward) == []


def test_reach_without_a_check_is_not_taken():
    # 0 ~ 1 ~ 2: unchecked, 0 claims only its own neighbour; 2 is left, with no free neighbour, to no group
    offsets, columns = _csr(3, [(0, 1), (1, 2)])
    assert group_around_keepers(np.array([0, 1, 2]), offsets, columns, onward=np.ones(len(columns), bool)) == [(0, [1])]


def test_a_group_of_shots_keeps_its_best_shot_and_says_what_each_member_was_verified_against():
    from lookalike.dedup.report import BestShot

    # the best shot /s/best.jpg (row 1) is kept; /s/first.jpg (row 0), first by the keep rule, was
    # verified against it, and the others (and /s/other.jpg's byte copy) against /s/first.jpg
    paths = ["/s/first.jpg", "/s/best.jpg", "/s/other.jpg", "/s/other_copy.jpg", "/s/third.jpg",
             "/c/keep.jpg", "/c/copy.jpg"]
    content = ["F", "B", "O", "O", "T", "K", "C"]
    shots = BestShot("/s/best.jpg", "the sharpest of 4 shots", {})
    copies_only = BestShot("/c/keep.jpg", "the sharpest of 2 copies", {}, other_shots=False)
    near = [(1, [(0, 0.1, "ev-first"), (2, 0.2, "ev-other", 0), (4, 0.3, "ev-third", None)], shots),
            (5, [(6, 0.05, "ev-copy")], copies_only)]
    groups = assemble_groups(np.arange(7), content, near, paths)
    assert [(g.kind, g.keep, g.best) for g in groups] == [("near", "/c/keep.jpg", copies_only),
                                                          ("shots", "/s/best.jpg", shots)]
    assert [(d.path, d.distance, d.match, d.copy_of, d.evidence, d.compared_with) for d in groups[1].duplicates] == [
        ("/s/first.jpg", 0.1, "near", None, "ev-first", None),
        ("/s/other.jpg", 0.2, "near", None, "ev-other", "/s/first.jpg"),
        ("/s/other_copy.jpg", 0.2, "near", "/s/other.jpg", "ev-other", "/s/first.jpg"),
        ("/s/third.jpg", 0.3, "near", None, "ev-third", None)]
