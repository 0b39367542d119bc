"""Load the shipped reference models as standard diffusers pipelines (no network access).

``load_text_to_image()`` gives a ``StableDiffusionPipeline``, ``load_img2img()`` a
``StableDiffusionImg2ImgPipeline`` over the same modules, ``load_text_to_video()`` a
``TextToVideoSDPipeline`` sharing the VAE and text encoder, ``load_captioner()`` the CNN
captioner. Each takes ``path=``: a local diffusers pipeline folder (``model_index.json``) of a
supported family (Stable Diffusion 1.x/2.x, SDXL, 3 or FLUX.1 for images, see ``image_wm.denoiser``) loads in
place of the shipped weights, so everything downstream runs on real models too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from image_wm.reference import components
from image_wm.reference.captioner import SceneCaptioner
from provenance.device import resolve_device
from provenance.models import ModelNotFoundError

__all__ = ["load_text_to_image", "load_img2img", "load_text_to_video", "load_captioner", "shared", "REFERENCE_GUIDANCE"]

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


def _local_pipeline(path: str | os.PathLike, device: torch.device, video: bool):
    """A local diffusers folder as its text-to-image (or text-to-video) pipeline, refused unless
    ``image_wm.denoiser`` supports it. Components the folder stores as absent (``[null, null]`` in
    ``model_index.json``, e.g. Stable Diffusion 3 without its T5 encoder) load as None."""
    from diffusers import AutoPipelineForText2Image, TextToVideoSDPipeline

    from image_wm.denoiser import family

    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise ModelNotFoundError(f"{path} is not a local diffusers pipeline folder (no model_index.json)")
    index = json.loads((path / "model_index.json").read_text())
    stored = index.get("_class_name", "")
    if ("Video" in stored) != video:
        wanted = "text-to-video" if video else "text-to-image"
        raise ValueError(f"{path} holds a {stored}, which does not match the {wanted} pipeline this command needs")
    absent = {name: None for name, entry in index.items()
              if not name.startswith("_") and isinstance(entry, list) and entry[0] is None}
    loader = TextToVideoSDPipeline if video else AutoPipelineForText2Image
    pipe = loader.from_pretrained(path, local_files_only=True, dtype=torch.float32, **absent).to(device)
    family(pipe)
    return pipe


def _shared_modules(device: torch.device) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler

    encoder, tokenizer = components.load_text_encoder(device)
    return dict(
        vae=AutoencoderKL.from_pretrained(_weights("vae"), dtype=torch.float32).to(device).eval(),
        text_encoder=encoder, tokenizer=tokenizer,
        scheduler=DDIMScheduler.from_pretrained(_weights("scheduler")),
    )


def quiet(pipe):
    """``pipe`` with its per-call progress bars off (library and audit code draw their own)."""
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_text_to_image(device: str | torch.device | None = None, path: str | os.PathLike | None = None):
    """The reference ``StableDiffusionPipeline`` on ``device``, or a local folder's text-to-image
    pipeline (Stable Diffusion 1.x/2.x, SDXL or 3; ``image_wm.denoiser`` lists what is supported)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    device = resolve_device(device)
    if path is not None:
        return quiet(_local_pipeline(path, device, video=False))
    unet = UNet2DConditionModel.from_pretrained(_weights("unet"), dtype=torch.float32).to(device).eval()
    return quiet(StableDiffusionPipeline(
        unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        **_shared_modules(device)))


def load_img2img(device: str | torch.device | None = None, path: str | os.PathLike | None = None):
    """The img2img pipeline of the same family over the text-to-image pipeline's modules."""
    from diffusers import AutoPipelineForImage2Image

    return quiet(AutoPipelineForImage2Image.from_pipe(load_text_to_image(device, path)))


def load_text_to_video(device: str | torch.device | None = None, path: str | os.PathLike | None = None):
    """The reference (or a local) ``TextToVideoSDPipeline`` on ``device``."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    device = resolve_device(device)
    if path is not None:
        return quiet(_local_pipeline(path, device, video=True))
    unet = UNet3DConditionModel.from_pretrained(_weights("unet3d"), dtype=torch.float32).to(device).eval()
    return quiet(TextToVideoSDPipeline(unet=unet, **_shared_modules(device)))


def load_captioner(device: str | torch.device | None = None, path: str | os.PathLike | None = None) -> SceneCaptioner:
    """The reference scene captioner (or one saved with ``SceneCaptioner.save`` at ``path``)."""
    folder = Path(path) if path is not None else _weights("captioner")
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder} holds no captioner (config.json missing)")
    return SceneCaptioner.load(folder, resolve_device(device))


@lru_cache(maxsize=8)
def shared(load: Callable[..., Any], path: str | None = None) -> Any:
    """``load(path=path)`` on the default device, once per process: attacks and audits reuse one copy.

    Library logging is quietened first (loading is where diffusers and transformers chatter).
    """
    from provenance.models import quiet_libraries

    quiet_libraries()
    return load(path=path)
