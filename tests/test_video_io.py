"""The video reader is strict and bounded, the writer atomic (image_wm.video.video_io)."""

from __future__ import annotations

import os

import av
import cv2
import numpy as np
import pytest

from image_wm.video.video_io import (VIDEO_SUFFIXES, check_video_output, read_video, write_video)
from provenance.readers import InputError

FRAMES, SIDE = 8, 64


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (FRAMES, SIDE, SIDE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, clip) -> dict[str, bytes]:
    """The bytes of the clip written as each video format."""
    folder = tmp_path_factory.mktemp("videos")
    return {suffix: write_video(folder / f"clip{suffix}", clip).read_bytes() for suffix in (".mp4", ".webm", ".gif")}


def _faststart_mp4(path, clip) -> bytes:
    """An MP4 with its index (moov) before the media, as streaming sites serve them."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path.read_bytes()


def test_round_trips_of_files_and_frame_folders(tmp_path, clip):
    folder = read_video(write_video(tmp_path / "frames", clip))
    assert (folder.frames == clip).all()
    for suffix in (".mp4", ".gif", ".webm", ".mkv", ".mov"):
        video = read_video(write_video(tmp_path / f"clip{suffix}", clip, fps=8))
        assert video.frames.shape == clip.shape and video.frames.dtype == np.uint8
        assert abs(video.fps - 8) < 0.5
    one = read_video(write_video(tmp_path / "one.gif", clip[:1]))  # a 1-frame GIF is a (static) clip
    assert one.frames.shape == (1, SIDE, SIDE, 3)


@pytest.mark.parametrize("name", ["still.png", "still.mp4", "still.gif.webm"])
def test_still_images_are_refused_even_renamed(tmp_path, clip, name):
    ok, png = cv2.imencode(".png", clip[0])
    (tmp_path / name).write_bytes(png.tobytes())
    with pytest.raises(InputError, match=r"an image, not a video \(format png_pipe\)"):
        read_video(tmp_path / name)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".webp"])
def test_other_still_formats_are_refused(tmp_path, clip, suffix):
    ok, data = cv2.imencode(suffix, clip[0])
    (tmp_path / "still.mp4").write_bytes(data.tobytes())
    with pytest.raises(InputError, match=r"an image, not a video \(format \w+_pipe\)"):
        read_video(tmp_path / "still.mp4")


@pytest.mark.parametrize("suffix,fraction", [(".mp4", 0.5), (".mp4", 0.6), (".webm", 0.5), (".webm", 0.95),
                                             (".gif", 0.5), (".gif", 0.95)])
def test_truncated_files_are_refused(tmp_path, videos, suffix, fraction):
    data = videos[suffix]
    (tmp_path / f"cut{suffix}").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match=r"cut\.\w+: (truncated or corrupt|not a readable) video"):
        read_video(tmp_path / f"cut{suffix}")


def test_truncated_faststart_mp4_is_refused_even_at_a_sample_boundary(tmp_path, clip):
    data = _faststart_mp4(tmp_path / "fast.mp4", clip)
    assert read_video(tmp_path / "fast.mp4").frames.shape == clip.shape
    with av.open(str(tmp_path / "fast.mp4")) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    for cut in (int(len(data) * 0.6), ends[3]):  # mid-sample, and exactly between two samples
        (tmp_path / "cut.mp4").write_bytes(data[:cut])
        with pytest.raises(InputError, match="cut.mp4: truncated or corrupt video"):
            read_video(tmp_path / "cut.mp4")


def test_gif_cut_between_frames_is_refused(tmp_path, videos):
    data = videos[".gif"]
    (tmp_path / "clip.gif").write_bytes(data)
    with av.open(str(tmp_path / "clip.gif")) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    (tmp_path / "cut.gif").write_bytes(data[:ends[3]])  # four whole frames, no trailer
    with pytest.raises(InputError, match="cut.gif: truncated or corrupt video .*trailer"):
        read_video(tmp_path / "cut.gif")


def test_frame_and_pixel_caps(tmp_path, clip, videos):
    for suffix, data in videos.items():
        (tmp_path / f"clip{suffix}").write_bytes(data)
        with pytest.raises(InputError, match=r"over the 5-frame limit \(pass --max-frames"):
            read_video(tmp_path / f"clip{suffix}", max_frames=5)
        with pytest.raises(InputError, match=r"64x64 .*over the 1000-pixel limit per frame \(pass --max-pixels"):
            read_video(tmp_path / f"clip{suffix}", max_pixels=1000)
        assert len(read_video(tmp_path / f"clip{suffix}", max_frames=FRAMES, max_pixels=SIDE * SIDE).frames) == FRAMES
    folder = write_video(tmp_path / "frames", clip)
    with pytest.raises(InputError, match=r"frames: folder holds 8 frame files, over the 5-frame limit"):
        read_video(folder, max_frames=5)
    with pytest.raises(InputError, match=r"--max-pixels"):
        read_video(folder, max_pixels=1000)


@pytest.mark.timeout(20)
def test_junk_devices_and_pipes_are_refused_without_hanging(tmp_path):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.webm").write_text("not a video")
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no frames here")
    for bad in ("random.mp4", "empty.mp4", "text.webm", "fifo.mp4", "missing.mp4", "notes"):
        with pytest.raises(InputError, match=rf"^{tmp_path / bad}: "):
            read_video(tmp_path / bad)
    with pytest.raises(InputError, match="^/dev/zero: not a regular file"):
        read_video("/dev/zero")


def test_frame_folder_problems_name_the_folder_or_frame(tmp_path, clip):
    folder = write_video(tmp_path / "frames", clip)
    cv2.imwrite(str(folder / "frame_00008.png"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError, match=r"frames: frames differ in size: frame_00008.png is 32x32"):
        read_video(folder)
    (folder / "frame_00008.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"frame_00008.png: "):
        read_video(folder)


def test_ffmpeg_prints_nothing_for_corrupt_files(tmp_path, videos, capfd):
    for suffix in (".webm", ".gif"):
        data = videos[suffix]
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError):
            read_video(tmp_path / f"cut{suffix}")
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(2).bytes(5000))
    with pytest.raises(InputError):
        read_video(tmp_path / "random.mp4")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert av.logging.get_level() is None  # FFmpeg's log is switched off again afterwards


def test_rewriting_a_frame_folder_leaves_only_the_new_frames(tmp_path, clip):
    old = np.random.default_rng(3).integers(0, 256, (10, SIDE, SIDE, 3), dtype=np.uint8)
    folder = write_video(tmp_path / "frames", old)
    assert len(list(folder.iterdir())) == 10
    with pytest.raises(FileExistsError):
        write_video(folder, clip)
    write_video(folder, clip, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(FRAMES)]
    assert (read_video(folder).frames == clip).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # nothing left aside


def test_unknown_suffix_is_refused_before_writing(tmp_path, clip):
    with pytest.raises(InputError, match=r"clip.avi: unsupported video format '.avi'"):
        write_video(tmp_path / "out" / "clip.avi", clip)
    with pytest.raises(InputError, match="unsupported video format"):
        check_video_output(tmp_path / "clip.png", force=True)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert check_video_output(tmp_path / "clip.MP4", force=False) == tmp_path / "clip.MP4"
    assert check_video_output(tmp_path / "frames", force=False) == tmp_path / "frames"
    assert set(VIDEO_SUFFIXES) >= {".mp4", ".webm", ".gif"}
    (tmp_path / "clip.mp4").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="already exists"):
        check_video_output(tmp_path / "clip.mp4", force=False)


def test_failed_write_leaves_the_old_output_and_no_partial_files(tmp_path, clip, monkeypatch):
    target = write_video(tmp_path / "clip.mp4", clip)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="even frame sizes"):
        write_video(target, clip[:, :63], overwrite=True)
    calls = []

    def failing_from_ndarray(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("encoder died")
        return original(*args, **kwargs)

    original = av.VideoFrame.from_ndarray
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing_from_ndarray)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_video(target, clip[::-1], overwrite=True)  # fails mid-mux, after the temporary file exists
    monkeypatch.undo()
    assert target.read_bytes() == before
    folder = write_video(tmp_path / "frames", clip)
    real_imwrite = cv2.imwrite

    def imwrite_failing_at_frame_2(name, image):
        return False if name.endswith("frame_00002.png") else real_imwrite(name, image)

    monkeypatch.setattr(cv2, "imwrite", imwrite_failing_at_frame_2)
    with pytest.raises(OSError, match=r"frames: cannot write \(PNG encoder failed on frame 2\)"):
        write_video(folder, clip[::-1], overwrite=True)
    monkeypatch.undo()
    assert (read_video(folder).frames == clip).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frames"]


def test_decoded_frames_are_capped_in_total(tmp_path, monkeypatch):
    import image_wm.video.video_io as video_io

    frames = (np.random.default_rng(5).random((6, 32, 32, 3)) * 255).astype(np.uint8)
    clip = write_video(tmp_path / "clip.mp4", frames)
    folder = write_video(tmp_path / "frames", frames)
    monkeypatch.setattr(video_io, "MAX_DECODED_BYTES", 4 * 32 * 32 * 3)
    for path in (clip, folder):
        with pytest.raises(InputError, match="5 frames of 32x32 pass the"):
            read_video(path)
