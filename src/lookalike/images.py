"""Listing image files and decoding them to RGB, with a reason for every file that cannot be read.

Index, query, server and training all decode through :func:`decode`, so a picture gives the same
pixels whichever way it enters lookalike. HEIC/HEIF (phone photos) are read through pillow-heif, AVIF
through Pillow's own codec or, in a Pillow built without it, pillow-avif-plugin.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections import Counter, deque
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp",
     ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".sgi", ".pcx", ".im",
     ".heic", ".heif", ".hif", ".avif"}
)


def _register_plugins() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif) and, when it lacks its own codec, AVIF (pillow-avif-plugin).
    Without the package, such files are skipped with "not an image" like any unknown format."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        pass
    else:
        register_heif_opener()
    if not features.check("avif"):
        try:
            import pillow_avif  # noqa: F401  (registers itself)
        except ImportError:
            pass


_register_plugins()
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
#: The server's default for uploads (a 50-megapixel photo): lower, since anyone who can reach it may
#: post, and a decode takes up to 7 bytes a pixel.
UPLOAD_MAX_PIXELS = 50_000_000
#: The server's default limit on an upload's bytes, and on an image fetched by its address.
UPLOAD_MAX_BYTES = 20 * 1024 * 1024

# Pillow's own bomb check must not fire before ours: ours gives the reason in a skip list.
Image.MAX_IMAGE_PIXELS = None
#: A file is read only up to 8 bytes for each pixel allowed (16-bit RGBA stored uncompressed, the
#: largest common encoding) and 16 MiB on top for metadata: :func:`max_file_bytes`.
BYTES_PER_PIXEL, METADATA_BYTES = 8, 16 * 2**20


class ImageError(Exception):
    """A file that is not a decodable image; ``str(err)`` is the one-line reason."""


#: How the reason of an image refused by a size limit (:class:`ImageTooLarge`, :class:`FileTooLarge`) begins.
TOO_LARGE = "too large: "


class ImageTooLarge(ImageError):
    """An image of ``width`` x ``height`` pixels, more than the limit of ``limit``."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"{TOO_LARGE}{width}x{height} pixels exceeds the limit of {limit}")
        self.width, self.height, self.limit = width, height, limit


class FileTooLarge(ImageError):
    """A file of more bytes than an image of ``max_pixels`` needs (:func:`max_file_bytes`)."""

    def __init__(self, max_pixels: int) -> None:
        super().__init__(f"{TOO_LARGE}a file over {max_file_bytes(max_pixels):,} bytes (8 bytes a pixel at the "
                         f"limit of {max_pixels:,} pixels, and 16 MiB)")


#: Taken by callers serving many requests at once (the server's uploads and thumbnails) from a decode
#: until the image is small again (made a thumbnail, or embedded), so that parallel requests cannot
#: multiply peak memory.
DECODING = threading.BoundedSemaphore(2)


#: Why :func:`list_images` leaves an entry out, and how a summary names such entries (one, several).
OUTSIDE_LINK = "symbolic link to outside the folder (use --follow-links to include it)"
DANGLING_LINK = "dangling symbolic link"
SPECIAL_FILE = "not a regular file (a FIFO, socket or device)"
UNREADABLE_FOLDER = "cannot read folder"
_LEFT_OUT_NAMES = {OUTSIDE_LINK: ("symbolic link to outside the folder (--follow-links includes it)",
                                  "symbolic links to outside the folder (--follow-links includes them)"),
                   DANGLING_LINK: ("dangling symbolic link", "dangling symbolic links"),
                   SPECIAL_FILE: ("FIFO, socket or device", "FIFOs, sockets or devices"),
                   UNREADABLE_FOLDER: ("unreadable folder", "unreadable folders")}


