"""image_wm.image_io: a strict, bounded image reader (mode rules, truncation, caps, no library noise)
and an atomic writer that checks its format before anything is written."""

from __future__ import annotations

import io
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from image_wm import image_io
from image_wm.image_io import (IMAGE_SUFFIXES, MIN_SIDE, check_image_output, decode_image, read_image,
                               write_image)
from provenance.readers import InputError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rgb():
    return np.random.default_rng(7).integers(0, 256, (48, 64, 3), np.uint8)


def smooth(shape=(96, 128, 3), seed=3):
    """A photo-like image (JPEG compresses it the way it does photos)."""
    noise = np.random.default_rng(seed).integers(0, 256, shape, np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 0)


def cv2_write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def pil_write(path, im, fmt=None, **options):
    im.save(path, fmt, **options)
    return path


def refused(path, fragment, **kwargs):
    with pytest.raises(InputError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert fragment in message, message
    return message


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width, height, with_end=True):
    """A PNG whose header claims ``width`` x ``height`` RGB with one tiny IDAT: nothing to allocate here."""
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data += png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return data + (png_chunk(b"IEND", b"") if with_end else b"")


# --- truncated and corrupt files ---------------------------------------------------------------

def test_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    path = cv2_write(tmp_path / "wm.jpg", smooth())
    assert read_image(path).shape == (96, 128, 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(path, "truncated or corrupt image")


def test_truncated_jpeg_prints_nothing(tmp_path, capfd):
    path = cv2_write(tmp_path / "wm.jpg", smooth())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError):
        read_image(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_truncated_tiffs_print_nothing(tmp_path, capfd):
    """libtiff writes its complaints to file descriptor 2 itself; none may reach the terminal."""
    data = cv2.imencode(".tif", smooth((32, 32, 3)))[1].tobytes()
    # OpenCV writes the IFD last: cuts in it are the ones libtiff complains about.
    cuts = list(range(8, len(data), len(data) // 20)) + list(range(len(data) - 8, len(data)))
    for cut in cuts:
        with pytest.raises(InputError, match="truncated or corrupt|not a readable image|smaller than"):
            decode_image(data[:cut], "cut.tif")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("cut", [0.5, 0.9, -12, -20])
def test_truncated_png_is_refused(tmp_path, rgb, cut):
    """Cut anywhere, even after the last pixel row (Pillow alone would decode those): refused."""
    data = cv2.imencode(".png", rgb)[1].tobytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * cut)] if cut > 0 else data[:cut])
    refused(path, "truncated or corrupt image")


