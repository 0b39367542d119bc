"""``provenance image generate|detect|sign|verify``: latent-noise watermarks and Content Credentials
from the command line.

Registered on the top-level ``provenance`` group (``cli.py``), whose error handling turns
bad input (unreadable, tiny or non-RGB images, wrong key files, unknown schemes, a model
folder of the wrong kind) into a one-line error with exit code 2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
import numpy as np

from image_wm.image_io import MAX_IMAGE_PIXELS, check_image_output, read_image, write_image
from image_wm.loading import DTYPE_CHOICES, DiffusionModel, describe, folder_task, load_model
from image_wm.pipeline import WatermarkedPipeline, check_captioner
from image_wm.resync import DEFAULT_RESYNC, RESYNC_MODES
from image_wm.schemes import DEFAULT_FPR, SCHEME_NAMES, get_scheme
from provenance import c2pa_cli
from provenance.cli_support import FiniteFloatRange, attempt, detect_outcomes, report
from provenance.device import parse_device
from provenance.keys import WatermarkKey
from provenance.models import quiet_libraries
from provenance.readers import InputError, parse_payload_hex
from provenance.result import DetectionResult


@dataclass(frozen=True)
class ModelChoice:
    """The model options of a command: which folder (None: the reference world), dtype, device, captioner."""

    model: str | None
    dtype: str
    device: str | None
    captioner: str | None = None

    def load(self, task: str = "text-to-image") -> DiffusionModel:
        quiet_libraries()
        return load_model(self.model, task=task, dtype=self.dtype, device=self.device, captioner=self.captioner)


def _load_pipeline(choice: ModelChoice, scheme: str, key_file: str, calibrate: bool = True) -> WatermarkedPipeline:
    """Key and captioner checked first (one line each), then the model loaded once."""
    key = WatermarkKey.load(key_file)
    check_captioner(get_scheme(scheme), choice.model or "reference", choice.model is None or choice.captioner is not None)
    return choice.load().watermarked(scheme, key, calibrate=calibrate)


def model_options(video: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--model``, ``--dtype`` and ``--device`` (and for images ``--captioner``), given to the command
    as one ``choice: ModelChoice``."""
    folder = "text-to-video folder" if video else \
        "pipeline folder (Stable Diffusion 1.x/2.x, SDXL, 3 or FLUX.1)"
    options = [
        click.option("--model", default=None, type=click.Path(file_okay=False),
                     help=f"Local diffusers {folder}; default: the reference model."),
        click.option("--dtype", default="auto", show_default=True, type=click.Choice(DTYPE_CHOICES),
                     help="Weights' dtype (auto: as stored in the folder, float16 as float32 on a CPU)."),
        click.option("--device", default=None, callback=_device_callback,
                     help="auto, cpu, cuda, cuda:N or mps (default: $PROVENANCE_DEVICE, else the best available)."),
    ]
    if not video:
        options.append(click.option("--captioner", default=None, type=click.Path(file_okay=False),
                                    help="Local transformers image-to-text folder: SEAL's captioner for --model "
                                         "(the reference model has its own)."))

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_choice(*args: Any, model: str | None, dtype: str, device: str | None, captioner: str | None = None,
                        **kwargs: Any) -> Any:
            return command(*args, choice=ModelChoice(model, dtype, device, captioner), **kwargs)

        for option in reversed(options):
            with_choice = option(with_choice)
        return with_choice

    return decorate


