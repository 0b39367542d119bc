"""VideoMark on the reference text-to-video pipeline: detection, no false alarms, frame order after
temporal attacks, video files and the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import attacks
from attacks.video import temporal_map
from cli import main
from image_wm.reference import REFERENCE_GUIDANCE, load_text_to_video
from image_wm.video import WatermarkedVideoPipeline
from image_wm.video.video_io import read_video, write_video
from provenance.keys import WatermarkKey

PROMPT = "a small red circle moving right on a plain white background"
STEPS, FRAMES = 10, 8


@pytest.fixture(scope="module")
def pipe():
    return load_text_to_video("cpu")


@pytest.fixture(scope="module")
def marked(pipe):
    wm = WatermarkedVideoPipeline(pipe, WatermarkKey.from_seed("video-test"), guidance=REFERENCE_GUIDANCE)
    out = wm(PROMPT, num_frames=FRAMES, seed=3, num_inference_steps=STEPS)
    return wm, out.videos[0], out.records[0]


def test_watermarked_clip_is_detected_and_placed(marked):
    wm, clip, record = marked
    result = wm.detect(clip, fpr=1e-6, inversion_steps=STEPS, start=record.start_offset,
                       expected_frames=list(range(FRAMES)))
    assert result.detected and result.p_value < 1e-6
    assert result.details["frames_decoded"] >= FRAMES // 2
    assert result.details["frame_accuracy"] >= 0.5 and result.bit_accuracy >= 0.75


def test_plain_clip_and_wrong_key_are_not_detected(pipe, marked):
    wm, clip, _ = marked
    plain = wm.run_pipeline([PROMPT], torch.randn(wm.latent_shape(FRAMES), generator=torch.Generator().manual_seed(3)),
                            STEPS, REFERENCE_GUIDANCE)[0]
    assert not wm.detect(plain, fpr=0.01, inversion_steps=STEPS).detected
    other = WatermarkedVideoPipeline(pipe, WatermarkKey.from_seed("another key"))
    assert not other.detect(clip, fpr=0.01, inversion_steps=STEPS).detected


def test_a_mirrored_clip_is_found_with_resync(marked):
    """Every frame mirrored: lost as received, found with the fast search, the mirror named."""
    wm, clip, record = marked
    flipped = np.ascontiguousarray(clip[:, :, ::-1])
    assert not wm.detect(flipped, fpr=1e-3, inversion_steps=STEPS, start=record.start_offset).detected
    result = wm.detect(flipped, fpr=1e-3, inversion_steps=STEPS, start=record.start_offset, resync="fast")
    assert result.detected and result.details["resync"] == {**result.details["resync"], "found": "mirrored",
                                                            "candidates": 4}


@pytest.mark.parametrize("name,strength", [("frame-swap", 2), ("frame-drop", 1 / 8), ("frame-insert", 1 / 8),
                                           ("reverse", 1.0)])
def test_frame_order_is_recovered_after_temporal_attacks(marked, name, strength):
    wm, clip, record = marked
    order = temporal_map(name, strength, 0, FRAMES)
    result = wm.detect(attacks.get(name)(clip, strength, seed=0), fpr=1e-6, inversion_steps=STEPS,
                       start=record.start_offset, expected_frames=order)
    assert result.detected
    recovered = np.array(result.details["frame_order"])
    placed = recovered >= 0
    assert placed.sum() >= len(order) // 2
    assert (recovered[placed] == np.array(order)[placed]).all()  # every placed frame is placed right


def test_video_files_round_trip_and_bad_files_fail_cleanly(tmp_path):
    clip = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    assert (read_video(write_video(tmp_path / "frames", clip)).frames == clip).all()
    for suffix in (".mp4", ".webm", ".gif"):
        video = read_video(write_video(tmp_path / f"clip{suffix}", clip, fps=8))
        assert video.frames.shape == clip.shape and abs(video.fps - 8) < 0.5
    with pytest.raises(FileExistsError):
        write_video(tmp_path / "clip.mp4", clip)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.webm").write_text("not a video")
    for bad in ("empty.mp4", "text.webm", "missing.mp4"):
        with pytest.raises(ValueError, match=bad):
            read_video(tmp_path / bad)


def test_cli_generates_and_detects_with_per_frame_alignment(tmp_path):
    key = tmp_path / "key.json"
    WatermarkKey.from_seed("cli-video").save(key)
    out = tmp_path / "clip.mp4"
    made = CliRunner().invoke(main, ["video", "generate", "--key", str(key), "--prompt", PROMPT, "--frames", "4",
                                     "--steps", "6", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["start_offset"] >= 0
    found = CliRunner().invoke(main, ["video", "detect", "--key", str(key), "--steps", "6", "--json", str(out)])
    assert found.exit_code == 0, found.output
    row = json.loads(found.output)
    assert row["scheme"] == "videomark" and len(row["details"]["per_frame"]) == 4
    (tmp_path / "bad.mp4").write_text("x")
    bad = CliRunner().invoke(main, ["video", "detect", "--key", str(key), str(tmp_path / "bad.mp4")])
    assert bad.exit_code == 2 and bad.output.startswith("error:") and len(bad.output.strip().splitlines()) == 1
