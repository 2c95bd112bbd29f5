"""The files a server hands out (server/files.py): originals only while they are the file indexed,
thumbnails at most 256 pixels a side and never enlarged, cached by content and served from the cache
only while the file's size and time are the indexed ones; over a stand-in index."""

from __future__ import annotations

import io
import os
import threading

import pytest
from fastapi import HTTPException
from PIL import Image

from lookalike.images import ImageError, content_hash
from lookalike.server.files import IndexedFiles


class Catalog:
    """The part of an Index the server's files read: a lock, catalog rows by id, and URI reads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, dict] = {}
        self.remote: dict[str, bytes] = {}

    def add(self, image_id: int, path: str, data: bytes, mtime_ns: int = 0) -> None:
        self.rows[image_id] = {"path": path, "size": len(data), "mtime_ns": mtime_ns, "hash": content_hash(data)}

    def info(self, image_id: int):
        return self.rows.get(image_id)

    def read(self, name: str) -> bytes:
        if name not in self.remote:
            raise ImageError("cannot read file: gone")
        return self.remote[name]


def _png(size, colour=(200, 30, 30), kind="PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, kind)
    return out.getvalue()


def _local(catalog, tmp_path, image_id, name, data) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    catalog.add(image_id, str(path), data, os.stat(path).st_mtime_ns)
    return str(path)


def test_thumbnails_fit_256_pixels_keep_their_shape_and_are_never_enlarged(tmp_path):
    catalog = Catalog()
    _local(catalog, tmp_path, 1, "wide.png", _png((600, 300)))
    _local(catalog, tmp_path, 2, "small.png", _png((100, 60)))
    files = IndexedFiles(catalog)
    assert Image.open(io.BytesIO(files.thumbnail(1))).size == (256, 128)
    small = Image.open(io.BytesIO(files.thumbnail(2)))
    assert small.format == "JPEG" and small.size == (100, 60)


def _swap_unseen(path, data) -> None:
    """Write other bytes of the same length into ``path`` and give it back its modification time:
    a change only reading the file shows."""
    st = os.stat(path)
    assert len(data) == st.st_size
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_thumbnail_is_cached_by_content_and_made_again_for_new_content(tmp_path):
    catalog = Catalog()
    path = _local(catalog, tmp_path, 1, "a.bmp", _png((40, 40), (255, 0, 0), kind="BMP"))
    files = IndexedFiles(catalog)
    red = files.thumbnail(1)
    _swap_unseen(path, _png((40, 40), (0, 255, 0), kind="BMP"))  # a read would see other content: 404
    assert files.thumbnail(1) == red  # from the cache: the file is not read
    _local(catalog, tmp_path, 1, "a.bmp", _png((40, 40), (0, 0, 255), kind="BMP"))  # indexed again, other content
    blue = Image.open(io.BytesIO(files.thumbnail(1))).convert("RGB").getpixel((20, 20))
    assert blue[2] > 200 and blue[0] < 50


def test_a_cached_thumbnail_of_a_file_gone_or_touched_since_it_was_indexed_is_a_404(tmp_path):
    catalog = Catalog()
    gone = _local(catalog, tmp_path, 1, "gone.png", _png((40, 40)))
    touched = _local(catalog, tmp_path, 2, "touched.png", _png((40, 40)))
    grown = _local(catalog, tmp_path, 3, "grown.png", _png((40, 40)))
    _local(catalog, tmp_path, 4, "kept.png", _png((40, 40)))
    files = IndexedFiles(catalog)
    for image_id in (1, 2, 3, 4):
        files.thumbnail(image_id)
    os.remove(gone)
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # the same bytes, one nanosecond later
    st = os.stat(grown)
    with open(grown, "ab") as f:
        f.write(b"\0")
    os.utime(grown, ns=(st.st_atime_ns, st.st_mtime_ns))  # one byte more, the same time
    assert [_served(files.thumbnail, i) for i in (1, 2, 3, 4)] == [404, 404, 404, 200]


def test_an_original_is_served_only_while_it_is_the_file_indexed(tmp_path):
    catalog = Catalog()
    data = _png((20, 20), kind="BMP")
    path = _local(catalog, tmp_path, 1, "a.bmp", data)
    files = IndexedFiles(catalog)
    assert files.original(1) == (data, path)
    st = os.stat(path)
    other = _png((20, 20), (0, 255, 0), kind="BMP")
    assert len(other) == len(data)  # the same size...
    with open(path, "wb") as f:
        f.write(other)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and time: only the content tells
    for read in (files.original, files.thumbnail):
        with pytest.raises(HTTPException) as caught:
            read(1)
        assert caught.value.status_code == 404 and "gone or changed" in caught.value.detail
    with pytest.raises(HTTPException) as caught:
        files.original(7)
    assert caught.value.status_code == 404 and caught.value.detail == "no image with id 7 in the index"


def test_a_file_named_by_uri_is_read_through_the_index_and_checked_by_size_and_content():
    catalog = Catalog()
    data = _png((30, 10))
    catalog.add(1, "s3://bucket/a.png", data)
    catalog.remote["s3://bucket/a.png"] = data
    files = IndexedFiles(catalog)
    assert files.original(1) == (data, "s3://bucket/a.png")
    assert Image.open(io.BytesIO(files.thumbnail(1))).size == (30, 10)
    catalog.remote["s3://bucket/a.png"] = data + b"\0"  # grown since
    catalog.add(2, "s3://bucket/gone.png", data)
    for image_id in (1, 2):
        with pytest.raises(HTTPException) as caught:
            files.original(image_id)
        assert caught.value.status_code == 404


def test_the_cache_holds_exactly_its_size_forgetting_the_least_recently_used():
    from lookalike.server.files import Lru

    cache = Lru(3)
    for key in "abc":
        cache[key] = key.upper()
    assert cache.get("a") == "A"  # now the most recently used: b is the oldest
    cache["d"] = "D"
    assert [cache.get(k) for k in "abcd"] == ["A", None, "C", "D"]  # three held, b forgotten
    cache["c"] = "C2"  # replacing keeps the count
    cache["e"] = "E"  # a was used before c, d and e: forgotten
    assert [cache.get(k) for k in "acde"] == [None, "C2", "D", "E"]


def test_thumbnails_beyond_the_cache_size_are_made_again_from_the_file(tmp_path):
    catalog = Catalog()
    paths = [_local(catalog, tmp_path, i, f"{i}.bmp", _png((30, 30), (40 * i, 0, 0), kind="BMP")) for i in range(3)]
    files = IndexedFiles(catalog, thumb_cache=2)
    for i in range(3):
        files.thumbnail(i)
    for path in paths:  # made again, a thumbnail would be a 404
        _swap_unseen(path, _png((30, 30), (0, 0, 200), kind="BMP"))
    assert [_served(files.thumbnail, i) for i in range(3)] == [404, 200, 200]  # 0 was forgotten, 1 and 2 held


def _served(read, image_id) -> int:
    try:
        read(image_id)
    except HTTPException as e:
        return e.status_code
    return 200


def test_a_thumbnail_decodes_at_most_the_servers_pixel_limit_and_says_why_it_cannot(tmp_path):
    catalog = Catalog()
    _local(catalog, tmp_path, 1, "ten.png", _png((10, 10)))  # 100 pixels: exactly the limit
    _local(catalog, tmp_path, 2, "more.png", _png((11, 10)))  # 110
    _local(catalog, tmp_path, 3, "text.png", b"not an image at all")  # the file indexed, but no picture
    files = IndexedFiles(catalog, max_pixels=100)
    assert Image.open(io.BytesIO(files.thumbnail(1))).size == (10, 10)
    for image_id in (2, 3):
        with pytest.raises(HTTPException) as e:
            files.thumbnail(image_id)
        assert e.value.status_code == 404 and e.value.detail.startswith(f"image {image_id} cannot be read: ")
    assert files.original(3) == (b"not an image at all", str(tmp_path / "text.png"))  # the original is served


# found by mutation testing: the thumbnails' JPEG quality and the cache's default size

# The JPEG standard's example tables (ITU-T T.81, Annex K.1 and K.2), row by row
LUMINANCE = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
             14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
             18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMINANCE = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
               24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def test_a_thumbnail_is_a_jpeg_of_quality_85_by_its_quantisation_tables(tmp_path):
    # libjpeg's quality q < 50 scales the standard's tables by 5000 / q %, q >= 50 by 200 - 2q %:
    # at 85, 30 %, rounded to the nearest whole step (at least 1): 16 -> 5, 99 -> 30
    catalog = Catalog()
    _local(catalog, tmp_path, 1, "a.png", _png((300, 200)))
    thumb = Image.open(io.BytesIO(IndexedFiles(catalog).thumbnail(1)))
    tables = thumb.quantization
    assert thumb.format == "JPEG" and sorted(tables) == [0, 1]
    assert list(tables[0]) == [max(1, (q * 30 + 50) // 100) for q in LUMINANCE]
    assert list(tables[1]) == [max(1, (q * 30 + 50) // 100) for q in CHROMINANCE]
    assert list(tables[0])[:8] == [5, 3, 3, 5, 7, 12, 15, 18] and list(tables[1])[-1] == 30  # worked by hand


def test_the_server_keeps_the_last_1024_thumbnails_made():
    # 1,025 thumbnails made, each read through the index; then, with every file gone, the last 1,024
    # are still served from the cache and the first is not
    catalog = Catalog()
    data = _png((2, 2))
    for i in range(1025):
        catalog.add(i, f"s3://b/{i}.png", data)
        catalog.remote[f"s3://b/{i}.png"] = data
    files = IndexedFiles(catalog)
    for i in range(1025):
        files.thumbnail(i)
    catalog.remote.clear()
    assert [_served(files.thumbnail, i) for i in (0, 1, 512, 1024)] == [404, 200, 200, 200]