def left_out_summary(left_out: list[tuple[str, str]]) -> str:
    """What :func:`list_images` left out, counted by reason (``3 symbolic links to outside the folder
    (--follow-links includes them), 1 dangling symbolic link``); "" when nothing was. Other reasons
    in the list (a file that could not be decoded) are not counted."""
    counts = Counter(reason.partition(":")[0] if reason.startswith(UNREADABLE_FOLDER) else reason
                     for _, reason in left_out)
    return ", ".join(f"{counts[r]} {one if counts[r] == 1 else many}"
                     for r, (one, many) in _LEFT_OUT_NAMES.items() if counts[r])


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension (the content is checked at decode time)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def folder(path: str | os.PathLike) -> str:
    """``path`` made absolute; ValueError ``not a directory: PATH`` unless it is a directory (the one
    check of a folder argument: index, dedup, evaluate, train, tune)."""
    if not os.path.isdir(path):
        raise ValueError(f"not a directory: {path}")
    return os.path.abspath(os.fspath(path))


def list_images(root: str | os.PathLike, ignored: Counter | None = None,
                left_out: list[tuple[str, str]] | None = None, follow_links: bool = False) -> Iterator[str]:
    """Yield absolute paths of image files under ``root``: sorted within each folder, folders breadth first.

    Symbolic links are followed while they lead to a place inside ``root`` (anywhere with
    ``follow_links``); directories are identified by (device, inode), so a link back up the tree is
    visited once, and a folder reached in several ways is listed under the shortest (the fewest
    folders below ``root``: the name that gives its files their class in training data). Hidden directories (``.name``) are skipped: that is where indexes and caches live.
    ``ignored``, when given, counts the other (not hidden) files by lower-case extension ("" for
    none); ``left_out`` receives (path, reason) for every link not followed, dangling link, image name
    that is not a regular file, and folder that cannot be read.
    """
    root = os.path.abspath(os.fspath(root))
    if os.path.isfile(root):
        if is_image_path(root):
            yield root
        return
    inside = os.path.realpath(root).rstrip(os.sep) + os.sep
    note = left_out.append if left_out is not None else lambda item: None
    seen: set[tuple[int, int]] = set()
    waiting = deque([root])
    while waiting:
        directory = waiting.popleft()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            note((directory, f"{UNREADABLE_FOLDER}: {e.strerror or e}"))
            continue
        subdirs = []
        for entry in entries:
            hidden = entry.name.startswith(".")
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not os.path.exists(target):
                        note((entry.path, DANGLING_LINK))
                        continue
                    if not follow_links and not (target + os.sep).startswith(inside):
                        note((entry.path, OUTSIDE_LINK))
                        continue
                if entry.is_dir():
                    if not hidden:
                        subdirs.append(entry.path)
                elif not is_image_path(entry.name):
                    if ignored is not None and not hidden:
                        ignored[os.path.splitext(entry.name)[1].lower()] += 1
                elif entry.is_file():
                    yield entry.path
                else:
                    note((entry.path, SPECIAL_FILE))
            except OSError:
                continue
        waiting.extend(subdirs)


