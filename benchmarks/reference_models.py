"""Measured figures of the shipped reference models (issue: reference miniature world).

Run: ``.venv/bin/python benchmarks/reference_models.py [--n-gen 200] [--n-inv 100]``.
Writes the figures section of ``docs/reference_models.md``, the picture grid
``docs/images/reference_samples.png`` and the "Reference models" section of
``docs/benchmarks.md``:
- VAE reconstruction PSNR on 500 held-out procedural scenes saved as 8-bit;
- captioner accuracy on real scenes, and prompt adherence (captioner recovers the prompted
  shape and colour) on generated images;
- sign agreement between the initial latent and its estimate from the generated image
  (decode -> uint8 -> encode -> DDIM inversion with an empty prompt), for 10/25/50 steps, with
  and without the VAE round trip and with decoder inversion, for images and video frames;
- generation time of one 64x64 image (25 steps) and one 16-frame video on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from attacks.quality import psnr  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from image_wm import inversion, scenes  # noqa: E402
from image_wm.reference.pipelines import (  # noqa: E402
    REFERENCE_GUIDANCE, load_captioner, load_text_to_image, load_text_to_video,
)

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 10**6 + 7  # never a training seed (training draws from SeedSequence([0, step, ...]))
STEPS = 25


def sign_agreement(estimate: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    agree = (torch.sign(estimate.float().cpu()) == torch.sign(truth.float().cpu())).float()
    return agree.reshape(len(agree), -1).mean(dim=1).numpy()


def fmt(values: np.ndarray) -> str:
    return f"{values.mean():.3f} [{values.min():.3f}]"


def generate_latents(pipe, prompts: list[str], noise: torch.Tensor, guidance: float, batch: int = 50):
    out = []
    for i in range(0, len(prompts), batch):
        result = pipe(prompts[i:i + batch], latents=noise[i:i + batch], guidance_scale=guidance,
                      num_inference_steps=STEPS, output_type="latent")
        out.append(result.images if hasattr(result, "images") else result.frames)
    return torch.cat(out)


def subject_found(predicted: dict[str, int], labels: dict[str, int]) -> bool:
    """The caption's subject (first shape and its colour) is one of the shapes the captioner names."""
    return any(predicted[f"shape{i}"] == labels["shape1"] and predicted[f"colour{i}"] == labels["colour1"]
               for i in (1, 2))


def label_match(captioner, images: np.ndarray, specs) -> tuple[float, float]:
    """Fraction whose subject shape+colour is recognised, and with every (canonical) label right."""
    predicted = captioner.predict_labels(images)
    labels = [s.labels() for s in specs]
    subject = np.mean([subject_found(p, t) for p, t in zip(predicted, labels)])
    every = np.mean([p == scenes.canonical_labels(t) for p, t in zip(predicted, labels)])
    return float(subject), float(every)


