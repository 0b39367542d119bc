"""Load the shipped reference models as standard diffusers pipelines (no network access).

``load_text_to_image()`` gives a ``StableDiffusionPipeline``, ``load_text_to_video()`` a
``TextToVideoSDPipeline`` sharing the VAE and text encoder, ``load_captioner()`` the CNN
captioner. Library code reaches them only through ``image_wm.loading``, when no model folder is
given; tests, benchmarks and scripts may load them directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from image_wm.reference import components
from image_wm.reference.captioner import SceneCaptioner
from provenance.device import resolve_device
from provenance.models import ModelNotFoundError

__all__ = ["load_text_to_image", "load_text_to_video", "load_captioner", "REFERENCE_GUIDANCE"]

# Classifier-free guidance the latent watermark schemes should generate with: low guidance keeps
# samples on the VAE's latent manifold, which is what makes DDIM inversion recover the noise.
REFERENCE_GUIDANCE = 2.0


def _weights(name: str) -> Path:
    folder = components.WEIGHTS_DIR / name
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"reference weights {folder} are missing; train and export them with "
            "`python -m image_wm.reference.train` (see its docstring)")
    return folder


def _shared_modules(device: torch.device) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler

    encoder, tokenizer = components.load_text_encoder(device)
    return dict(
        vae=AutoencoderKL.from_pretrained(_weights("vae"), dtype=torch.float32).to(device).eval(),
        text_encoder=encoder, tokenizer=tokenizer,
        scheduler=DDIMScheduler.from_pretrained(_weights("scheduler")),
    )


def load_text_to_image(device: str | torch.device | None = None):
    """The reference ``StableDiffusionPipeline`` on ``device``, per-call progress bars off."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    device = resolve_device(device)
    unet = UNet2DConditionModel.from_pretrained(_weights("unet"), dtype=torch.float32).to(device).eval()
    pipe = StableDiffusionPipeline(unet=unet, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False, **_shared_modules(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_text_to_video(device: str | torch.device | None = None):
    """The reference ``TextToVideoSDPipeline`` on ``device``, per-call progress bars off."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    device = resolve_device(device)
    unet = UNet3DConditionModel.from_pretrained(_weights("unet3d"), dtype=torch.float32).to(device).eval()
    pipe = TextToVideoSDPipeline(unet=unet, **_shared_modules(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_captioner(device: str | torch.device | None = None, path: str | os.PathLike | None = None) -> SceneCaptioner:
    """The reference scene captioner (or one saved with ``SceneCaptioner.save`` at ``path``)."""
    folder = Path(path) if path is not None else _weights("captioner")
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder} holds no captioner (config.json missing)")
    return SceneCaptioner.load(folder, resolve_device(device))