def open_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a path, encoded bytes, PIL image or HxW[xC] uint8 array without decoding pixels yet
    (a path only when it is a regular file: :func:`open_file`).

    Raises :class:`ImageError` for unreadable, non-image or over-sized input.
    """
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _from_array(source)
    else:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open_file(source)
        try:
            img = Image.open(stream)
        except UnidentifiedImageError:
            stream.close()
            raise ImageError("not an image (empty or unknown format)") from None
        except (OSError, ValueError, SyntaxError) as e:
            stream.close()
            raise ImageError(f"cannot open image: {e}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(width, height, max_pixels)
    if width == 0 or height == 0:
        raise ImageError("image has zero size")
    return img


def decode(source: str | os.PathLike | bytes | Image.Image | np.ndarray, size: int | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, gray: bool = False) -> Image.Image:
    """Decode ``source`` to an upright RGB image, transparent areas composited on white (with
    ``gray``, a gray "L" image: a JPEG's luma is then decoded alone, without its colour).

    With ``size``, JPEGs are decoded at the smallest DCT scale that is still at least
    ``size`` pixels on each side (``Image.draft``), which is several times faster for large photos;
    :func:`decode_sized` also gives the picture's full size. Only the first frame of an animation is
    used. Raises :class:`ImageError` with a reason.
    """
    return decode_sized(source, size, max_pixels, gray)[0]


def decode_sized(source: str | os.PathLike | bytes | Image.Image | np.ndarray, size: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, gray: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`decode`, and the picture's full (width, height), upright: a JPEG decoded at a smaller
    DCT scale is still its file's size."""
    img = open_image(source, max_pixels)
    full = img.size
    try:
        if size is not None and img.format == "JPEG":
            img.draft("L" if gray else "RGB", (size, size))
        img.seek(0)
        img.load()
        stored = img.size
        if img is source:  # the caller's own image is never changed
            img = ImageOps.exif_transpose(img)
        else:  # in place: a copy would double an upright image's memory
            ImageOps.exif_transpose(img, in_place=True)
        if img.size != stored:  # turned a quarter by its EXIF orientation
            full = full[::-1]
        if gray:
            return (img if img.mode == "L" else to_rgb(img).convert("L")), full
        return to_rgb(img), full
    except ImageError:
        raise
    except Exception as e:  # Pillow raises many types for corrupt data (OSError, SyntaxError, ...)
        raise ImageError(f"cannot decode image: {e}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16/32-bit and float scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "RGBa", "La", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")  # Pillow turns La into LA only
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # in strips of rows: the whole image as a float64 array would take 650 MB at 81 Mpx
        lo, hi = (0.0, 65535.0) if mode.startswith("I;16") else map(float, img.getextrema())
        width, height = img.size
        rows = max(1, (1 << 20) // width)  # about 8 MB of float64 at a time
        out = np.zeros((height, width), np.uint8)
        for at in range(0, height, rows) if hi > lo else ():
            strip = np.asarray(img.crop((0, at, width, min(at + rows, height))), np.float64)
            strip -= lo  # in place: no temporaries
            strip *= 255.0 / (hi - lo)
            strip += 0.5
            out[at:at + rows] = np.clip(strip, 0, 255, out=strip)
        return Image.fromarray(out).convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray) -> Image.Image:
    """Wrap an HxW, HxWx3 or HxWx4 array (uint8, or float in [0, 1]) as a PIL image."""
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise ImageError(f"unsupported array dtype {arr.dtype}; use uint8 or float in [0, 1]")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(arr))
    raise ImageError(f"unsupported array shape {arr.shape}; use HxW, HxWx3 or HxWx4")


def content_hash(data: bytes) -> str:
    """The content hash stored for every file (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    """:func:`content_hash` of a file's bytes, read in pieces (:func:`open_file`'s checks apply)."""
    digest = hashlib.blake2b(digest_size=16)
    with open_file(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_file(path: str | os.PathLike) -> io.BufferedReader:
    """Open a regular file for reading, never blocking: a FIFO, socket or device is refused before a
    byte is read. :class:`ImageError` with the reason when it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError("not a regular file (a FIFO, socket or device)")
    return os.fdopen(fd, "rb")


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The most bytes read from one image file when images may have up to ``max_pixels``."""
    return BYTES_PER_PIXEL * max_pixels + METADATA_BYTES


def read_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of an image file, read only once they can be an image of at most ``max_pixels``:
    a regular file (:func:`open_file`: never blocking on a FIFO or device) of at most
    :func:`max_file_bytes`, whose header Pillow recognises, of no more pixels than allowed.
    :class:`ImageError` with the reason otherwise, before the rest of the file is read."""
    limit = max_file_bytes(max_pixels)
    with open_file(path) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise FileTooLarge(max_pixels)
        try:
            with Image.open(f) as img:  # the header alone: a file that is no image stops here
                if img.width * img.height > max_pixels:
                    raise ImageTooLarge(img.width, img.height, max_pixels)
        except UnidentifiedImageError:
            raise ImageError("not an image (empty or unknown format)") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise ImageError(f"cannot open image: {e}") from None
        try:
            f.seek(0)
            data = f.read(limit + 1)
        except OSError as e:
            raise ImageError(f"cannot read file: {e.strerror or e}") from None
    if len(data) > limit:  # it grew since
        raise FileTooLarge(max_pixels)
    return data
