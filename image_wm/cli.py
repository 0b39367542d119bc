"""``provenance image generate|detect|sign|verify``: latent-noise watermarks and Content Credentials
from the command line.

Registered on the top-level ``provenance`` group (``cli.py``), whose error handling turns
bad input (unreadable, tiny or non-RGB images, wrong key files, unknown schemes, a model
folder of the wrong kind) into a one-line error with exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click
import numpy as np

from image_wm.image_io import MAX_IMAGE_PIXELS, check_image_output, read_image
from image_wm.schemes import DEFAULT_FPR, SCHEME_NAMES, get_scheme
from provenance import c2pa_cli
from provenance.cli_support import FiniteFloatRange, attempt, detect_outcomes, report
from provenance.readers import parse_payload_hex
from provenance.result import DetectionResult


def _load_pipeline(model: str | None, scheme: str, key_file: str, calibrate: bool = True):
    from image_wm.pipeline import WatermarkedPipeline
    from image_wm.reference import load_text_to_image
    from provenance.keys import WatermarkKey
    from provenance.models import quiet_libraries

    quiet_libraries()
    key = WatermarkKey.load(key_file)
    pipe = load_text_to_image(path=model)
    return WatermarkedPipeline(pipe, scheme, key, model_name=model or "reference", calibrate=calibrate)


_key_option = click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
_scheme_option = click.option("--scheme", required=True, type=click.Choice(SCHEME_NAMES), help="Watermark scheme.")
_model_option = click.option("--model", default=None, type=click.Path(file_okay=False),
                             help="Local diffusers pipeline folder (Stable Diffusion 1.x/2.x, SDXL, 3 or FLUX.1).")
# shared with the video commands (image_wm/video/cli.py): inversion steps, detection FPR, pixel cap
steps_option = click.option("--steps", default=25, show_default=True, type=click.IntRange(1, 1000),
                             help="Inversion steps (DDIM, or Euler for flow matching).")
fpr_option = click.option("--fpr", default=DEFAULT_FPR, show_default=True,
                           type=FiniteFloatRange(1e-12, 0.5, min_open=True))
max_pixels_option = click.option("--max-pixels", default=MAX_IMAGE_PIXELS, show_default=True,
                                 type=click.IntRange(1, 1 << 40),
                                 help="Refuse images (or video frames) with more pixels than this.")


def read_images(paths: Sequence[str], max_pixels: int) -> list[tuple[str, np.ndarray | Exception]]:
    """Every image strictly read (bad ones as their error), before any model loads."""
    return [(path, attempt(path, lambda path=path: read_image(path, max_pixels=max_pixels))) for path in paths]


def _detector(key_file: str, scheme: str, model: str | None, steps: int, fpr: float, decoder_steps: int = 0,
              calibrate: bool = True) -> Callable[[list[np.ndarray]], list[DetectionResult]]:
    """Detection for images already read: loads the model once, then one batch per call."""
    pipeline = _load_pipeline(model, scheme, key_file, calibrate=calibrate)

    def detect(images: list[np.ndarray]) -> list[DetectionResult]:
        batch = np.stack([pipeline.native_size(im[None])[0] for im in images])
        return pipeline.detect(batch, fpr=fpr, inversion_steps=steps, decoder_steps=decoder_steps)

    return detect


@click.group()
def image() -> None:
    """Latent-noise image watermarks (Tree-Ring, Gaussian Shading, PRC, SEAL)."""


@image.command("generate")
@_key_option
@_scheme_option
@click.option("--prompt", required=True, help="Text prompt.")
@click.option("--payload", default=None, help="Hex payload for multi-bit schemes (gaussian-shading, prc).")
@_model_option
@click.option("--steps", default=25, show_default=True, type=click.IntRange(1, 1000))
@click.option("--guidance", default=None, type=FiniteFloatRange(0, 100),
              help="Classifier-free guidance (default: the reference's 2.0).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Image file to write: .png (lossless), .webp, .jpg, .bmp or .tif.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def image_generate(key_file, scheme, prompt, payload, model, steps, guidance, seed, out, force):
    """Generate one watermarked image; prints its generation record as JSON."""
    import json

    from image_wm.image_io import write_image
    from image_wm.pipeline import DEFAULT_GUIDANCE
    from provenance.readers import InputError

    if not prompt.strip():
        raise InputError("--prompt", "empty prompt")
    out_path = check_image_output(out, force)
    payload_bytes = parse_payload_hex(payload, get_scheme(scheme).payload_bytes, scheme)
    pipeline = _load_pipeline(model, scheme, key_file)
    result = pipeline(prompt, payload=payload_bytes, seed=seed, num_inference_steps=steps,
                      guidance_scale=DEFAULT_GUIDANCE if guidance is None else guidance)
    write_image(out_path, result.images[0])
    click.echo(json.dumps({"image": str(out_path), **result.records[0].to_dict()}))


@image.command("detect")
@_key_option
@_scheme_option
@_model_option
@steps_option
@click.option("--decoder-steps", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Decoder-inversion refinement steps before DDIM inversion.")
@fpr_option
@click.option("--no-calibration", is_flag=True,
              help="Tree-Ring only: skip the nuisance projection for edited images, and with it the "
                   "one-off fit for a new --model.")
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def image_detect(key_file, scheme, model, steps, decoder_steps, fpr, no_calibration, max_pixels, as_json, images):
    """Test IMAGES for the watermark (inverts each to its initial noise). Every readable image gets
    a verdict; an unreadable one gets an error line and no verdict (exit 2).

    Tree-Ring with a new --model first fits that model's nuisance directions once (312 probe
    inversions, then cached; the reference model's ship with the package); --no-calibration
    skips it, at the cost of the fixed-key protection on rotated or erased images."""
    outcomes = detect_outcomes(read_images(images, max_pixels), lambda: _detector(
        key_file, scheme, model, steps, fpr, decoder_steps, calibrate=not no_calibration))
    report(outcomes, as_json, lambda name, result: f"{name}: {result.summary()}")


@image.command("sign")
@_key_option
@_scheme_option
@c2pa_cli.signing_options
@_model_option
@steps_option
@fpr_option
@max_pixels_option
@click.argument("image_file", type=click.Path(dir_okay=False))
def image_sign(key_file, scheme, chain_file, private_key_file, alg, model, steps, fpr, max_pixels, out, force,
               image_file):
    """Write a copy of IMAGE_FILE with signed Content Credentials (C2PA) that name its watermark.

    The watermark is detected first, and the command refuses (exit 2) when it is not found at
    --fpr: the manifest records the AI-generated source, the watermark as a C2PA soft binding
    (scheme, key id, payload) and the detection's p-value. The image's pixels are not changed."""
    out_path, signer = c2pa_cli.prepare_signing(image_file, out, force, chain_file, private_key_file, alg)
    pixels = read_image(image_file, max_pixels=max_pixels)
    c2pa_cli.sign(image_file, out_path, signer, lambda: _detector(key_file, scheme, model, steps, fpr)([pixels])[0])


@image.command("verify", help=c2pa_cli.verify_help("IMAGES", "--key and --scheme"))
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False),
              help="Key file: also test the watermark (with --scheme).")
@click.option("--scheme", default=None, type=click.Choice(SCHEME_NAMES), help="Watermark scheme (with --key).")
@c2pa_cli.trust_option
@_model_option
@steps_option
@fpr_option
@max_pixels_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def image_verify(key_file, scheme, trust_anchors, model, steps, fpr, max_pixels, as_json, images):
    if (key_file is None) != (scheme is None):
        raise click.UsageError("give --key and --scheme together, or neither")
    detect = (lambda: _detector(key_file, scheme, model, steps, fpr)) if key_file else None
    c2pa_cli.verify(read_images(images, max_pixels), trust_anchors, detect, as_json)
