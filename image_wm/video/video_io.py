"""Read and write videos as uint8 RGB frame arrays ``(F, H, W, 3)``: MP4, WebM, GIF, MKV/MOV, frame folders.

Why PyAV: it bundles FFmpeg, so every container and codec a user will hand the detector
(H.264 MP4 from a phone, VP9 WebM from a browser, GIF from a chat app) decodes the same way
on every machine, and the benchmark can re-encode at a chosen bitrate. Frame folders (PNG or
JPEG files, read in name order) are the lossless interchange format.

Reading is strict and bounded (see ``read_video``): a still image, a truncated or corrupt
file, a device or pipe, or a clip over the frame, pixel or byte caps raises ``InputError``
(a ``ValueError``) whose one-line message names the file; nothing is ever scored from a
partial decode, and FFmpeg never prints to the terminal.

Writing (``write_video``) never replaces an existing output unless ``overwrite=True``, and is
atomic: a video file is written to a temporary sibling and renamed into place, a frame folder
is built aside and swapped in whole, so a failed write leaves the old output untouched and an
overwritten frame folder never mixes old frames with new ones. ``check_video_output`` runs
the same output checks alone, so a command can refuse a bad ``--out`` before loading a model.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from image_wm.image_io import MAX_IMAGE_PIXELS, MIN_SIDE, read_image
from provenance.files import atomic_file, atomic_folder, check_new_output
from provenance.readers import InputError, format_size, open_regular_file

VIDEO_SUFFIXES = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
                  ".webm": ("libvpx-vp9", "yuv420p"), ".gif": ("gif", "rgb8")}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FPS = 8.0
MAX_VIDEO_FRAMES = 2000
MAX_VIDEO_PIXELS = MAX_IMAGE_PIXELS  # per frame, as for an image
MAX_VIDEO_BYTES = 4 << 30
MAX_DECODED_BYTES = 4 << 30  # all frames of one clip, as uint8 RGB in memory

# FFmpeg demuxers that read one still image (``png_pipe``, ``jpeg_pipe``, ... and ``image2``):
# every ``*_pipe`` demuxer is one of these. GIF (``gif``) and animated PNG (``apng``) are clips.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe", "ico", "alias_pix", "brender_pix", "imagepipe"})
# Decoder checks: CRCs and bitstream/buffer overreads are errors, and ``explode`` makes the
# decoders that support it fail the packet instead of concealing the damage.
_ERR_DETECT = "crccheck+bitstream+buffer+explode"
_GIF_TRAILER = 0x3B
_FFMPEG_OVERSIZE = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")
# The demuxer guessed the duration from the bitrate: it is no evidence of the real length.
_ESTIMATED_DURATION = "Estimating duration from bitrate"

# PyAV hands FFmpeg's messages to the ``libav`` loggers while we listen; a handler here keeps
# Python's last-resort handler from printing them when the application configured no logging.
logging.getLogger("libav").addHandler(logging.NullHandler())


@dataclass
class Video:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    fps: float


def _raise_hint(option: str) -> str:
    return f"pass {option} to raise the limit"


def _too_many_frames(source: object, what: str, max_frames: int) -> InputError:
    """``what`` says how many there are: "header declares 9000 frames", "more than 2000 frames"."""
    return InputError(source, f"{what}, over the {max_frames}-frame limit ({_raise_hint('--max-frames')})")


def _too_many_pixels(source: object, width: int, height: int, max_pixels: int) -> InputError:
    return InputError(source, f"frames are {width}x{height} ({width * height} pixels), over the {max_pixels}-pixel "
                              f"limit per frame ({_raise_hint('--max-pixels')})")


def _check_decoded(source: object, count: int, width: int, height: int) -> None:
    """Refuse a clip whose ``count`` frames of ``width`` x ``height`` would pass ``MAX_DECODED_BYTES``."""
    if count * width * height * 3 > MAX_DECODED_BYTES:
        raise InputError(source, f"{count} frames of {width}x{height} pass the {format_size(MAX_DECODED_BYTES)} "
                                 f"limit on decoded frames (give fewer frames, or smaller ones)")


def _frames_from_folder(folder: Path, max_frames: int, max_pixels: int) -> np.ndarray:
    """The frame files of ``folder`` (``FRAME_SUFFIXES``, hidden files skipped) in name order, each
    read with the strict image reader; the count is capped before any frame is read."""
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(folder, f"cannot list folder ({exc.strerror or exc.__class__.__name__})") from None
    if not files:
        raise InputError(folder, f"folder holds no frame images ({', '.join(FRAME_SUFFIXES)}), so it is not a video")
    if len(files) > max_frames:
        raise _too_many_frames(folder, f"folder holds {len(files)} frame files", max_frames)
    frames: list[np.ndarray] = []
    for file in files:
        try:
            frame = read_image(file, max_pixels=max_pixels)
        except InputError:
            raise
        except (ValueError, OSError) as exc:  # name the frame file whatever the reader raised
            raise InputError(file, str(exc).removeprefix(f"{file}: ")) from None
        _check_decoded(folder, len(frames) + 1, frame.shape[1], frame.shape[0])
        if frames and frame.shape != frames[0].shape:
            raise InputError(folder, f"frames differ in size: {file.name} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"{files[0].name} is {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(frame)
    return np.stack(frames)


def read_video(path: str | Path, *, max_frames: int = MAX_VIDEO_FRAMES, max_pixels: int = MAX_VIDEO_PIXELS) -> Video:
    """All frames of a video file or frame folder as uint8 RGB, with its frame rate.

    Refused with ``InputError`` (one line naming the file):

    * anything but a regular file of at most ``MAX_VIDEO_BYTES`` or a folder (a FIFO or device
      is refused before it is read, so it cannot hang the reader);
    * a still image, even renamed ``.mp4``: the container is sniffed, and FFmpeg's single-image
      demuxers (every ``*_pipe``, ``image2``, ``ico``, ...) mean "an image, not a video".
      GIF and animated PNG are clip formats and accepted with any number of frames, one
      included: a 1-frame GIF is a legitimate (if static) clip and is read as one;
    * a file with no video stream (an audio file whose only picture is its cover art included);
    * more than ``max_frames`` frames or more than ``max_pixels`` pixels in a frame: checked
      from the header before decoding (declared frame count, coded size), and again while
      decoding, which stops at the first frame over a cap, so no more than ``max_frames``
      frames are ever held;
    * truncated or corrupt media. The rule: decoders run with
      ``err_detect=crccheck+bitstream+buffer+explode`` (a damaged packet is an error where the
      decoder supports it, not a concealed frame), and the file is refused if FFmpeg logs an
      error (level ERROR or worse) while opening, demuxing or decoding, if a demuxer or decoder
      call fails, or if a packet or frame carries FFmpeg's corrupt flag. On top of that:
      MP4/MOV: every sample the header's index lists must lie inside the file (a faststart
      file cut exactly between two samples is otherwise read silently as a shorter clip;
      with the index at the end a cut file does not open at all); GIF: the last packet must
      end with the GIF trailer byte 0x3B (a GIF cut exactly between two frames is otherwise
      complete; a cut inside a frame is FFmpeg's "LZW decode failed"); every container but
      MP4/MOV (whose edit lists may drop samples): fewer packets than the header's declared
      frame count; every container: a decode that ends more than half a frame interval before
      the declared duration (the stream's, or else the container's when the video is its only
      stream and FFmpeg did not estimate it from the bitrate), the backstop for a WebM/MKV cut
      at a cluster boundary (FFmpeg reports a cut inside a cluster, "File ended prematurely").

    Not caught: damage that decodes without any error FFmpeg reports (flipped bits inside a
    frame's coded data for a codec without checksums decode to wrong pixels), a WebM/MKV
    without a duration in its header and without a segment size cut at a cluster boundary,
    frames removed from a stream whose index and timestamps were rewritten to match, and
    damage inside a frame folder's images beyond what the image reader detects. Refused
    although playable: a GIF with bytes after its trailer, and a stream on which FFmpeg logs
    errors it conceals (a broadcast recording starting mid-GOP, say). FFmpeg's log is
    process-wide, so two files decoded at once in different threads can see each other's
    messages from decoder worker threads: a good file can then be refused, never a bad one
    passed. Memory: at most ``MAX_DECODED_BYTES`` of frames are held (a longer or larger clip is
    refused as soon as its frames pass it).

    ``fps`` is the stream's average rate (``DEFAULT_FPS`` for frame folders or when unknown).
    """
    if max_frames < 1 or max_pixels < 1:
        raise ValueError("max_frames and max_pixels must be positive")
    path = Path(path)
    if path.is_dir():
        return Video(_check_size(path, _frames_from_folder(path, max_frames, max_pixels)), DEFAULT_FPS)
    with open_regular_file(path, MAX_VIDEO_BYTES, "video file") as handle:
        size = _file_size(handle)
        frames, rate = _decode_file(path, handle, size, max_frames, max_pixels)
    return Video(_check_size(path, frames), rate)


def _file_size(handle) -> int:
    return os.fstat(handle.fileno()).st_size


# FFmpeg's log is global: readers in several threads share one switch-on, counted here.
_log_lock = threading.Lock()
_log_users = 0
_log_saved: tuple[int | None, bool] = (None, True)


@contextlib.contextmanager
def _ffmpeg_messages() -> Iterator[tuple[list, list]]:
    """FFmpeg's messages (``(level, source, text)``) while the block runs: those from this thread,
    and those from decoder worker threads. Nothing reaches the terminal."""
    import av

    global _log_users, _log_saved
    with _log_lock:
        if _log_users == 0:
            _log_saved = (av.logging.get_level(), av.logging.get_skip_repeated())
            level = _log_saved[0]
            # A repeated message is otherwise held back and reported later, into another file's log.
            av.logging.set_skip_repeated(False)
            if level is None or level < av.logging.WARNING:
                av.logging.set_level(av.logging.WARNING)
        _log_users += 1
    try:
        with av.logging.Capture(local=True) as mine, av.logging.Capture(local=False) as workers:
            yield mine, workers
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_log_saved[0])
                av.logging.set_skip_repeated(_log_saved[1])


def _first_error(*logs: list) -> str | None:
    import av

    for log in logs:
        for level, source, text in log:
            if level <= av.logging.ERROR:
                text = " ".join(text.split())  # one line
                return f"{source}: {text}" if source else text
    return None


def _corrupt(path: Path, detail: str) -> InputError:
    return InputError(path, f"truncated or corrupt video ({detail})")


def _logged_problem(path: Path, logs: tuple[list, list], max_pixels: int) -> InputError | None:
    """The first FFmpeg error as an ``InputError``: FFmpeg's own pixel cap (set to ours, so a frame
    larger than the header said is stopped before it is allocated) as the pixel-limit message."""
    error = _first_error(*logs)
    if error is None:
        return None
    oversize = _FFMPEG_OVERSIZE.search(error)
    if oversize:
        return _too_many_pixels(path, int(oversize[1]), int(oversize[2]), max_pixels)
    return _corrupt(path, error)


def _decode_file(path: Path, handle, size: int, max_frames: int, max_pixels: int) -> tuple[np.ndarray, float]:
    import av

    with _ffmpeg_messages() as logs:
        try:
            return _decode(av, path, handle, size, max_frames, max_pixels, logs)
        except InputError:
            raise
        except av.FFmpegError as exc:
            problem = _logged_problem(path, logs, max_pixels)
            if problem is not None and problem.problem.startswith("frames are"):
                raise problem from None
            detail = _first_error(*logs) or getattr(exc, "strerror", None) or exc.__class__.__name__
            raise InputError(path, f"not a readable video ({detail})") from None
        except (UnicodeDecodeError, EOFError, OSError, RuntimeError, MemoryError) as exc:
            raise InputError(path, f"not a readable video ({exc.__class__.__name__})") from None


def _decode(av, path: Path, handle, size: int, max_frames: int, max_pixels: int,
            logs: tuple[list, list]) -> tuple[np.ndarray, float]:
    codec_options = {"err_detect": _ERR_DETECT, "max_pixels": str(max_pixels)}
    with av.open(handle, mode="r", options={"max_pixels": str(max_pixels)}, metadata_errors="replace") as container:
        kind = container.format.name
        if kind.endswith("_pipe") or kind in _IMAGE_FORMATS:
            raise InputError(path, f"an image, not a video (format {kind})")
        streams = [s for s in container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise InputError(path, "no video stream" + (" (only a cover picture)" if container.streams.video else ""))
        stream = streams[0]
        context = stream.codec_context
        if context is None:
            raise InputError(path, "no decoder for its video codec")
        if context.width * context.height > max_pixels:
            raise _too_many_pixels(path, context.width, context.height, max_pixels)
        problem = _logged_problem(path, logs, max_pixels)
        if problem:
            raise problem
        if stream.frames > max_frames:
            raise _too_many_frames(path, f"header declares {stream.frames} frames", max_frames)
        is_mov = kind.startswith("mov,")
        if is_mov:
            _check_mov_index(path, stream, size)
        context.options = codec_options
        rate = stream.average_rate or stream.guessed_rate
        interval = 1 / float(rate) if rate else 1 / DEFAULT_FPS
        frames: list[np.ndarray] = []
        packets, last_packet, decoded_end = 0, b"", None
        for packet in container.demux(stream):
            if packet.is_corrupt:
                raise _corrupt(path, f"packet {packets} is damaged or cut short")
            if packet.size:
                packets += 1
                if kind == "gif":
                    last_packet = bytes(packet)
            for frame in packet.decode():
                if frame.is_corrupt:
                    raise _corrupt(path, f"frame {len(frames)} decoded with errors")
                if frame.width * frame.height > max_pixels:
                    raise _too_many_pixels(path, frame.width, frame.height, max_pixels)
                if len(frames) >= max_frames:
                    raise _too_many_frames(path, f"more than {max_frames} frames", max_frames)
                _check_decoded(path, len(frames) + 1, frame.width, frame.height)
                array = frame.to_ndarray(format="rgb24")
                if frames and array.shape != frames[0].shape:
                    raise InputError(path, f"frame size changes mid-stream ({frames[0].shape[1]}x{frames[0].shape[0]} "
                                           f"to {array.shape[1]}x{array.shape[0]})")
                frames.append(array)
                if frame.pts is not None and frame.time_base:
                    end = float(frame.pts * frame.time_base) + (float(frame.duration * frame.time_base)
                                                                if frame.duration else interval)
                    decoded_end = end if decoded_end is None else max(decoded_end, end)
            problem = _logged_problem(path, logs, max_pixels)
            if problem:
                raise problem
        problem = _logged_problem(path, logs, max_pixels)
        if problem:
            raise problem
        if not frames:
            raise InputError(path, "video has no frames")
        if not is_mov and stream.frames and packets < stream.frames:
            raise _corrupt(path, f"{packets} of the {stream.frames} frames the header declares")
        if kind == "gif" and (not last_packet or last_packet[-1] != _GIF_TRAILER):
            raise _corrupt(path, "the GIF ends without its trailer")
        declared_end = _declared_end(container, stream, logs)
        if declared_end is not None and decoded_end is not None and decoded_end < declared_end - interval / 2 - 0.002:
            raise _corrupt(path, f"frames end at {decoded_end:.3f} s of the {declared_end:.3f} s the header declares")
    return np.stack(frames), float(rate) if rate else DEFAULT_FPS


def _check_mov_index(path: Path, stream, size: int) -> None:
    """Every sample the MP4/MOV sample table lists must lie inside the file."""
    try:
        entries = stream.index_entries
        end = max((entry.pos + entry.size for entry in entries if entry.pos >= 0), default=0)
    except (AttributeError, TypeError):  # a PyAV without index access
        return
    if end > size:
        raise _corrupt(path, f"the header indexes {format_size(end)} of media, the file holds {format_size(size)}")


def _declared_end(container, stream, logs: tuple[list, list]) -> float | None:
    """Where the header says the video stream ends, in seconds; None when it does not say."""
    if stream.duration and stream.time_base:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    estimated = any(_ESTIMATED_DURATION in text for log in logs for _, _, text in log)
    if len(container.streams) == 1 and container.duration and not estimated:
        return ((container.start_time or 0) + container.duration) / 1_000_000
    return None


def _check_size(path: Path, frames: np.ndarray) -> np.ndarray:
    if min(frames.shape[1:3]) < MIN_SIDE:
        raise InputError(path, f"frames are {frames.shape[2]}x{frames.shape[1]}, smaller than {MIN_SIDE}x{MIN_SIDE}")
    return frames


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}")
    return frames


def check_video_output(path: str | Path, force: bool) -> Path:
    """``path`` as a Path if ``write_video`` may write it: a known video suffix (``VIDEO_SUFFIXES``)
    or no suffix (a folder of PNG frames); an existing output only with ``force``.

    Raises ``InputError`` for an unknown suffix and ``FileExistsError`` for an existing output,
    before anything is written; commands call it before loading a model.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in VIDEO_SUFFIXES:
        raise InputError(path, f"unsupported video format {suffix!r} (use {', '.join(VIDEO_SUFFIXES)}, "
                               f"or a path without suffix for a folder of PNG frames)")
    return check_new_output(path, force)


def write_video(path: str | Path, frames: np.ndarray, fps: float = DEFAULT_FPS, *, bitrate: int | None = None,
                overwrite: bool = False) -> Path:
    """Write frames as a video file (by suffix) or, for a path without suffix, a folder of PNGs.

    ``bitrate`` (bits per second) applies to MP4/WebM/MKV/MOV; without it H.264 uses CRF 18
    (visually lossless), VP9 its default quality. The output appears whole or not at all: a
    file is muxed into a temporary sibling (``.<name>.<random>.partial<suffix>``) and renamed
    over ``path``; a folder is built as a temporary sibling and swapped in for the old one whole
    (its old frames are deleted, never mixed with new ones). A failure removes the temporary.
    """
    import av

    path = check_video_output(path, overwrite)
    frames = check_frames(frames)
    suffix = path.suffix.lower()
    if not suffix:
        with atomic_folder(path) as building:
            for i, frame in enumerate(frames):
                if not cv2.imwrite(str(building / f"frame_{i:05d}.png"), np.ascontiguousarray(frame[..., ::-1])):
                    raise OSError(errno.EIO, f"PNG encoder failed on frame {i}")
        return path
    codec, pixel_format = VIDEO_SUFFIXES[suffix]
    height, width = frames.shape[1:3]
    if pixel_format == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"{suffix} needs even frame sizes, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_file(path) as temporary:
        with av.open(str(temporary), mode="w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
            if bitrate is not None and codec != "gif":
                stream.bit_rate = int(bitrate)
            elif codec == "libx264":
                stream.options = {"crf": "18"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
    return path