def grid_png(images: np.ndarray, prompts: list[str], frames: np.ndarray, video_prompts: list[str], path: Path) -> None:
    """Generated images under their wrapped prompts, then one row of eight frames per video.

    Row labels are placed as axes text outside the layout, so long prompts never shrink the frames.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(images) // cols)
    n_frames = frames.shape[1]
    stride = max(1, n_frames // 8)
    fig = plt.figure(figsize=(12, 3.4 * rows + 2.0 * len(frames)))
    grid = fig.add_gridspec(rows + len(frames), 8, height_ratios=[3.4] * rows + [2.0] * len(frames),
                            left=0.02, right=0.98, top=0.96, bottom=0.02, hspace=0.45, wspace=0.08)
    for k, (img, prompt) in enumerate(zip(images, prompts)):
        ax = fig.add_subplot(grid[k // cols, 2 * (k % cols): 2 * (k % cols) + 2])
        ax.imshow(img, interpolation="nearest")
        ax.set_title(textwrap.fill(prompt, 36), fontsize=8)
        ax.axis("off")
    for v, (clip, prompt) in enumerate(zip(frames, video_prompts)):
        for j, f in enumerate(range(0, n_frames, stride)[:8]):
            ax = fig.add_subplot(grid[rows + v, j])
            ax.imshow(clip[f], interpolation="nearest")
            ax.axis("off")
            if j == 0:
                ax.text(0, 1.06, f"video: {prompt} (frames 0, {stride}, {2 * stride}, ...)", fontsize=8,
                        transform=ax.transAxes, ha="left", va="bottom")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def vae_round_trip_psnr(pipe, images: np.ndarray) -> np.ndarray:
    """PSNR per image of uint8 scenes through the pipeline's VAE and back to 8-bit pixels."""
    recon = inversion.decode_latents(pipe, inversion.encode_images(pipe, images))
    return np.array([psnr(image, rebuilt) for image, rebuilt in zip(images, recon)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-vae", type=int, default=500)
    parser.add_argument("--n-gen", type=int, default=200)
    parser.add_argument("--n-inv", type=int, default=100)
    parser.add_argument("--n-decinv", type=int, default=20, help="images also refined by decoder inversion")
    parser.add_argument("--n-video", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_text_to_image("cpu")
    captioner = load_captioner("cpu")
    lines: list[str] = []

    # VAE reconstruction on held-out scenes, through 8-bit
    images, _, _ = scenes.generate(args.n_vae, seed=HELD_OUT_SEED)
    vae_psnr = vae_round_trip_psnr(pipe, images)
    lines.append(f"| VAE PSNR, {args.n_vae} held-out scenes, 8-bit | {vae_psnr.mean():.2f} dB (worst {vae_psnr.min():.2f}) |")

    # captioner on real scenes
    real, _, real_specs = scenes.generate(args.n_gen, seed=HELD_OUT_SEED + 1)
    first, every = label_match(captioner, real, real_specs)
    lines.append(f"| captioner on {args.n_gen} real scenes: subject shape+colour / every label | {first:.3f} / {every:.3f} |")

    # prompt adherence on generated images
    _, prompts, specs = scenes.generate(args.n_gen, seed=HELD_OUT_SEED + 2)
    noise = torch.randn((args.n_gen, 4, 16, 16), generator=torch.Generator().manual_seed(3))
    t0 = time.perf_counter()
    z0 = generate_latents(pipe, prompts, noise, REFERENCE_GUIDANCE)
    gen_seconds = (time.perf_counter() - t0) / args.n_gen
    generated = inversion.decode_latents(pipe, z0)
    first, every = label_match(captioner, generated, specs)
    lines.append(f"| prompt adherence, {args.n_gen} generated images (CFG {REFERENCE_GUIDANCE}, {STEPS} steps): "
                 f"subject shape+colour / every label | {first:.3f} / {every:.3f} |")

    # inversion: sign agreement of the initial latent
    n = args.n_inv
    truth, z0_inv, pixels = noise[:n], z0[:n], generated[:n]
    for steps in (10, 25, 50):
        full = sign_agreement(inversion.invert_images(pipe, pixels, num_steps=steps), truth)
        lines.append(f"| sign agreement, {n} images, full path (PNG -> encode -> {steps}-step DDIM inversion) | {fmt(full)} |")
    no_vae = sign_agreement(inversion.invert_latents(pipe, z0_inv, 50), truth)
    lines.append(f"| sign agreement, {n} images, no VAE round trip (50 steps) | {fmt(no_vae)} |")
    m = args.n_decinv
    refined = sign_agreement(inversion.invert_images(pipe, pixels[:m], 50, decoder_steps=100), truth[:m])
    lines.append(f"| sign agreement, first {m} images, full path + 100 decoder-inversion steps (50 steps) | {fmt(refined)} |")

    # video
    video_pipe = load_text_to_video("cpu")
    _, video_prompts, _ = scenes.generate_videos(args.n_video, seed=HELD_OUT_SEED + 3, frames=2)
    v_noise = torch.randn((args.n_video, 4, 16, 16, 16), generator=torch.Generator().manual_seed(4))
    t0 = time.perf_counter()
    v_latents = generate_latents(video_pipe, video_prompts, v_noise, REFERENCE_GUIDANCE, batch=4)
    video_seconds = (time.perf_counter() - t0) / args.n_video
    frames = inversion.decode_latents(video_pipe, v_latents)
    v_full = sign_agreement(inversion.invert_latents(video_pipe, inversion.encode_images(video_pipe, frames), 50), v_noise)
    v_no_vae = sign_agreement(inversion.invert_latents(video_pipe, v_latents, 50), v_noise)
    lines.append(f"| sign agreement, {args.n_video} 16-frame videos, full path / no VAE (50 steps) | "
                 f"{fmt(v_full)} / {fmt(v_no_vae)} |")

    # speed of single generations
    t0 = time.perf_counter()
    pipe(prompts[0], guidance_scale=REFERENCE_GUIDANCE, num_inference_steps=STEPS,
         generator=torch.Generator().manual_seed(0))
    one_image = time.perf_counter() - t0
    t0 = time.perf_counter()
    video_pipe(video_prompts[0], guidance_scale=REFERENCE_GUIDANCE, num_inference_steps=STEPS, num_frames=16,
               generator=torch.Generator().manual_seed(0))
    one_video = time.perf_counter() - t0

    grid_png(generated[:12], prompts[:12], frames[:3], video_prompts[:3], ROOT / "docs" / "images" / "reference_samples.png")
    table = "| figure | value (mean [worst]) |\n|---|---|\n" + "\n".join(lines) + "\n"
    print(table)
    write_section("Measured figures", f"`python benchmarks/reference_models.py` ({args.threads} CPU threads).\n\n"
                  + table + "\n![generated samples](images/reference_samples.png)\n", doc="reference_models.md")
    speed = (f"`python benchmarks/reference_models.py`, {args.threads} CPU threads, fp32, DDIM {STEPS} steps, "
             f"CFG {REFERENCE_GUIDANCE}.\n\n| generation | seconds |\n|---|---|\n"
             f"| one 64x64 image (batch 1) | {one_image:.2f} |\n| one 16-frame 64x64 video (batch 1) | {one_video:.2f} |\n"
             f"| per image in batches of 50 | {gen_seconds:.3f} |\n| per 16-frame video in batches of 4 | {video_seconds:.2f} |\n")
    write_section("Reference models", speed)


if __name__ == "__main__":
    main()