def test_corrupt_png_chunk_is_refused(tmp_path, rgb):
    data = bytearray(cv2.imencode(".png", rgb)[1].tobytes())
    data[len(data) // 2] ^= 0x01
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    refused(path, "fails its checksum")


def test_every_cut_of_a_jpeg_or_png_is_refused(rgb):
    for suffix in (".jpg", ".png"):
        data = cv2.imencode(suffix, smooth((32, 32, 3)))[1].tobytes()
        for cut in range(0, len(data) - 1, 7):
            with pytest.raises(InputError):
                decode_image(data[:cut], f"cut{suffix}")


# --- mode rules ------------------------------------------------------------------------------

def test_grayscale_pngs_are_refused(tmp_path, rgb):
    refused(cv2_write(tmp_path / "gray.png", rgb[..., 0]), "grayscale image")
    message = refused(cv2_write(tmp_path / "gray16.png", rgb[..., 0].astype(np.uint16) * 257), "grayscale image")
    assert "16-bit" in message
    la = Image.fromarray(np.dstack([rgb[..., 0], np.full(rgb.shape[:2], 255, np.uint8)]), "LA")
    refused(pil_write(tmp_path / "la.png", la), "grayscale image")  # cv2 would have made it 4 channels
    refused(pil_write(tmp_path / "bits.png", Image.fromarray(rgb).convert("1")), "grayscale image")
    refused(pil_write(tmp_path / "float.tif", Image.fromarray(rgb).convert("F")), "grayscale image")


def test_sixteen_bit_colour_is_refused(tmp_path, rgb):
    """Pillow 13 reduces a 48-bit PNG to 8-bit RGB without a word; the header's bit depth decides."""
    wide = rgb.astype(np.uint16) * 257
    with Image.open(cv2_write(tmp_path / "probe.png", wide)) as im:
        assert im.mode == "RGB"
    refused(tmp_path / "probe.png", "16-bit image; convert to 8-bit")
    refused(cv2_write(tmp_path / "rgba16.png", np.dstack([wide, np.full(rgb.shape[:2], 65535, np.uint16)])),
            "16-bit image")
    refused(cv2_write(tmp_path / "rgb16.tif", wide), "16-bit image")


def test_transparency_rules(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    opaque = cv2_write(tmp_path / "opaque.png", np.dstack([rgb[..., ::-1], alpha]))
    assert np.array_equal(read_image(opaque), rgb)
    alpha[3, 5] = 254
    refused(cv2_write(tmp_path / "translucent.png", np.dstack([rgb[..., ::-1], alpha])),
            "has transparency; flatten it onto a background first")
    keyed = pil_write(tmp_path / "keyed.png", Image.fromarray(rgb), transparency=tuple(int(v) for v in rgb[0, 0]))
    refused(keyed, "has transparency")
    gif = pil_write(tmp_path / "trans.gif", Image.fromarray(rgb).quantize(8), transparency=0)
    refused(gif, "has transparency")


def test_palette_png_is_read_as_its_rgb_conversion(tmp_path, rgb):
    path = pil_write(tmp_path / "palette.png", Image.fromarray(rgb).quantize(32))
    with Image.open(path) as im:
        assert im.mode == "P"
        expected = np.asarray(im.convert("RGB"))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == rgb.shape
    assert np.array_equal(image, expected)
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


def test_cmyk_jpeg_is_refused(tmp_path, rgb):
    path = pil_write(tmp_path / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG")
    refused(path, "CMYK image; convert to RGB")


def test_jpeg_with_side_images_gives_its_primary_image(tmp_path):
    """A JPEG with MPF side images (stereo pair, Ultra HDR gain map) is one photo, not an animation."""
    primary, side = smooth(), smooth(seed=4)
    path = pil_write(tmp_path / "phone.jpg", Image.fromarray(primary), "MPO", save_all=True,
                     append_images=[Image.fromarray(side)], quality=95)
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert np.array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1])


@pytest.mark.parametrize("name,fmt", [("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("anim.png", "PNG"),
                                      ("pages.tif", "TIFF")])
def test_multi_frame_images_are_refused(tmp_path, rgb, name, fmt):
    frames = [Image.fromarray(rgb), Image.fromarray(np.ascontiguousarray(rgb[::-1]))]
    path = pil_write(tmp_path / name, frames[0], fmt, save_all=True, append_images=frames[1:])
    refused(path, "animated/multi-frame image; give one frame")


def test_single_frame_gif_webp_bmp_tiff_are_read(tmp_path, rgb):
    for name in ("one.webp", "one.bmp", "one.tif"):
        lossless = {"lossless": True} if name.endswith(".webp") else {}
        assert np.array_equal(read_image(pil_write(tmp_path / name, Image.fromarray(rgb), **lossless)), rgb)
    palette = Image.fromarray(rgb).quantize(16)
    assert np.array_equal(read_image(pil_write(tmp_path / "one.gif", palette)), np.asarray(palette.convert("RGB")))


def test_small_image_is_refused(tmp_path, rgb):
    refused(cv2_write(tmp_path / "tiny.png", rgb[: MIN_SIDE - 1]), "smaller than")


def test_exif_orientation_is_not_applied(tmp_path):
    image = smooth((32, 64, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    path = pil_write(tmp_path / "rotated.jpg", Image.fromarray(image), "JPEG", exif=exif, quality=95)
    assert read_image(path).shape == (32, 64, 3)


# --- pixel identity --------------------------------------------------------------------------

def test_png_pixels_equal_what_cv2_read(tmp_path, rgb):
    path = cv2_write(tmp_path / "random.png", rgb[..., ::-1])
    image = read_image(path)
    assert image.dtype == np.uint8 and image.flags.c_contiguous and image.flags.writeable
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1])
    assert np.array_equal(image, rgb)


@pytest.mark.parametrize("quality", [50, 90])
def test_jpeg_pixels_match_cv2(tmp_path, quality):
    """Pillow 13 and OpenCV 5.1 both decode with libjpeg-turbo; identical pixels were observed. A
    ±1 difference (other builds, other IDCT) would be tolerable; more would mean a broken decoder."""
    path = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(path), smooth(), [cv2.IMWRITE_JPEG_QUALITY, quality])
    ours = read_image(path).astype(int)
    theirs = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(int)
    assert np.abs(ours - theirs).max() <= 1


# --- caps and non-images ---------------------------------------------------------------------

def test_pixel_cap_is_checked_before_decoding(tmp_path, rgb, monkeypatch):
    def never(self):
        raise AssertionError("decoded an image over the pixel cap")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    path = cv2_write(tmp_path / "normal.png", rgb)
    message = refused(path, "over the 1,000-pixel limit", max_pixels=1000)
    assert "64x48" in message and "--max-pixels" in message
    for side in (9000, 10_000, 20_000):  # under Pillow's warning, between its warning and error, over its error
        big = tmp_path / f"big{side}.png"
        big.write_bytes(png_header_only(side, side))
        refused(big, "over the 67,108,864-pixel limit")


def test_raised_pixel_cap_is_ours_not_pillows(tmp_path):
    """A cap raised past Pillow's own decompression-bomb limit is honoured (the image is refused
    for what it is, here cut short), and Pillow's settings are restored afterwards."""
    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(20_000, 20_000, with_end=False))
    refused(path, "truncated or corrupt image", max_pixels=10**9)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


