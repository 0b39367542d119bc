"""``provenance video generate|detect|sign|verify``: VideoMark and Content Credentials from the command line.

Registered on the top-level ``provenance`` group (``cli.py``), whose error handling turns bad
input (unreadable or zero-length videos, tiny frames, wrong key files, an image model folder
given for a video model) into a one-line error with exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import click

from image_wm.cli import ModelChoice, guidance_option, max_pixels_option, model_options, resync_option, steps_option
from image_wm.schemes.base import DEFAULT_FPR
from image_wm.video.pipeline import WatermarkedVideoPipeline
from image_wm.video.video_io import MAX_VIDEO_FRAMES, check_video_output, read_video, write_video
from provenance import c2pa_cli
from provenance.cli_support import FiniteFloatRange, attempt, detect_outcomes, report
from provenance.keys import WatermarkKey
from provenance.readers import InputError
from provenance.result import DetectionResult


def _load_pipeline(choice: ModelChoice, key_file: str) -> WatermarkedVideoPipeline:
    key = WatermarkKey.load(key_file)
    model = choice.load("text-to-video")
    return WatermarkedVideoPipeline(model.pipe, key, model_name=model.name, guidance=model.guidance)


def _detector(key_file: str, choice: ModelChoice, steps: int, start: int | None, fpr: float,
              resync: str) -> Callable[[list], list[DetectionResult]]:
    """VideoMark detection for clips already read (bad input is refused before the model loads)."""
    pipeline = _load_pipeline(choice, key_file)
    return lambda clips: [pipeline.detect(clip, fpr=fpr, inversion_steps=steps, start=start, resync=resync)
                          for clip in clips]


def _read_clips(paths: Sequence[str], max_frames: int, max_pixels: int) -> list[tuple[str, object]]:
    return [(path, attempt(path, lambda path=path: read_video(path, max_frames=max_frames, max_pixels=max_pixels).frames))
            for path in paths]


_fpr_option = click.option("--fpr", default=DEFAULT_FPR, show_default=True,
                           type=FiniteFloatRange(1e-12, 0.5, min_open=True))
_start_option = click.option("--start", default=None, type=click.IntRange(0),
                             help="Start offset from the generation record, if known.")
_max_frames_option = click.option("--max-frames", default=MAX_VIDEO_FRAMES, show_default=True,
                                  type=click.IntRange(1, 10**7), help="Refuse videos with more frames than this.")


@click.group()
def video() -> None:
    """VideoMark video watermarks (frame-aligned PRC with temporal matching)."""


@video.command("generate")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@click.option("--prompt", required=True, help="Text prompt.")
@click.option("--frames", default=16, show_default=True, type=click.IntRange(1, 500), help="Frames to generate.")
@click.option("--fps", default=8.0, show_default=True, type=FiniteFloatRange(0.1, 240), help="Frame rate of the file.")
@model_options(video=True)
@click.option("--steps", default=25, show_default=True, type=click.IntRange(1, 1000))
@guidance_option
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--out", required=True, type=click.Path(),
              help="Video file (.mp4, .webm, .gif, .mkv, .mov) or a path without suffix for a folder of PNG frames.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def video_generate(key_file, prompt, frames, fps, choice, steps, guidance, seed, out, force):
    """Generate one watermarked clip; prints its generation record (with the start offset) as JSON."""
    if not prompt.strip():
        raise InputError("--prompt", "empty prompt")
    out_path = check_video_output(out, force)
    pipeline = _load_pipeline(choice, key_file)
    result = pipeline(prompt, num_frames=frames, seed=seed, num_inference_steps=steps, guidance_scale=guidance)
    write_video(out_path, result.videos[0], fps, overwrite=force)
    click.echo(json.dumps({"video": str(out_path), **result.records[0].to_dict()}))


@video.command("detect")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@model_options(video=True)
@steps_option
@_start_option
@_fpr_option
@resync_option
@_max_frames_option
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video, with the per-frame alignment.")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
def video_detect(key_file, choice, steps, start, fpr, resync, max_frames, max_pixels, as_json, videos):
    """Test VIDEOS (files or frame folders) for the watermark and recover their frame order. Every
    readable video gets a verdict; an unreadable one gets an error line and no verdict (exit 2)."""
    def describe(name: str, result: DetectionResult) -> str:
        return (f"{name}: {result.summary()}  frames decoded {result.details['frames_decoded']}/"
                f"{result.details['frames']}, order {result.details['frame_order']}")

    outcomes = detect_outcomes(_read_clips(videos, max_frames, max_pixels),
                               lambda: _detector(key_file, choice, steps, start, fpr, resync))
    report(outcomes, as_json, describe)


@video.command("sign")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@c2pa_cli.signing_options
@model_options(video=True)
@steps_option
@_start_option
@_fpr_option
@resync_option
@_max_frames_option
@max_pixels_option
@click.argument("video_file", type=click.Path(dir_okay=False))
def video_sign(key_file, chain_file, private_key_file, alg, choice, steps, start, fpr, resync, max_frames, max_pixels, out,
               force, video_file):
    """Write a copy of the MP4 VIDEO_FILE with signed Content Credentials (C2PA) that name its watermark.

    The watermark is detected first, and the command refuses (exit 2) when it is not found at
    --fpr. The frames are not changed."""
    out_path, signer = c2pa_cli.prepare_signing(video_file, out, force, chain_file, private_key_file, alg)
    clip = read_video(video_file, max_frames=max_frames, max_pixels=max_pixels).frames
    c2pa_cli.sign(video_file, out_path, signer, lambda: _detector(key_file, choice, steps, start, fpr, resync)([clip])[0])


@video.command("verify", help=c2pa_cli.verify_help("VIDEOS", "--key"))
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False),
              help="Key file: also test the watermark.")
@c2pa_cli.trust_option
@model_options(video=True)
@steps_option
@_start_option
@_fpr_option
@resync_option
@_max_frames_option
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video.")
@click.argument("videos", nargs=-1, required=True, type=click.Path(dir_okay=False))
def video_verify(key_file, trust_anchors, choice, steps, start, fpr, resync, max_frames, max_pixels, as_json, videos):
    detect = (lambda: _detector(key_file, choice, steps, start, fpr, resync)) if key_file else None
    c2pa_cli.verify(_read_clips(videos, max_frames, max_pixels), trust_anchors, detect, as_json)
