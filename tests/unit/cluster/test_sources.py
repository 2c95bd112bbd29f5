"""Where images and shards live (cluster/sources.py): files listed by path or URI with their sizes,
files gone from a folder (not from a sibling whose name extends it), and a URI whose file system
needs a package that is not installed is one line that names the package."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytest.importorskip("pyarrow")

from lookalike.cluster.sources import filesystem, gone, list_files, name_of, read, vanished  # noqa: E402
from lookalike.images import ImageError  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402


@pytest.mark.parametrize("uri, package", [("s3://bucket/photos", "s3fs"), ("abfs://container/photos", "adlfs")])
def test_a_uri_without_its_file_system_package_names_the_package_in_one_line(uri, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(StoreError) as caught:
        filesystem(uri)
    message = str(caught.value)
    assert message.startswith(f"cannot open {uri}: ") and "; through fsspec: " in message, message
    assert package in message and "\n" not in message and "  " not in message, message


@pytest.fixture
def folders(tmp_path):
    """``photos`` (two images, a text file, a hidden folder's image) and its sibling ``photos2``."""
    for rel, data in (("photos/a.jpg", b"a" * 3), ("photos/sub/b.png", b"b" * 5), ("photos/notes.txt", b"t"),
                      ("photos/.cache/c.jpg", b"c"), ("photos2/x.jpg", b"x" * 7)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("as_uri", [False, True])
def test_files_are_listed_sorted_with_their_sizes_and_times_by_path_or_uri(folders, as_uri):
    source = f"file://{folders}/photos" if as_uri else str(folders / "photos")
    named = (lambda rel: f"file://{folders}/{rel}") if as_uri else (lambda rel: str(folders / rel))
    found = list(list_files(source))
    assert [(name, size) for name, size, _ in found] == [(named("photos/a.jpg"), 3), (named("photos/sub/b.png"), 5)]
    assert [mtime for _, _, mtime in found] == [os.stat(folders / r).st_mtime_ns for r in ("photos/a.jpg",
                                                                                           "photos/sub/b.png")]
    assert name_of(source + "/") == named("photos")
    if as_uri:  # read as bytes (a local file is read as an image: its header is checked first)
        assert read(found[1][0]) == b"b" * 5


@pytest.mark.parametrize("as_uri", [False, True])
def test_files_gone_are_those_under_the_folder_not_in_a_sibling_whose_name_extends_it(folders, as_uri):
    source = f"file://{folders}/photos" if as_uri else str(folders / "photos")
    named = (lambda rel: f"file://{folders}/{rel}") if as_uri else (lambda rel: str(folders / rel))
    held = {named(r) for r in ("photos/a.jpg", "photos/sub/b.png", "photos/old.jpg", "photos/sub/old.png",
                               "photos2/x.jpg", "photos2/old.jpg", "photo.jpg")}
    assert gone(held, source) == [named("photos/old.jpg"), named("photos/sub/old.png")]
    assert vanished(held, source, set()) == sorted(named(r) for r in ("photos/a.jpg", "photos/old.jpg",
                                                                      "photos/sub/b.png", "photos/sub/old.png"))
    single = named("photos/a.jpg")  # a source that is one file: gone when it is not listed
    assert vanished({single}, single, set()) == [single] and vanished({single}, single, {single}) == []


def test_a_missing_source_or_file_is_said_plainly(folders):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list(list_files(str(folders / "nowhere")))
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list(list_files(f"file://{folders}/nowhere"))
    with pytest.raises(ImageError, match="cannot read file"):
        read(f"file://{folders}/nowhere.jpg")


def test_a_folder_listed_by_uri_gives_the_files_its_path_gives(folders):
    """The same files, sizes and times whichever way the folder is named: hidden files listed,
    hidden folders at any depth left out, a source that is one file listed alone."""
    for rel in ("photos/.hidden.jpg", "photos/sub/.thumbs/d.jpg", "photos/sub/deeper/e.JPG", "photos/sub/f.txt"):
        (folders / rel).parent.mkdir(parents=True, exist_ok=True)
        (folders / rel).write_bytes(b"e" * 11)
    by_path = list(list_files(str(folders / "photos")))
    by_uri = list(list_files(f"file://{folders}/photos"))
    assert [(f"file://{name}", size, mtime) for name, size, mtime in by_path] == by_uri
    assert [os.path.relpath(name, folders / "photos") for name, _, _ in by_path] == [
        ".hidden.jpg", "a.jpg", "sub/b.png", "sub/deeper/e.JPG"]
    one = f"file://{folders}/photos/sub/b.png"
    assert [(name, size) for name, size, _ in list_files(one)] == [(one, 5)]
    assert [(name, size) for name, size, _ in list_files(str(folders / "photos/a.jpg"))] == [
        (str(folders / "photos/a.jpg"), 3)]


def test_a_file_read_by_uri_is_read_up_to_the_limit_and_refused_one_byte_over(tmp_path):
    from lookalike.images import FileTooLarge, max_file_bytes

    limit = max_file_bytes(1)  # 8 bytes for the one pixel allowed, and 16 MiB
    for size in (limit, limit + 1):
        with open(tmp_path / f"{size}.jpg", "wb") as f:
            f.truncate(size)
    assert len(read(f"file://{tmp_path}/{limit}.jpg", max_pixels=1)) == limit
    with pytest.raises(FileTooLarge):
        read(f"file://{tmp_path}/{limit + 1}.jpg", max_pixels=1)


def test_a_location_is_made_absolute_unless_it_is_a_uri(tmp_path, monkeypatch):
    from lookalike.cluster.sources import absolute, is_uri

    monkeypatch.chdir(tmp_path)
    assert absolute("photos/a.jpg") == str(tmp_path / "photos/a.jpg")
    assert absolute("s3://bucket/photos") == "s3://bucket/photos" and is_uri("file:///x") and not is_uri("a:b/c")
    assert name_of("photos/") == str(tmp_path / "photos")
    local, path = filesystem("photos")
    assert type(local).__name__ == "LocalFileSystem" and path == str(tmp_path / "photos")


def test_a_local_file_is_read_as_an_image_within_its_pixel_limit(tmp_path):
    from PIL import Image

    from lookalike.images import ImageTooLarge

    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    assert read(str(tmp_path / "a.png"), max_pixels=100) == (tmp_path / "a.png").read_bytes()
    with pytest.raises(ImageTooLarge):
        read(str(tmp_path / "a.png"), max_pixels=99)


def test_a_local_file_gone_between_listing_and_stat_is_listed_with_size_minus_one(folders, monkeypatch):
    from lookalike.cluster import sources

    listed = list(sources.list_images(str(folders / "photos")))

    def listing_then_removing(root, *args, **kwargs):
        os.remove(folders / "photos/a.jpg")  # after the folder was read, before its files are stat'ed
        yield from listed

    monkeypatch.setattr(sources, "list_images", listing_then_removing)
    found = list(list_files(str(folders / "photos")))
    b = folders / "photos/sub/b.png"
    assert found == [(str(folders / "photos/a.jpg"), -1, 0), (str(b), 5, os.stat(b).st_mtime_ns)]


@pytest.fixture
def memory():
    """A folder on fsspec's in-memory file system (a scheme pyarrow cannot open itself): ``photos``
    (two images, a text file, a hidden folder's image), its sibling ``photos2``, and ``odd://name``."""
    fsspec = pytest.importorskip("fsspec")
    store = fsspec.filesystem("memory")
    root = "/lookalike-test-sources"
    for rel, data in (("photos/a.jpg", b"a" * 3), ("photos/sub/b.png", b"b" * 5), ("photos/notes.txt", b"t"),
                      ("photos/.cache/c.jpg", b"c"), ("photos2/x.jpg", b"x" * 7), ("odd://name/d.jpg", b"d" * 2)):
        store.pipe(f"{root}/{rel}", data)
    yield root
    store.rm(root, recursive=True)


def test_a_scheme_only_fsspec_opens_is_listed_read_and_compared_like_any_other(memory):
    from pyarrow import fs

    with pytest.raises(Exception):  # noqa: B017 (whatever pyarrow raises: it does not know the scheme)
        fs.FileSystem.from_uri(f"memory://{memory}/photos")
    source = f"memory://{memory}/photos"
    # fsspec's memory file system keeps no modification times: 0, as for any such file system
    assert list(list_files(source)) == [(f"memory://{memory}/photos/a.jpg", 3, 0),
                                        (f"memory://{memory}/photos/sub/b.png", 5, 0)]
    assert name_of(source + "/") == source
    assert read(f"memory://{memory}/photos/sub/b.png") == b"b" * 5
    held = {f"memory://{memory}/{rel}" for rel in ("photos/a.jpg", "photos/old.jpg", "photos2/old.jpg")}
    assert gone(held, source) == [f"memory://{memory}/photos/old.jpg"]


def test_a_uri_whose_path_holds_a_scheme_separator_keeps_its_own_scheme(memory):
    source = f"memory://{memory}/odd://name"
    assert list(list_files(source)) == [(f"memory://{memory}/odd://name/d.jpg", 2, 0)]
    assert name_of(source) == source
    assert read(f"memory://{memory}/odd://name/d.jpg") == b"dd"


def test_a_folder_whose_name_ends_in_a_space_is_its_own_by_uri(tmp_path):
    (tmp_path / "photos ").mkdir()
    (tmp_path / "photos " / "a.jpg").write_bytes(b"a")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "b.jpg").write_bytes(b"b")
    source = f"file://{tmp_path}/photos "
    assert name_of(source) == source
    held = {f"{source}/a.jpg", f"{source}/old.jpg", f"file://{tmp_path}/photos/b.jpg"}
    assert gone(held, source) == [f"{source}/old.jpg"]


def test_folder_names_that_end_or_start_in_a_letter_x_are_kept_whole_by_uri(tmp_path):
    (tmp_path / "INBOX" / "X.shots").mkdir(parents=True)
    (tmp_path / "INBOX" / "X.shots" / "a.jpg").write_bytes(b"a")
    source = f"file://{tmp_path}/INBOX"
    assert name_of(source) == source
    assert [name for name, _, _ in list_files(source)] == [f"{source}/X.shots/a.jpg"]  # not a hidden folder
