"""VideoMark on the reference text-to-video model: accuracy under temporal attacks, cost.

Run: ``.venv/bin/python benchmarks/video.py [--n 50] [--frames 8]``.
Generates ``n`` watermarked clips (25 steps, the reference guidance) from held-out procedural
video captions, plus ``n`` unwatermarked clips of the same prompts and seeds, and reports:
- detection rate at FPR 1e-6 and 1e-2, the empirical FPR on the unwatermarked clips;
- bit accuracy (an undecoded frame counts as half its bits right) and frame accuracy (recovered
  original index == true index) on clean clips, under every temporal attack of
  ``attacks.video`` (``TEMPORAL``: one edit each), and after MP4 (H.264) re-encoding at two bitrates;
- detection time per frame against DDIM inversion steps;
- generation overhead: the time to draw the watermarked latents over the pipeline's time.
Every clip is inverted as received (its frames in their received order). Writes the "Video
watermarks (VideoMark)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import attacks  # noqa: E402
from attacks.video import temporal_map  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from image_wm import scenes  # noqa: E402
from image_wm.pipeline import DEFAULT_STEPS, initial_noise  # noqa: E402
from image_wm.reference import REFERENCE_GUIDANCE, load_text_to_video  # noqa: E402
from image_wm.video import WatermarkedVideoPipeline  # noqa: E402
from image_wm.video.video_io import read_video, write_video  # noqa: E402
from provenance.keys import WatermarkKey  # noqa: E402

HELD_OUT_SEED = 8_000_000
# one edit each on an 8-frame clip (the registry's defaults are sized for VideoMark's 16 frames)
TEMPORAL = {"frame-drop": 1 / 8, "frame-insert": 1 / 8, "frame-duplicate": 1 / 8, "frame-swap": 2, "reverse": 1.0,
            "clip-crop": 0.25, "frame-rate": 0.5}
BITRATES = (200_000, 50_000)  # bits/s for 64x64 at 8 fps: high and low quality H.264
STEP_COUNTS = (5, 10, 25, 50)


def mp4_round_trip(clip: np.ndarray, bitrate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        return read_video(write_video(Path(folder) / "clip.mp4", clip, bitrate=bitrate)).frames


def variants(clip: np.ndarray, seed: int):
    """(name, attacked clip, true original index of each received frame)."""
    yield "clean", clip, list(range(len(clip)))
    for name, strength in TEMPORAL.items():
        yield (f"{name} {strength:g}", attacks.get(name)(clip, strength, seed=seed),
               temporal_map(name, strength, seed, len(clip)))
    for bitrate in BITRATES:
        yield f"MP4 {bitrate // 1000} kbit/s", mp4_round_trip(clip, bitrate), list(range(len(clip)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--inversion-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--n-steps", type=int, default=4, help="clips for the inversion-steps table")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = load_text_to_video("cpu")
    wm = WatermarkedVideoPipeline(pipe, WatermarkKey.from_seed("benchmark-video"), model_name="reference",
                                  guidance=REFERENCE_GUIDANCE)
    prompts = scenes.generate_videos(args.n, HELD_OUT_SEED, frames=2)[1]
    rows: dict[str, list[tuple[bool, bool, float, float]]] = {}
    plain_p, gen_s, latent_s, examples = [], 0.0, 0.0, []
    for i, prompt in enumerate(tqdm(prompts, desc="clips")):
        seed = HELD_OUT_SEED + i
        t0 = time.perf_counter()
        latents, (start,) = wm.scheme.initial_latents(wm.latent_shape(args.frames), wm.key,
                                                       torch.Generator().manual_seed(seed))
        latent_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        clip = wm.run_pipeline([prompt], latents, DEFAULT_STEPS, REFERENCE_GUIDANCE)[0]
        gen_s += time.perf_counter() - t0
        plain = wm.run_pipeline([prompt], initial_noise(wm.latent_shape(args.frames), [seed]), DEFAULT_STEPS,
                                REFERENCE_GUIDANCE)[0]
        plain_p.append(wm.detect(plain, fpr=1e-2, inversion_steps=args.inversion_steps).p_value)
        for name, attacked, order in variants(clip, seed):
            r = wm.detect(attacked, fpr=1e-6, inversion_steps=args.inversion_steps, start=start, expected_frames=order)
            rows.setdefault(name, []).append((r.p_value <= 1e-6, r.p_value <= 1e-2, r.details["bit_accuracy"],
                                              r.details["frame_accuracy"]))
        if i < args.n_steps:
            examples.append(clip)
        print(f"clip {i}: " + ", ".join(f"{k} {v[-1][2]:.2f}/{v[-1][3]:.2f}" for k, v in rows.items()), flush=True)

    timing = []
    for steps in STEP_COUNTS:
        t0 = time.perf_counter()
        found = [wm.detect(clip, fpr=1e-6, inversion_steps=steps).detected for clip in examples]
        per_frame = (time.perf_counter() - t0) / (len(examples) * args.frames)
        timing.append(f"| {steps} | {per_frame * 1e3:.0f} | {np.mean(found):.2f} |")

    table = "\n".join(
        f"| {name} | {np.mean([r[0] for r in v]):.2f} | {np.mean([r[1] for r in v]):.2f} | "
        f"{np.mean([r[2] for r in v]):.3f} | {np.mean([r[3] for r in v]):.3f} |" for name, v in rows.items())
    plain_p = np.array(plain_p)
    body = (
        f"`python benchmarks/video.py --n {args.n} --frames {args.frames}`: reference text-to-video model, "
        f"{args.frames}-frame 64x64 clips, 25 generation steps, {args.inversion_steps} inversion steps, one key, "
        f"{args.n} held-out prompts; VideoMark with 16-bit frame messages and a 500-message sequence. "
        "Temporal attacks at the strengths shown (on 8 frames: one frame dropped / inserted / duplicated, "
        "two adjacent swaps at i = 1 and 5, whole-clip reversal, a quarter of the clip cut, half the frame rate).\n\n"
        "| condition | detected at 1e-6 | detected at 1e-2 | bit accuracy | frame accuracy |\n|---|---|---|---|---|\n"
        + table + "\n\n"
        f"Unwatermarked clips of the same prompts and seeds: empirical FPR at 1e-2 = {np.mean(plain_p <= 1e-2):.2f} "
        f"(smallest p {plain_p.min():.2g}).\n\n"
        f"Detection time per frame ({args.threads} torch thread(s), CPU) against inversion steps, on "
        f"{len(examples)} clean clips:\n\n| inversion steps | ms per frame | detected at 1e-6 |\n|---|---|---|\n"
        + "\n".join(timing) + "\n\n"
        f"Generation overhead: drawing the watermarked latents took {latent_s / gen_s * 100:.2f}% of the "
        f"pipeline's time ({latent_s / args.n * 1e3:.0f} ms per clip).\n\n"
        "Against the published claim (bit accuracy near 1.0 unattacked at 512 bits per frame on ModelScope): "
        "a ModelScope frame latent has 4x64x64 = 16,384 entries, the reference model's 4x16x16 = 1,024, so a "
        "frame here carries a 16-bit message and spends the rest of the code on parity checks; and inversion "
        "of the reference video model recovers only part of the latent signs (docs/reference_models.md, "
        "'Measured figures'), where the PRC decoder needs its test bits to pass. Frames that decode are "
        "exact (the test bits certify them); frames that do not count as chance, which is what bit accuracy "
        "below 1.0 measures here.\n"
    )
    print(body)
    write_section("Video watermarks (VideoMark)", body)


if __name__ == "__main__":
    main()