def test_truncation_is_refused_even_if_someone_turned_it_on(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = cv2_write(tmp_path / "wm.jpg", smooth())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(path, "truncated or corrupt image")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_file_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_IMAGE_BYTES", 1000)
    path = cv2_write(tmp_path / "big.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))
    refused(path, "over the 1000 bytes limit")


def test_non_images_are_refused_without_hanging(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    refused(junk, "not a readable image (unknown format")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(empty, "empty file")
    refused(tmp_path, "is a folder")
    refused(tmp_path / "missing.png", "no such image file")
    refused("/dev/zero", "not a regular file")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    refused(fifo, "not a regular file")
    eps = tmp_path / "ghost.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n")
    refused(eps, "not a readable image")  # never handed to Ghostscript


def test_decode_image_names_its_source(rgb):
    data = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    assert np.array_equal(decode_image(data, "frame 3"), rgb)
    with pytest.raises(InputError, match=r"^frame 3: truncated or corrupt image"):
        decode_image(data[:-30], "frame 3")
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(data, "frame 3", max_pixels=0)


# --- writing ---------------------------------------------------------------------------------

def test_png_round_trip_is_pixel_identical(tmp_path, rgb):
    path = write_image(tmp_path / "out" / "round.png", rgb)
    assert path == tmp_path / "out" / "round.png"
    assert np.array_equal(read_image(path), rgb)


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES + (".PNG",))
def test_every_listed_suffix_writes_a_readable_image(tmp_path, suffix):
    image = smooth((32, 48, 3))
    back = read_image(write_image(tmp_path / f"img{suffix}", image))
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image).mean() < 8


def test_unknown_suffix_is_refused_before_anything_is_written(tmp_path, rgb, monkeypatch):
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: pytest.fail("encoded before checking the suffix"))
    for name, fragment in (("out.xyz", "unsupported image format '.xyz' (use .png, .jpg"),
                           ("out", "unsupported image format (no suffix)")):
        with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            write_image(tmp_path / name, rgb)
        with pytest.raises(InputError, match="unsupported image format"):
            check_image_output(tmp_path / name, force=True)
    assert list(tmp_path.iterdir()) == []


def test_check_image_output(tmp_path):
    existing = tmp_path / "there.png"
    existing.write_bytes(b"old")
    assert check_image_output(tmp_path / "new.png", force=False) == tmp_path / "new.png"
    with pytest.raises(FileExistsError, match="already exists"):
        check_image_output(existing, force=False)
    assert check_image_output(existing, force=True) == existing
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_image_output(tmp_path / "folder.png", force=True)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_leaves_the_old_file_and_no_leftovers(tmp_path, rgb, monkeypatch, failing):
    """The disk fills up after part of the image is written, or the final rename fails."""
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"old image")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(OSError, match=r"keep\.png: cannot write \(No space left on device\)"):
        write_image(existing, rgb)
    monkeypatch.undo()
    assert existing.read_bytes() == b"old image"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_write_validates_the_array(tmp_path, rgb):
    for bad in (rgb.astype(np.float32), rgb[..., 0], np.dstack([rgb, rgb[..., :1]]), rgb.tolist()):
        with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)") as info:
            write_image(tmp_path / "bad.png", bad)
        assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_opencv_log_is_silenced():
    assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_SILENT


def test_write_then_read_through_a_buffer_stays_in_memory(rgb):
    """decode_image works on bytes alone (frame folders, archives): no temporary files."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    assert np.array_equal(decode_image(buffer.getvalue(), "<memory>"), rgb)
