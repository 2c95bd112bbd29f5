import io
import os

import numpy as np
import pytest
from PIL import Image

from helpers import sample_photo
from lookalike.images import (DANGLING_LINK, OUTSIDE_LINK, ImageError, decode, decode_sized, is_image_path,
                              left_out_summary, list_images)


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgba_alpha_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = decode(_bytes(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency_and_grey_and_cmyk():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.putpixel((3, 3), 0)  # the transparent entry (black in the palette): white once composited
    p.info["transparency"] = 0
    out = decode(_bytes(p, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (10, 200, 30) and out.getpixel((3, 3)) == (255, 255, 255)
    assert decode(_bytes(Image.new("L", (4, 4), 77), "PNG")).getpixel((1, 1)) == (77, 77, 77)
    cmyk = decode(_bytes(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and min(cmyk.getpixel((1, 1))) > 240


def test_16_bit_grey_is_scaled_to_8_bits():
    arr = np.full((4, 4), 65535, np.uint16)
    arr[0, 0] = 0
    out = decode(_bytes(Image.fromarray(arr), "PNG"))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_and_float_pixels_are_scaled_from_their_own_range(mode):
    values = np.array([[-10, 0], [10, 30]], np.int32 if mode == "I" else np.float32)
    out = decode(Image.fromarray(values, mode))
    # (v - -10) * 255 / 40, rounded: 0, 63.75, 127.5, 255
    assert [out.getpixel(xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 64, 128, 255]


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode(data).getpixel((2, 2))
    assert r > 200 and g < 50


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    assert decode(_bytes(img, "JPEG", exif=exif)).size == (20, 40)
    given = Image.open(io.BytesIO(_bytes(img, "JPEG", exif=exif)))
    out = decode(given)
    assert out.size == (20, 40) and out is not given
    assert given.size == (40, 20) and given.getexif()[0x0112] == 6  # the caller's image is left as it was


def test_draft_decodes_large_jpeg_at_reduced_scale_but_not_below_size():
    big = sample_photo("astronaut").resize((2048, 2048))
    out = decode(_bytes(big, "JPEG"), size=224)
    assert 224 <= min(out.size) < 2048


def test_decode_sized_gives_the_full_upright_size_of_a_jpeg_decoded_at_reduced_scale():
    photo = sample_photo("astronaut").resize((1024, 640))
    img, full = decode_sized(_bytes(photo, "JPEG"), size=224)
    assert full == (1024, 640) and img.size == (512, 320)  # drafted by 2, the file's size kept
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img, full = decode_sized(_bytes(photo, "JPEG", exif=exif), size=224, gray=True)
    assert full == (640, 1024) and img.size == (320, 512)
    assert decode_sized(_bytes(photo, "PNG"), size=224)[1] == (1024, 640)


def test_gray_decodes_a_jpeg_luma_alone_at_reduced_scale_upright_with_transparency_on_white():
    photo = sample_photo("astronaut").resize((1024, 640))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _bytes(photo, "JPEG", quality=95, exif=exif)
    gray, colour = decode(data, size=224, gray=True), decode(data, size=224)
    assert gray.mode == "L" and gray.size == colour.size
    assert gray.height > gray.width and 224 <= gray.width < 640  # upright (turned), drafted
    # a JPEG's Y channel is ITU-R 601 luma, the same weights as Pillow's RGB -> L
    diff = np.abs(np.asarray(gray, np.int16) - np.asarray(colour.convert("L"), np.int16))
    assert diff.max() <= 3 and diff.mean() < 0.6
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = decode(_bytes(img, "PNG"), gray=True)
    assert out.mode == "L" and out.getpixel((5, 5)) == 255 and out.getpixel((0, 0)) == 29  # blue: 0.114 x 255


@pytest.mark.parametrize("data, reason", [
    (b"", "not an image"),
    (b"this is text, not a picture", "not an image"),
])
def test_non_images_raise_with_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode(data)


def test_truncated_jpeg_raises():
    data = _bytes(sample_photo("coffee"), "JPEG")
    with pytest.raises(ImageError, match="decode"):
        decode(data[: len(data) // 3])


def test_bomb_limit():
    with pytest.raises(ImageError, match="too large"):
        decode(_bytes(Image.new("RGB", (300, 300)), "PNG"), max_pixels=300 * 299)


def test_array_and_pil_inputs():
    arr = np.zeros((5, 7, 3), np.uint8)
    assert decode(arr).size == (7, 5)
    assert decode(np.ones((5, 7), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError):
        decode(np.zeros((5, 7, 2), np.uint8))


def test_listing_ignores_other_extensions_survives_symlink_loops_and_odd_names(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "ünï côdé.JPG")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".hidden" / "h.png")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = list(list_images(tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in found] == ["a.png", os.path.join("sub", "ünï côdé.JPG")]
    assert is_image_path("x.JPEG") and not is_image_path("x.txt")


def _linked_split(tmp_path):
    """Class folders under ``data/``, and ``split/`` made of links to two of them (and a dangling one)."""
    for cls, n in (("roses", 2), ("tulips", 3), ("daisies", 1)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "split").mkdir()
    for cls in ("roses", "tulips"):
        os.symlink(tmp_path / "data" / cls, tmp_path / "split" / cls)
    os.symlink(tmp_path / "data" / "gone", tmp_path / "split" / "gone")
    return tmp_path / "split"


def test_a_split_of_links_to_outside_is_left_out_with_a_reason_unless_links_are_followed(tmp_path):
    split = _linked_split(tmp_path)
    left_out = []
    assert list(list_images(split, left_out=left_out)) == []
    assert sorted(left_out) == [(str(split / "gone"), DANGLING_LINK), (str(split / "roses"), OUTSIDE_LINK),
                                (str(split / "tulips"), OUTSIDE_LINK)]
    assert left_out_summary(left_out) == ("2 symbolic links to outside the folder (--follow-links includes them), "
                                          "1 dangling symbolic link")
    left_out.clear()
    found = list(list_images(split, left_out=left_out, follow_links=True))
    # listed under the links' names, so a file's folder (its class) is the link's
    assert [os.path.relpath(p, split) for p in found] == ["roses/0.png", "roses/1.png", "tulips/0.png",
                                                          "tulips/1.png", "tulips/2.png"]
    assert left_out == [(str(split / "gone"), DANGLING_LINK)]


def test_a_link_loop_in_a_followed_split_lists_every_image_once(tmp_path):
    split = _linked_split(tmp_path)
    os.symlink(tmp_path / "data", tmp_path / "data" / "roses" / "up")  # roses/up/roses/up/... and the rest of data
    os.symlink(split, split / "again")
    found = list(list_images(split, follow_links=True))
    assert len(found) == len({os.path.realpath(p) for p in found}) == 6  # every image of data/, once
    assert sorted(os.path.relpath(p, split).split(os.sep)[0] for p in found).count("tulips") == 3


def test_left_out_summary_counts_each_reason_in_the_right_number():
    one = [("/a", OUTSIDE_LINK), ("/b", "cannot read folder: Permission denied"), ("/c", "cannot decode image: x")]
    assert left_out_summary(one) == "1 symbolic link to outside the folder (--follow-links includes it), 1 unreadable folder"
    assert left_out_summary([]) == "" and left_out_summary([("/c", "cannot decode image: x")]) == ""


def test_a_16_bit_image_is_converted_in_bounded_memory():
    import tracemalloc

    from lookalike.images import to_rgb

    arr = (np.arange(3000 * 3000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(3000, 3000)
    img = Image.fromarray(arr)
    tracemalloc.start()
    rgb = to_rgb(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 * 2**20  # a float64 copy of the whole image alone would be 72 MB, with a copy in uint16 +18 MB
    expected = np.clip(arr[:5].astype(np.float64) * (255.0 / 65535.0) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(rgb)[:5, :, 0], expected)


def _finishes(fn, seconds: float = 10.0):
    """What ``fn()`` returns or raises, run in a thread; fails the test when it is still blocked after ``seconds``."""
    import threading

    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    return out


def test_a_fifo_is_refused_by_every_reader_without_blocking(tmp_path):
    from lookalike.images import hash_file, open_image, read_file

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # nothing ever writes to it: an open for reading would wait forever
    for reader in (read_file, open_image, decode, hash_file):
        out = _finishes(lambda: reader(fifo))
        assert isinstance(out.get("error"), ImageError), reader
        assert str(out["error"]) == "not a regular file (a FIFO, socket or device)", reader


def test_a_device_is_refused_before_a_byte_is_read():
    import subprocess
    import sys

    # under a 1 GiB address-space limit: reading /dev/zero to its end would run out of memory instead
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from lookalike.images import ImageError, read_file\n"
            "try:\n    read_file('/dev/zero')\nexcept ImageError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "not a regular file" in proc.stdout, proc.stderr[-500:]


def test_reading_stops_at_a_size_no_image_needs_and_at_a_header_that_is_no_image(tmp_path):
    import tracemalloc

    from lookalike.images import FileTooLarge, content_hash, hash_file, max_file_bytes, read_file

    sparse = tmp_path / "big.jpg"
    with open(sparse, "wb") as f:
        f.truncate(max_file_bytes(1000) + 1)  # a hole: no disk used, nothing to read
    with pytest.raises(FileTooLarge, match="8 bytes a pixel"):
        read_file(sparse, max_pixels=1000)
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20 * 2**20, np.uint8).tobytes())
    Image.init()  # Pillow imports its format plugins once, at the first file it cannot identify: not measured
    tracemalloc.start()
    with pytest.raises(ImageError, match="not an image"):
        read_file(noise)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # the 20 MiB after the header are never read
    photo = tmp_path / "photo.png"
    sample_photo("coffee").save(photo)
    assert content_hash(read_file(photo)) == hash_file(photo) == content_hash(photo.read_bytes())
    with pytest.raises(ImageError, match="too large"):
        read_file(photo, max_pixels=100)


def test_a_file_is_hashed_in_pieces_whatever_its_size(tmp_path):
    import tracemalloc

    from lookalike.images import content_hash, hash_file

    data = np.random.default_rng(1).integers(0, 256, 20 * 2**20, np.uint8).tobytes()
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    expected = content_hash(data)
    del data
    tracemalloc.start()
    found = hash_file(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found == expected
    assert peak < 4 * 2**20  # never the 20 MiB at once


# Edge inputs: every alpha mode, pixel limits at their edge, links and folder names, arrays.

@pytest.mark.parametrize("mode, transparent, opaque_blue", [
    ("LA", (0, 0), (29, 255)),  # L = 0.114 x 255 for the blue the RGBA case paints
    ("La", (0, 0), (29, 255)),
    ("RGBA", (0, 0, 0, 0), (0, 0, 255, 255)),
    ("RGBa", (0, 0, 0, 0), (0, 0, 255, 255)),
])
def test_every_alpha_mode_is_composited_on_white(mode, transparent, opaque_blue):
    img = Image.new(mode, (2, 1), transparent)
    img.putpixel((1, 0), opaque_blue)
    out = decode(img)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    expected = (29, 29, 29) if mode.startswith("L") else (0, 0, 255)
    assert out.getpixel((1, 0)) == expected


def test_half_transparent_pixels_are_blended_with_white():
    img = Image.new("RGBA", (1, 1), (0, 0, 0, 128))  # black at alpha 128/255 over white: 255 x 127/255
    assert decode(img).getpixel((0, 0)) == (127, 127, 127)
    assert decode(img.convert("RGBa")).getpixel((0, 0)) == (127, 127, 127)
    assert decode(Image.new("LA", (1, 1), (0, 128))).getpixel((0, 0)) == (127, 127, 127)


def test_a_palette_with_an_alpha_channel_from_a_tiff_file_is_composited_on_white(tmp_path):
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.putpixel((0, 0), (1, 0))  # the green entry, fully transparent
    img.putpixel((1, 0), (1, 255))
    img.save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    out = decode(tmp_path / "pa.tif")
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (10, 200, 30)
    assert decode(tmp_path / "pa.tif", gray=True).getpixel((0, 0)) == 255


def test_16_bit_grey_is_scaled_from_the_full_16_bit_range_not_its_own():
    arr = np.array([[0, 1000], [32768, 65535]], np.uint16)
    out = decode(Image.fromarray(arr))
    # v x 255 / 65535, rounded: 0, 3.89, 127.5, 255
    assert [out.getpixel(xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 4, 128, 255]


def test_a_flat_32_bit_image_is_black_and_a_tall_one_is_scaled_in_every_strip():
    from lookalike.images import to_rgb

    assert to_rgb(Image.fromarray(np.full((3, 3), 7, np.int32), "I")).getextrema() == ((0, 0),) * 3
    # 2**20 // 2**18 = 4 rows per strip: 10 rows are 3 strips, the last one short
    arr = np.repeat(np.arange(10, dtype=np.int32)[:, None] * 100, 2**18, axis=1)
    out = np.asarray(to_rgb(Image.fromarray(arr, "I")))[:, 0, 0]
    assert out.tolist() == [0, 28, 57, 85, 113, 142, 170, 198, 227, 255]  # v x 255 / 900, rounded


def test_the_pixel_limit_admits_an_image_of_exactly_that_many_pixels():
    from lookalike.images import ImageTooLarge, open_image

    data = _bytes(Image.new("RGB", (300, 200)), "PNG")
    assert decode(data, max_pixels=60_000).size == (300, 200)
    with pytest.raises(ImageTooLarge) as refused:
        decode(data, max_pixels=59_999)
    assert (refused.value.width, refused.value.height, refused.value.limit) == (300, 200, 59_999)
    assert str(refused.value) == "too large: 300x200 pixels exceeds the limit of 59999"
    assert open_image(data, max_pixels=60_000).size == (300, 200)


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_image_of_zero_size_is_refused(size):
    with pytest.raises(ImageError, match="^image has zero size$"):
        decode(Image.new("RGB", size))


def test_reasons_for_files_that_cannot_be_opened(tmp_path):
    from lookalike.images import read_file

    with pytest.raises(ImageError, match="^cannot read file: No such file or directory$"):
        decode(tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match="^not a regular file"):
        decode(tmp_path)
    with pytest.raises(ImageError, match="^cannot read file: No such file or directory$"):
        read_file(tmp_path / "gone.jpg")
    (tmp_path / "a.jpg").write_bytes(b"abc")
    for reader in (read_file, decode):
        with pytest.raises(ImageError, match="^not an image \\(empty or unknown format\\)$"):
            reader(tmp_path / "a.jpg")
    (tmp_path / "b.png").write_bytes(_bytes(Image.new("RGB", (3, 2)), "PNG"))
    assert read_file(tmp_path / "b.png") == (tmp_path / "b.png").read_bytes()


def test_arrays_of_floats_are_read_as_0_to_1_rounded_and_clipped_and_other_dtypes_refused():
    out = decode(np.array([[-0.5, 0.0, 0.5, 0.999, 1.0, 3.0]], np.float64))
    assert [out.getpixel((x, 0))[0] for x in range(6)] == [0, 0, 128, 255, 255, 255]  # v x 255 + 0.5, floored
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1] = (0, 0, 255, 255)
    assert [decode(rgba).getpixel((x, 0)) for x in (0, 1)] == [(255, 255, 255), (0, 0, 255)]
    assert decode(np.zeros((2, 3), np.uint8)).size == (3, 2)
    with pytest.raises(ImageError, match="^unsupported array dtype int32; use uint8 or float in \\[0, 1\\]$"):
        decode(np.zeros((2, 2), np.int32))
    with pytest.raises(ImageError, match="^unsupported array shape \\(2, 2, 3, 1\\); use HxW, HxWx3 or HxWx4$"):
        decode(np.zeros((2, 2, 3, 1), np.uint8))


def test_the_content_hash_is_128_bit_blake2b():
    from lookalike.images import content_hash

    assert content_hash(b"") == "cae66941d9efbd404e4d88758ea67670"  # BLAKE2b-128 of nothing (RFC 7693 test suite)
    assert len(content_hash(b"x")) == 32 and content_hash(b"x") != content_hash(b"y")


def test_image_extensions_are_matched_whatever_their_case():
    for name in ("a.jpg", "b.JPEG", "c.Png", "d.HEIC", "e.heif", "f.avif", "g.webp", "h.tiff", "i.jfif", "j.BMP"):
        assert is_image_path(name), name
    for name in ("a.txt", "b.jpg.txt", "c", ".jpg.bak", "d.mov", "e.svg", "jpg"):
        assert not is_image_path(name), name


def _folder(path, *names):
    path.mkdir(parents=True)
    for name in names:
        Image.new("RGB", (4, 4)).save(path / name)
    return path


def test_links_to_folders_inside_are_followed_outside_are_left_out_with_the_reason(tmp_path):
    root = _folder(tmp_path / "photos", "a.jpg")
    _folder(root / "inner", "b.jpg")
    _folder(tmp_path / "photos2", "c.jpg")  # a sibling whose name starts with the folder's name
    _folder(tmp_path / "elsewhere", "d.jpg")
    os.symlink(root / "inner", root / "z-inner-again")  # the same folder again, under a link: listed once
    os.symlink(tmp_path / "photos2", root / "sibling")
    os.symlink(tmp_path / "photos2" / "c.jpg", root / "c-link.jpg")
    os.symlink(tmp_path / "elsewhere", root / "m-elsewhere")
    os.symlink(tmp_path / "nowhere", root / "dangling")
    left_out = []
    found = list(list_images(root, left_out=left_out))
    assert [os.path.relpath(p, root) for p in found] == ["a.jpg", os.path.join("inner", "b.jpg")]
    outside = "symbolic link to outside the folder (use --follow-links to include it)"
    assert sorted(left_out) == sorted([(str(root / "c-link.jpg"), outside), (str(root / "dangling"), "dangling symbolic link"),
                                       (str(root / "m-elsewhere"), outside), (str(root / "sibling"), outside)])
    followed = list(list_images(root, follow_links=True))
    assert [os.path.relpath(p, root) for p in followed] == [
        "a.jpg", "c-link.jpg", os.path.join("inner", "b.jpg"), os.path.join("m-elsewhere", "d.jpg"),
        os.path.join("sibling", "c.jpg")]


def test_a_link_to_the_folder_itself_or_given_as_the_root_is_listed_once(tmp_path):
    root = _folder(tmp_path / "photos", "a.jpg")
    os.symlink(root, root / "again")
    assert list(list_images(root)) == [str(root / "a.jpg")]
    os.symlink(root, tmp_path / "link")  # the root given through a link: its files are inside
    assert list(list_images(tmp_path / "link")) == [str(tmp_path / "link" / "a.jpg")]


def test_other_files_are_counted_by_lower_case_extension_and_hidden_ones_not_at_all(tmp_path):
    from collections import Counter

    root = _folder(tmp_path / "photos", "a.jpg")
    for name in ("notes.TXT", "more.txt", "README", "clip.Mov", ".DS_Store", ".hidden.txt"):
        (root / name).write_bytes(b"x")
    _folder(root / ".cache", "e.jpg")
    (root / ".cache" / "x.txt").write_bytes(b"x")
    ignored = Counter()
    assert list(list_images(root, ignored=ignored)) == [str(root / "a.jpg")]
    assert ignored == Counter({".txt": 2, "": 1, ".mov": 1})


def test_a_file_given_as_the_root_is_listed_alone_when_it_is_an_image(tmp_path):
    root = _folder(tmp_path / "photos", "a.jpg")
    (root / "notes.txt").write_text("x")
    assert list(list_images(root / "a.jpg")) == [str(root / "a.jpg")]
    assert list(list_images(root / "notes.txt")) == []
    assert list(list_images(tmp_path / "missing")) == []


def test_a_fifo_with_an_image_name_is_left_out_with_the_reason(tmp_path):
    root = _folder(tmp_path / "photos", "a.jpg")
    os.mkfifo(root / "pipe.jpg")
    left_out = []
    assert list(list_images(root, left_out=left_out)) == [str(root / "a.jpg")]
    assert left_out == [(str(root / "pipe.jpg"), "not a regular file (a FIFO, socket or device)")]


def test_read_file_takes_a_file_and_an_image_exactly_at_their_limits(tmp_path):
    """An image of exactly max_pixels pixels, in a file of exactly 8 bytes a pixel + 16 MiB (PNG
    padded at its end), is read whole; a pixel or a byte more is refused, saying which limit."""
    from lookalike.images import FileTooLarge, ImageTooLarge, read_file

    png = io.BytesIO()
    Image.new("RGB", (10, 12), "teal").save(png, "PNG")
    limit = 8 * 120 + 16 * 1024 * 1024  # 16,778,176 bytes for 120 pixels
    at_limit = png.getvalue() + b"\0" * (limit - len(png.getvalue()))
    (tmp_path / "at.png").write_bytes(at_limit)
    (tmp_path / "over.png").write_bytes(at_limit + b"\0")
    assert read_file(tmp_path / "at.png", max_pixels=120) == at_limit
    with pytest.raises(FileTooLarge) as caught:
        read_file(tmp_path / "over.png", max_pixels=120)
    assert str(caught.value) == ("too large: a file over 16,778,176 bytes (8 bytes a pixel at the limit of 120 pixels, "
                                 "and 16 MiB)")
    (tmp_path / "small.png").write_bytes(png.getvalue())
    with pytest.raises(ImageTooLarge) as caught:
        read_file(tmp_path / "small.png", max_pixels=119)
    assert str(caught.value) == "too large: 10x12 pixels exceeds the limit of 119"


def test_a_damaged_header_and_a_folder_argument_get_one_line_each(tmp_path, monkeypatch):
    from lookalike.images import folder, read_file

    header = io.BytesIO()
    Image.new("RGB", (4, 4)).save(header, "BMP")
    (tmp_path / "damaged.png").write_bytes(header.getvalue()[:20])  # a BMP cut inside its header
    with pytest.raises(ImageError) as caught:
        read_file(tmp_path / "damaged.png")
    assert str(caught.value).startswith("cannot open image: ") and "\n" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        folder(tmp_path / "damaged.png")
    assert str(caught.value) == f"not a directory: {tmp_path / 'damaged.png'}"
    monkeypatch.chdir(tmp_path)
    assert folder(".") == str(tmp_path) and folder(tmp_path) == str(tmp_path)


def test_left_out_summary_counts_an_unreadable_folder_whatever_its_reason_says():
    left_out = [("/a", "cannot read folder: Permission denied"), ("/b", "cannot read folder: [Errno 5] I/O: error"),
                ("/c", "cannot read folder")]
    assert left_out_summary(left_out) == "3 unreadable folders"


def test_a_folder_that_cannot_be_read_or_has_gone_is_passed_over_and_the_rest_listed(tmp_path, monkeypatch):
    """Folders are listed breadth first: one that cannot be read (said in left_out) or that went away
    between being found and being listed is passed over, and every folder after it is still listed."""
    from lookalike import images

    root = _folder(tmp_path / "photos", "a.jpg")
    for name in ("b-locked", "c-gone", "d", "e"):
        _folder(root / name, "x.jpg")
    _folder(root / "d" / "deeper", "y.jpg")
    scandir, stat = os.scandir, os.stat

    def locked_scandir(path):
        if os.path.basename(path) == "b-locked":
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    def gone_stat(path, *args, **kwargs):
        if os.path.basename(path) == "c-gone":
            raise FileNotFoundError(2, "No such file or directory")
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(images.os, "scandir", locked_scandir)
    monkeypatch.setattr(images.os, "stat", gone_stat)
    left_out = []
    found = [os.path.relpath(p, root) for p in list_images(root, left_out=left_out)]
    assert found == ["a.jpg", "d/x.jpg", "e/x.jpg", "d/deeper/y.jpg"]
    assert left_out == [(str(root / "b-locked"), "cannot read folder: Permission denied")]


# Found by mutation testing: a palette's transparent entry, the 16-bit scale's last step, the luma a
# gray decode reads, the colour a drafted decode keeps, a flat image without a warning.

def test_a_palette_entry_marked_transparent_is_white_and_the_others_keep_their_colour():
    p = Image.new("P", (2, 1), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.putpixel((0, 0), 0)  # entry 0, black, is the transparent one
    out = decode(_bytes(p, "PNG", transparency=0))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (10, 200, 30)
    assert decode(_bytes(p, "PNG")).getpixel((0, 0)) == (0, 0, 0)  # without the mark, black stays black


def test_16_bit_values_are_scaled_by_255_over_65535_rounded_half_up():
    # 257 x n - 128 sits 0.498 below n on the 8-bit scale (n x 257 = 255 x 257 x n / 255), so it
    # rounds up to n only when divided by exactly 65535 / 255 = 257
    arr = np.array([[257 * 200 - 128, 257 * 200 - 129, 257 * 3 + 128, 65535]], np.uint16)
    out = decode(Image.fromarray(arr))
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [200, 199, 3, 255]


def test_gray_decodes_the_luma_a_jpeg_stores_exactly():
    """The JPEG's own Y plane (Pillow's decoder asked for YCbCr), not colour decoded and turned gray,
    which rounds some pixels one or two levels away."""
    data = _bytes(sample_photo("astronaut").resize((1024, 640)), "JPEG", quality=95)
    stored = Image.open(io.BytesIO(data))
    stored.draft("YCbCr", (224, 224))
    assert stored.mode == "YCbCr" and stored.size == (512, 320)
    np.testing.assert_array_equal(np.asarray(decode(data, size=224, gray=True)), np.asarray(stored.split()[0]))


def test_a_jpeg_decoded_at_reduced_scale_keeps_its_colour():
    data = _bytes(Image.new("RGB", (1024, 1024), (200, 30, 40)), "JPEG", quality=95)
    out = decode(data, size=224)
    assert out.size == (256, 256) and out.mode == "RGB"
    r, g, b = out.getpixel((100, 100))
    assert abs(r - 200) <= 3 and abs(g - 30) <= 3 and abs(b - 40) <= 3


@pytest.mark.parametrize("mode, dtype", [("I", np.int32), ("F", np.float32)])
def test_a_flat_image_scaled_from_its_own_range_is_black_without_a_warning(mode, dtype):
    import warnings

    from lookalike.images import to_rgb

    img = Image.fromarray(np.full((3, 3), 7, dtype), mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by the zero range, no NaN cast to bytes
        out = to_rgb(img)
    assert out.getextrema() == ((0, 0),) * 3


def test_floats_are_scaled_by_255_and_a_bmp_with_a_broken_header_says_why():
    assert decode(np.full((1, 1), 0.6)).getpixel((0, 0)) == (153, 153, 153)  # 0.6 x 255 + 0.5 = 153.5
    with pytest.raises(ImageError, match=r"^cannot open image: .*BMP header"):
        decode(b"BM" + b"\0" * 20)


def test_decode_sized_gives_colour_unless_asked_for_gray():
    img, full = decode_sized(_bytes(Image.new("RGB", (4, 2), (200, 30, 40)), "PNG"))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (200, 30, 40) and full == (4, 2)


def test_a_link_from_a_folder_whose_name_ends_in_a_space_into_its_namesake_is_outside_it(tmp_path):
    (tmp_path / "set").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "set" / "x.jpg")
    root = tmp_path / "set "
    root.mkdir()
    Image.new("RGB", (2, 2)).save(root / "own.jpg")
    os.symlink(tmp_path / "set" / "x.jpg", root / "link.jpg")
    left_out = []
    assert list(list_images(root, left_out=left_out)) == [str(root / "own.jpg")]
    assert left_out == [(str(root / "link.jpg"), OUTSIDE_LINK)]


def test_an_entry_that_cannot_be_checked_is_passed_over_and_the_rest_of_its_folder_listed(tmp_path, monkeypatch):
    for name in ("a.jpg", "c.jpg"):
        Image.new("RGB", (2, 2)).save(tmp_path / name)
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    real = os.path.realpath

    def failing(path, *args, **kwargs):
        if str(path).endswith("b.jpg"):
            raise OSError("I/O error")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", failing)
    assert list(list_images(tmp_path)) == [str(tmp_path / "a.jpg"), str(tmp_path / "c.jpg")]


def test_a_file_that_grows_or_fails_while_read_is_refused_with_the_reason(tmp_path, monkeypatch):
    """The size checked before the header is not trusted: a file grown past the byte limit by the time
    its bytes are read is refused saying the limit, and a read failing after the header says why in
    the system's words."""
    import errno

    import lookalike.images as images

    png = io.BytesIO()
    Image.new("RGB", (10, 12), "teal").save(png, "PNG")
    path = tmp_path / "growing.png"
    path.write_bytes(png.getvalue())
    real_open = Image.open

    def grow_after_the_header(f, *args, **kwargs):
        img = real_open(f, *args, **kwargs)
        with open(path, "r+b") as w:
            w.truncate(8 * 120 + 16 * 1024 * 1024 + 1)  # one byte over the limit for 120 pixels
        return img

    monkeypatch.setattr(Image, "open", grow_after_the_header)
    with pytest.raises(images.FileTooLarge) as caught:
        images.read_file(path, max_pixels=120)
    assert str(caught.value) == ("too large: a file over 16,778,176 bytes (8 bytes a pixel at the limit of 120 pixels, "
                                 "and 16 MiB)")

    class FailingDisk(io.FileIO):
        """A file whose blocks after the header cannot be read (EIO)."""
        broken = False

        def _check(self):
            if self.broken:
                raise OSError(errno.EIO, os.strerror(errno.EIO))

        def readinto(self, b):
            self._check()
            return super().readinto(b)

        def readall(self):
            self._check()
            return super().readall()

    path.write_bytes(png.getvalue())
    raw = FailingDisk(path, "r")

    def break_after_the_header(f, *args, **kwargs):
        img = real_open(f, *args, **kwargs)
        raw.broken = True
        return img

    monkeypatch.setattr(images, "open_file", lambda p: io.BufferedReader(raw))
    monkeypatch.setattr(Image, "open", break_after_the_header)
    with pytest.raises(ImageError) as caught:
        images.read_file(path)
    assert str(caught.value) == f"cannot read file: {os.strerror(errno.EIO)}"
