import io
import os

import numpy as np
import pytest
from PIL import Image

from helpers import sample_photo
from lookalike.images import ImageError, decode, decode_sized, is_image_path, list_images


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
    p.info["transparency"] = 0
    assert decode(_bytes(p, "PNG", transparency=0)).getpixel((0, 0)) == (10, 200, 30)
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
        assert isinstance(out.get("error"), ImageError) and "regular file" in str(out["error"]), reader


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
