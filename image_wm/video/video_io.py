"""Read and write videos as uint8 RGB frame arrays ``(F, H, W, 3)``: MP4, WebM, GIF, MKV/MOV, frame folders.

Why PyAV: it bundles FFmpeg, so every container and codec a user will hand the detector
(H.264 MP4 from a phone, VP9 WebM from a browser, GIF from a chat app) decodes the same way
on every machine, and the benchmark can re-encode at a chosen bitrate. Frame folders (PNG or
JPEG files, read in name order) are the lossless interchange format.

Errors are one line and name the file: a missing or undecodable file, a stream with no video
track, or zero frames all raise ``ValueError``; writing never replaces an existing file
unless ``overwrite=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from image_wm.image_io import MIN_SIDE
from provenance.files import check_new_output

VIDEO_SUFFIXES = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
                  ".webm": ("libvpx-vp9", "yuv420p"), ".gif": ("gif", "rgb8")}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FPS = 8.0


@dataclass
class Video:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    fps: float


def _frames_from_folder(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: folder holds no frame images ({', '.join(FRAME_SUFFIXES)})")
    frames = []
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{file}: not a readable image")
        frames.append(image[..., ::-1])
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"{folder}: frames differ in size")
    return np.stack(frames)


def read_video(path: str | Path) -> Video:
    """All frames of a video file or frame folder as uint8 RGB, with its frame rate."""
    import av

    path = Path(path)
    if path.is_dir():
        return Video(_check_size(path, _frames_from_folder(path)), DEFAULT_FPS)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: not a readable video ({exc.__class__.__name__})") from None
    if not frames:
        raise ValueError(f"{path}: video has no frames")
    return Video(_check_size(path, np.stack(frames)), float(rate) if rate else DEFAULT_FPS)


def _check_size(path: Path, frames: np.ndarray) -> np.ndarray:
    if min(frames.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"{path}: frames are {frames.shape[2]}x{frames.shape[1]}, smaller than {MIN_SIDE}x{MIN_SIDE}")
    return frames


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = DEFAULT_FPS, *, bitrate: int | None = None,
                overwrite: bool = False) -> Path:
    """Write frames as a video file (by suffix) or, for a path without suffix, a folder of PNGs.

    ``bitrate`` (bits per second) applies to MP4/WebM/MKV/MOV; without it H.264 uses CRF 18
    (visually lossless), VP9 its default quality.
    """
    import av

    path = Path(path)
    frames = check_frames(frames)
    check_new_output(path, overwrite)
    suffix = path.suffix.lower()
    if not suffix:
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(path / f"frame_{i:05d}.png"), frame[..., ::-1])
        return path
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: unsupported video format {suffix!r} (use {', '.join(VIDEO_SUFFIXES)} or a folder)")
    codec, pixel_format = VIDEO_SUFFIXES[suffix]
    height, width = frames.shape[1:3]
    if pixel_format == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"{suffix} needs even frame sizes, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
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
