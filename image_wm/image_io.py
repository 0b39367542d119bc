"""Reading and writing images for the detectors, with errors that name the problem.

Why strict: a latent watermark detector silently fed a grayscale, 16-bit, truncated or thumbnail
image returns a confident-looking "not detected". Such inputs are refused with ``InputError``
(``<path>: <what is wrong>``, one line) instead of being scored.

Why bounded: images come from anyone. A file is read whole only when it is a regular file of at
most ``MAX_IMAGE_BYTES``, and its pixel count, taken from the header, is checked against a cap
(``MAX_IMAGE_PIXELS`` unless the caller passes another, e.g. from a ``--max-pixels`` option)
before any pixel is decoded, so a decompression bomb is refused cheaply.

Decoding is Pillow's, limited to the formats ``write_image`` writes (PNG, JPEG, WebP, BMP, TIFF)
plus GIF, with truncated images an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` off); a PNG must
also end in its IEND chunk with every chunk's checksum intact. Nothing the decoders print
(libtiff, Python warnings) reaches the terminal, and OpenCV's log is silenced at import.

Mode rules (the Pillow mode of the stored image decides):

* ``RGB``: accepted as is.
* ``P`` (palette): converted to RGB; a palette image is a colour image.
* ``RGBA``, ``PA``, and ``RGB``/``P`` with a transparent colour (PNG ``tRNS``, GIF transparency
  index): accepted only if every pixel is fully opaque (the alpha is then dropped, it carries
  nothing); otherwise refused, "has transparency; flatten it onto a background first".
* grayscale (``L``, ``LA``, ``La``, ``1``, ``I``, ``I;16*``, ``F``): refused, "grayscale image";
  the watermark lives in colour.
* more than 8 bits per channel (PNG bit depth 16, TIFF ``BitsPerSample`` over 8; Pillow 13 would
  quietly reduce a 48/64-bit PNG to 8-bit ``RGB``/``RGBA``): refused, "16-bit image; convert to
  8-bit".
* ``CMYK``: refused, "CMYK image; convert to RGB".
* several frames (animated GIF, WebP or PNG, multi-page TIFF): refused, "animated/multi-frame
  image; give one frame" (the video reader handles clips). A JPEG with MPF side images (a
  stereo pair, an Ultra HDR gain map) is one photo: its primary image is read.
* any other mode: refused, naming the mode.

EXIF orientation is not applied: pixels are returned as stored, which is where a watermark is
(the same as ``cv2.imread(..., IMREAD_UNCHANGED)`` did). An image with a side shorter than
``MIN_SIDE`` is refused.

Writing (``write_image``) encodes in memory with OpenCV (format by suffix, ``IMAGE_SUFFIXES``)
and replaces the file atomically; ``check_image_output`` lets a command refuse a bad output path
before any model loads.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from provenance.files import check_new_output, write_bytes_atomic
from provenance.readers import InputError, one_line, read_limited_bytes

MIN_SIDE = 16
MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Pillow plugins tried when decoding; anything else (EPS, which runs Ghostscript, ICO, PSD, ...) is
# "unknown format". A JPEG with MPF side images still opens (Pillow's JPEG plugin makes it "MPO").
READ_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow's module-level settings are shared; decodes change them briefly, one at a time.
_DECODE_LOCK = threading.Lock()

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at the null device for the block (C libraries such as libtiff
    print their warnings there, below Python's reach)."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to protect
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _strict_pillow(max_pixels: int) -> Iterator[None]:
    """Pillow set to refuse truncated images, with its own decompression-bomb cap at or above
    ``max_pixels`` (so ours, with its clearer message, decides), warnings and library output muted."""
    with _DECODE_LOCK:
        saved_cap, saved_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        if saved_cap is not None and saved_cap < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with warnings.catch_warnings(), _quiet_stderr():
                warnings.simplefilter("ignore")
                yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved_cap, saved_truncated


def _pixel_cap_problem(width: int, height: int, max_pixels: int) -> str:
    return (f"image is {width}x{height} ({width * height:,} pixels), over the {max_pixels:,}-pixel limit "
            f"(the commands' --max-pixels option raises it)")


def _png_problem(data: bytes) -> str | None:
    """Why a PNG's chunk structure is broken (cut short, or a chunk failing its CRC), else None."""
    view, pos, end_of_data = memoryview(data), len(_PNG_SIGNATURE), len(data)
    while True:
        if pos + 8 > end_of_data:
            return "the file ends before the PNG's IEND chunk"
        length, kind = struct.unpack_from(">I4s", data, pos)
        name = kind.decode("ascii") if kind.isalpha() else kind.hex()
        end = pos + 12 + length
        if end > end_of_data:
            return f"the file ends inside PNG chunk {name} at byte {pos}"
        if zlib.crc32(view[pos + 4:end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            return f"PNG chunk {name} at byte {pos} fails its checksum"
        if kind == b"IEND":
            return None
        pos = end


def _bits_per_channel(im: Image.Image, data: bytes) -> int:
    """The stored bits per channel where Pillow may hide them (it reduces 16-bit RGB PNGs to 8)."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample: one value, or one per sample
        values = bits if isinstance(bits, tuple) else (bits,)
        return max((int(b) for b in values if isinstance(b, int)), default=8)
    return 8


def _mode_problem(im: Image.Image, data: bytes) -> str | None:
    """Why the stored image is refused by the mode rules (see the module docstring), else None."""
    mode, bits = im.mode, _bits_per_channel(im, data)
    if mode in _GRAYSCALE_MODES:
        bits = max(bits, 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 0)
        depth = f"{bits}-bit grayscale" if bits > 8 else "grayscale"
        return f"{depth} image, not an RGB image; the watermark lives in colour"
    if mode == "CMYK":
        return "CMYK image; convert to RGB"
    if mode not in ("RGB", "RGBA", "P", "PA"):
        return f"unsupported image mode {mode} (give an 8-bit RGB image)"
    if bits > 8:
        return f"{bits}-bit image; convert to 8-bit"
    return None


def _pixels(im: Image.Image, source: object) -> np.ndarray:
    """Loaded pixels as uint8 RGB, refusing any that are not fully opaque."""
    if im.mode in ("RGBA", "PA") or "transparency" in im.info:
        rgba = np.array(im.convert("RGBA"), dtype=np.uint8)
        if (rgba[..., 3] != 255).any():
            raise InputError(source, "has transparency; flatten it onto a background first")
        return np.ascontiguousarray(rgba[..., :3])
    return np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def decode_image(data: bytes, source: object, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The image encoded in ``data`` as uint8 RGB (H, W, 3), or ``InputError(source, ...)``.

    Follows the mode rules of the module docstring; the pixel count is checked against
    ``max_pixels`` from the header, before anything is decoded.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, not {max_pixels!r}")
    if not data:
        raise InputError(source, "empty file, not an image")
    with _strict_pillow(max_pixels):
        try:
            im = Image.open(io.BytesIO(data), formats=READ_FORMATS)
        except UnidentifiedImageError:
            raise InputError(source, "not a readable image (unknown format; give PNG, JPEG, WebP, BMP, TIFF "
                                     "or GIF)") from None
        except Image.DecompressionBombError as exc:  # only over twice our cap, see _strict_pillow
            found = re.search(r"\((\d+) pixels\)", str(exc))
            count = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
            raise InputError(source, f"image has {count}, over the {max_pixels:,}-pixel limit "
                                     f"(the commands' --max-pixels option raises it)") from None
        except MemoryError:
            raise InputError(source, "image header is too large to read") from None
        except Exception as exc:  # Pillow's plugins raise many kinds on a malformed header
            raise InputError(source, f"truncated or corrupt image ({one_line(exc, 160)})") from None
        with im:
            width, height = im.size
            if width * height > max_pixels:
                raise InputError(source, _pixel_cap_problem(width, height, max_pixels))
            try:
                several = im.format != "MPO" and bool(getattr(im, "is_animated", False))
            except Exception as exc:
                raise InputError(source, f"truncated or corrupt image ({one_line(exc, 160)})") from None
            if several:
                raise InputError(source, "animated/multi-frame image; give one frame")
            problem = _mode_problem(im, data)
            if problem:
                raise InputError(source, problem)
            if min(width, height) < MIN_SIDE:
                raise InputError(source, f"image is {width}x{height}, smaller than {MIN_SIDE}x{MIN_SIDE}")
            if im.format == "PNG" and data.startswith(_PNG_SIGNATURE):
                problem = _png_problem(data)
                if problem:
                    raise InputError(source, f"truncated or corrupt image ({problem})")
            try:
                im.load()
            except MemoryError:
                raise InputError(source, f"image is {width}x{height}, too large to decode in the memory "
                                         f"available") from None
            except Exception as exc:
                raise InputError(source, f"truncated or corrupt image ({one_line(exc, 160)})") from None
            try:
                pixels = _pixels(im, source)
            except InputError:
                raise
            except Exception as exc:  # e.g. a palette that does not cover the indices used
                raise InputError(source, f"truncated or corrupt image ({one_line(exc, 160)})") from None
    if pixels.shape != (height, width, 3):  # a decoder that disagrees with its own header
        raise InputError(source, f"truncated or corrupt image (decoded {pixels.shape[1]}x{pixels.shape[0]}, "
                                 f"header says {width}x{height})")
    return pixels


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An 8-bit RGB image file as uint8 (H, W, 3); ``InputError`` naming ``path`` if it cannot be used.

    Only a regular file of at most ``MAX_IMAGE_BYTES`` is read; see ``decode_image`` and the
    module docstring for what is accepted.
    """
    data = read_limited_bytes(path, MAX_IMAGE_BYTES, "image file")
    return decode_image(data, path, max_pixels)


def _image_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        found = f"'{path.suffix}'" if path.suffix else "(no suffix)"
        raise InputError(path, f"unsupported image format {found} (use {', '.join(IMAGE_SUFFIXES)})")
    return suffix


def check_image_output(path: str | os.PathLike, force: bool) -> Path:
    """``path`` as a Path once it is known to be writable as an image: a suffix ``write_image``
    knows (else ``InputError``), and no existing file unless ``force`` (else ``FileExistsError``).
    Commands call this before any model loads."""
    path = Path(path)
    _image_suffix(path)
    check_new_output(path, force)
    if path.is_dir():
        raise InputError(path, "is a folder, not an image file")
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) RGB image; the format follows the suffix (PNG is lossless).

    The file is encoded in memory first and then replaces ``path`` in one step, so a failure
    leaves any earlier file whole. Overwriting is the caller's decision (``check_image_output``).
    """
    path = Path(path)
    suffix = _image_suffix(path)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array shaped {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image to write must be a uint8 (H, W, 3) RGB array, not a {got}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image to write is empty ({image.shape[1]}x{image.shape[0]})")
    try:
        with _quiet_stderr():
            ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image[..., ::-1]))
    except cv2.error as exc:
        raise OSError(f"{path}: cannot encode the image as {suffix} ({one_line(exc, 160)})") from None
    if not ok:
        raise OSError(f"{path}: cannot encode the image as {suffix}")
    return write_bytes_atomic(path, encoded.tobytes())


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 batch (N, H, W, 3): area averaging to shrink (no aliasing), bicubic to enlarge."""
    if images.shape[1:3] == (height, width):
        return images
    shrink = images.shape[1] * images.shape[2] > height * width
    return np.stack([cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
                     for im in images])