def _device_callback(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_key_option = click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
_scheme_option = click.option("--scheme", required=True, type=click.Choice(SCHEME_NAMES), help="Watermark scheme.")
guidance_option = click.option("--guidance", default=None, type=FiniteFloatRange(0, 100),
                               help="Classifier-free guidance (default: the model's own: its family's documented "
                                    "default, 2.0 for the reference model).")
# shared with the video commands (image_wm/video/cli.py): inversion steps, resync, pixel cap
steps_option = click.option("--steps", default=25, show_default=True, type=click.IntRange(1, 1000),
                             help="Inversion steps (DDIM, or Euler for flow matching).")
_OWN_DEFAULT_FPRS = ", ".join(f"{name} {get_scheme(name).default_fpr:g}" for name in SCHEME_NAMES
                             if get_scheme(name).default_fpr != DEFAULT_FPR)
image_fpr_option = click.option(
    "--fpr", default=None, type=FiniteFloatRange(1e-12, 0.5, min_open=True),
    help=f"False-positive rate of the test (default: the scheme's own, {DEFAULT_FPR:g}; {_OWN_DEFAULT_FPRS}: "
         "a level its own watermarked images reach).")
resync_option = click.option(
    "--resync", default=DEFAULT_RESYNC, show_default=True, type=click.Choice(RESYNC_MODES),
    help="Undo likely geometric edits before inversion: off; fast (mirror, 10% and 20% crop-to-fit: 4 inversions "
         "an image); thorough (also rotations, corner crops, zoom-out, shifts, aspect: 46). The p-value is "
         "Bonferroni-corrected over the candidates tried.")
max_pixels_option = click.option("--max-pixels", default=MAX_IMAGE_PIXELS, show_default=True,
                                 type=click.IntRange(1, 1 << 40),
                                 help="Refuse images (or video frames) with more pixels than this.")


def read_images(paths: Sequence[str], max_pixels: int) -> list[tuple[str, np.ndarray | Exception]]:
    """Every image strictly read (bad ones as their error), before any model loads."""
    return [(path, attempt(path, lambda path=path: read_image(path, max_pixels=max_pixels))) for path in paths]


def _detector(key_file: str, scheme: str, choice: ModelChoice, steps: int, fpr: float | None, resync: str,
              decoder_steps: int = 0, calibrate: bool = True) -> Callable[[list[np.ndarray]], list[DetectionResult]]:
    """Detection for images already read: loads the model once, then one batch per call (``fpr`` None:
    the scheme's ``default_fpr``)."""
    pipeline = _load_pipeline(choice, scheme, key_file, calibrate=calibrate)
    fpr = pipeline.scheme.default_fpr if fpr is None else fpr

    return functools.partial(pipeline.detect_images, fpr=fpr, inversion_steps=steps, decoder_steps=decoder_steps,
                             resync=resync)


@click.group()
def image() -> None:
    """Latent-noise image watermarks (Tree-Ring, Gaussian Shading, PRC, SEAL)."""


@image.command("generate")
@_key_option
@_scheme_option
@click.option("--prompt", required=True, help="Text prompt.")
@click.option("--payload", default=None, help="Hex payload for multi-bit schemes (gaussian-shading, prc).")
@model_options()
@click.option("--steps", default=25, show_default=True, type=click.IntRange(1, 1000))
@guidance_option
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Image file to write: .png (lossless), .webp, .jpg, .bmp or .tif.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def image_generate(key_file, scheme, prompt, payload, choice, steps, guidance, seed, out, force):
    """Generate one watermarked image; prints its generation record as JSON."""
    if not prompt.strip():
        raise InputError("--prompt", "empty prompt")
    out_path = check_image_output(out, force)
    payload_bytes = parse_payload_hex(payload, get_scheme(scheme).payload_bytes, scheme)
    pipeline = _load_pipeline(choice, scheme, key_file)
    result = pipeline(prompt, payload=payload_bytes, seed=seed, num_inference_steps=steps, guidance_scale=guidance)
    write_image(out_path, result.images[0])
    click.echo(json.dumps({"image": str(out_path), **result.records[0].to_dict()}))


@image.command("detect")
@_key_option
@_scheme_option
@model_options()
@steps_option
@click.option("--decoder-steps", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Decoder-inversion refinement steps before DDIM inversion.")
@image_fpr_option
@resync_option
@click.option("--no-calibration", is_flag=True,
              help="Tree-Ring only: skip the nuisance projection for edited images, and with it the "
                   "one-off fit for a new --model.")
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def image_detect(key_file, scheme, choice, steps, decoder_steps, fpr, resync, no_calibration, max_pixels, as_json,
                 images):
    """Test IMAGES for the watermark (inverts each to its initial noise). Every readable image gets
    a verdict; an unreadable one gets an error line and no verdict (exit 2).

    Tree-Ring with a new --model first fits that model's nuisance directions once (312 probe
    inversions, then cached; the reference model's ship with the package); --no-calibration
    skips it, at the cost of the fixed-key protection on rotated or erased images."""
    outcomes = detect_outcomes(read_images(images, max_pixels), lambda: _detector(
        key_file, scheme, choice, steps, fpr, resync, decoder_steps, calibrate=not no_calibration))
    report(outcomes, as_json, lambda name, result: f"{name}: {result.summary()}")


@image.command("sign")
@_key_option
@_scheme_option
@c2pa_cli.signing_options
@model_options()
@steps_option
@image_fpr_option
@resync_option
@max_pixels_option
@click.argument("image_file", type=click.Path(dir_okay=False))
def image_sign(key_file, scheme, chain_file, private_key_file, alg, choice, steps, fpr, resync, max_pixels, out, force,
               image_file):
    """Write a copy of IMAGE_FILE with signed Content Credentials (C2PA) that name its watermark.

    The watermark is detected first, and the command refuses (exit 2) when it is not found at
    --fpr: the manifest records the AI-generated source, the watermark as a C2PA soft binding
    (scheme, key id, payload) and the detection's p-value. The image's pixels are not changed."""
    out_path, signer = c2pa_cli.prepare_signing(image_file, out, force, chain_file, private_key_file, alg)
    pixels = read_image(image_file, max_pixels=max_pixels)
    c2pa_cli.sign(image_file, out_path, signer, lambda: _detector(key_file, scheme, choice, steps, fpr, resync)([pixels])[0])


@image.command("verify", help=c2pa_cli.verify_help("IMAGES", "--key and --scheme"))
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False),
              help="Key file: also test the watermark (with --scheme).")
@click.option("--scheme", default=None, type=click.Choice(SCHEME_NAMES), help="Watermark scheme (with --key).")
@c2pa_cli.trust_option
@model_options()
@steps_option
@image_fpr_option
@resync_option
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def image_verify(key_file, scheme, trust_anchors, choice, steps, fpr, resync, max_pixels, as_json, images):
    if (key_file is None) != (scheme is None):
        raise click.UsageError("give --key and --scheme together, or neither")
    detect = (lambda: _detector(key_file, scheme, choice, steps, fpr, resync)) if key_file else None
    c2pa_cli.verify(read_images(images, max_pixels), trust_anchors, detect, as_json)


@image.command("inspect")
@model_options()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def image_inspect(choice, as_json):
    """How a model folder is understood (the reference model without --model): family, dtype, device,
    default guidance, native size, latent shape, scheduler, inversion and the schemes it supports."""
    described = describe(choice.load(folder_task(choice.model)))
    if as_json:
        click.echo(json.dumps(described))
        return
    for name, value in described.items():
        shown = ", ".join(f"{k} ({v})" for k, v in value.items()) if isinstance(value, dict) else value
        click.echo(f"{name.replace('_', ' ')}: {shown}")
