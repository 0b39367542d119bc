"""Regeneration attacks on images: VAE round trips, diffusion regeneration, rinsing, visual paraphrase.

Why these: a generative model that re-draws an image keeps what it means and discards what it
cannot represent, which is where pixel-level watermarks live (WatermarkAttacker and WAVES'
Regen attacks, ``docs/algorithms.md`` 10d-10e), and with enough noise also the initial-noise
structure latent watermarks rely on (CtrlRegen, 10b; visual paraphrase, 10a).

- ``vae``: encode to the posterior mean and decode, ``strength`` times (1..5 round trips).
- ``regen``: img2img at ``strength`` (0.1..1.0, the fraction of the noise schedule added back)
  with an empty prompt and no guidance, i.e. plain noise-then-denoise as WatermarkAttacker does.
  At 1.0 nothing of the image survives the noise, so it regenerates from clean Gaussian noise
  guided by the image's caption (CtrlRegen's "regeneration from clean noise", the caption standing
  in for its semantic adapter).
- ``rinse``: ``strength`` (1..5) successive ``regen`` passes at a fixed img2img strength
  (``RINSE_STRENGTH`` = 0.3, override with ``img2img_strength=``), WAVES' 2x/4x rinsing.
- ``visual-paraphrase``: caption the image, then img2img with that caption at ``strength`` (default
  0.4) and classifier-free guidance ``guidance`` (default 5.0: the paraphrase paper's best-looking
  range is strength <= 0.4 with guidance 4 to 7); at 1.0 also from clean noise.

Models: ``pipe=`` takes any diffusers Stable-Diffusion-style pipeline (text-to-image or img2img;
the other is built from its components), ``captioner=`` anything with ``caption(images) ->
list[str]``; otherwise the default model and captioner (``image_wm.loading``) are loaded once per process. Work runs on the
pipeline's device, batched; ``steps=`` sets the full denoising schedule (default 25, of which
img2img runs the last ``strength`` share). Images are resized to the model's size for the model and back to
their own size afterwards, so shapes are kept. Image ``i`` of a call draws its noise from a CPU
generator seeded by ``(seed, pass, i)``: results do not depend on the batch or the device's RNG.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch

from attacks.registry import register
from image_wm import loading
from image_wm.families import adapter_for
from image_wm.image_io import resize_images
from image_wm.inversion import decode_latents, encode_images
from image_wm.pipeline import DEFAULT_STEPS, to_uint8

__all__ = ["image_batch", "at_model_size", "text_to_image_pipeline", "img2img_pipeline",
           "default_captioner", "noise_generators", "regenerate", "vae_round_trip", "regen", "rinse", "visual_paraphrase",
           "RINSE_STRENGTH", "PARAPHRASE_GUIDANCE", "REGENERATION_GUIDANCE"]

RINSE_STRENGTH = 0.3
PARAPHRASE_GUIDANCE = 5.0
# regeneration from clean noise (and the noise-extraction forgery) generates at low guidance, which
# keeps its images on the model's latent manifold: an attacker's choice, the same for every model
REGENERATION_GUIDANCE = 2.0


# --------------------------------------------------------------------------- plumbing shared with attacks.forgery

def image_batch(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """uint8 (H, W, 3) or (N, H, W, 3) -> a (N, H, W, 3) batch and whether the input was one image."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (H, W, 3) or (N, H, W, 3), got {images.dtype} {images.shape}")
    single = images.ndim == 3
    return (images[None] if single else images), single


def at_model_size(images: np.ndarray, side: int, attack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run ``attack`` on a single image or a batch at ``side`` x ``side`` and return them at their own size."""
    batch, single = image_batch(images)
    out = resize_images(attack(resize_images(batch, side, side)), *batch.shape[1:3])
    return out[0] if single else out


def noise_generators(seed: int, count: int, stage: int = 0) -> list[torch.Generator]:
    """One CPU generator per image, seeded by ``(seed, stage, i)``."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stage, i]).generate_state(1)[0]))
            for i in range(count)]


@lru_cache(maxsize=8)
def _converted(auto, pipe):
    """``pipe``'s modules as ``auto``'s pipeline of the same family, at the same default size.

    ``from_pipe`` rebuilds the pipeline from its modules, so a ``default_sample_size`` set on the
    pipeline rather than in a config (FLUX's only way to change its native size) would fall back
    to the class default, and img2img would regenerate at another size than the model's.
    """
    converted = auto.from_pipe(pipe)
    converted.set_progress_bar_config(disable=True)
    if hasattr(pipe, "default_sample_size"):
        converted.default_sample_size = pipe.default_sample_size
    return converted


def _is_img2img(pipe: Any) -> bool:
    return "Img2Img" in type(pipe).__name__


def text_to_image_pipeline(pipe: Any = None):
    """``pipe`` as a text-to-image pipeline over the same modules (the default model's when ``None``)."""
    from diffusers import AutoPipelineForText2Image

    pipe = loading.shared_model().pipe if pipe is None else pipe
    return _converted(AutoPipelineForText2Image, pipe) if _is_img2img(pipe) else pipe


def img2img_pipeline(pipe: Any = None):
    """``pipe`` as an img2img pipeline over the same modules (the default model's when ``None``)."""
    from diffusers import AutoPipelineForImage2Image

    pipe = loading.shared_model().pipe if pipe is None else pipe
    return pipe if _is_img2img(pipe) else _converted(AutoPipelineForImage2Image, pipe)


def default_captioner(captioner: Any = None):
    """``captioner`` if given, else the default model's captioner (loaded once per process)."""
    return loading.default_captioner() if captioner is None else captioner


# --------------------------------------------------------------------------- the attacks

def regenerate(images: np.ndarray, strength: float, prompts: list[str], *, pipe: Any = None, seed: int = 0,
               stage: int = 0, guidance: float = 1.0, steps: int = DEFAULT_STEPS) -> np.ndarray:
    """img2img of uint8 images (N, side, side, 3) at the model's size; strength 1.0: from clean noise.

    ``steps`` is the full schedule; img2img runs the last ``int(steps * strength)`` of them.
    """
    if int(steps * strength) < 1:
        raise ValueError(f"img2img at strength {strength:g} with {steps} steps would run no denoising step")
    generators = noise_generators(seed, len(images), stage)
    if strength >= 1.0:
        t2i = text_to_image_pipeline(pipe)
        adapter = adapter_for(t2i)
        latents = torch.cat([torch.randn(adapter.latent_shape(1), generator=g) for g in generators])
        out = t2i(prompts, latents=adapter.pipeline_latents(latents), num_inference_steps=steps,
                  guidance_scale=guidance, output_type="np")
    else:
        i2i = img2img_pipeline(pipe)
        out = i2i(prompts, image=images.astype(np.float32) / 255.0, strength=strength, num_inference_steps=steps,
                  guidance_scale=guidance, output_type="np", generator=generators)
    return to_uint8(out.images)


def _captions(images: np.ndarray, captioner: Any) -> list[str]:
    return list(default_captioner(captioner).caption(images))


@register("vae", "image", 1, 5, 1, unit="round trips")
def vae_round_trip(images: np.ndarray, strength: float, seed: int = 0, *, pipe: Any = None) -> np.ndarray:
    """VAE round trip (posterior mean, no sampling: ``seed`` is unused), ``strength`` times."""
    pipe = text_to_image_pipeline(pipe)

    def attack(batch: np.ndarray) -> np.ndarray:
        for _ in range(int(round(strength))):
            batch = decode_latents(pipe, encode_images(pipe, batch))
        return batch

    return at_model_size(images, adapter_for(pipe).image_side, attack)


@register("regen", "image", 0.1, 1.0, 0.5, unit="img2img strength")
def regen(images: np.ndarray, strength: float, seed: int = 0, *, pipe: Any = None, captioner: Any = None,
          steps: int = DEFAULT_STEPS) -> np.ndarray:
    """Diffusion regeneration: noise to ``strength`` and denoise unprompted; 1.0 = from clean noise + caption."""
    pipe = img2img_pipeline(pipe)

    def attack(batch: np.ndarray) -> np.ndarray:
        if strength >= 1.0:
            return regenerate(batch, 1.0, _captions(batch, captioner), pipe=pipe, seed=seed,
                              guidance=REGENERATION_GUIDANCE, steps=steps)
        return regenerate(batch, strength, [""] * len(batch), pipe=pipe, seed=seed, steps=steps)

    return at_model_size(images, adapter_for(pipe).image_side, attack)


@register("rinse", "image", 1, 5, 2, unit="regenerations")
def rinse(images: np.ndarray, strength: float, seed: int = 0, *, pipe: Any = None,
          img2img_strength: float = RINSE_STRENGTH, steps: int = DEFAULT_STEPS) -> np.ndarray:
    """Rinsing: ``strength`` successive unprompted regenerations at img2img strength 0.3."""
    if not 0.0 < img2img_strength < 1.0:
        raise ValueError(f"rinse img2img_strength must lie in (0, 1), got {img2img_strength:g}")
    pipe = img2img_pipeline(pipe)

    def attack(batch: np.ndarray) -> np.ndarray:
        for stage in range(int(round(strength))):
            batch = regenerate(batch, img2img_strength, [""] * len(batch), pipe=pipe, seed=seed, stage=stage,
                               steps=steps)
        return batch

    return at_model_size(images, adapter_for(pipe).image_side, attack)


@register("visual-paraphrase", "image", 0.1, 1.0, 0.4, unit="img2img strength")
def visual_paraphrase(images: np.ndarray, strength: float, seed: int = 0, *, pipe: Any = None, captioner: Any = None,
               guidance: float = PARAPHRASE_GUIDANCE, steps: int = DEFAULT_STEPS) -> np.ndarray:
    """Visual paraphrase: caption the image, img2img with the caption at ``strength`` and ``guidance``."""
    pipe = img2img_pipeline(pipe)

    def attack(batch: np.ndarray) -> np.ndarray:
        return regenerate(batch, strength, _captions(batch, captioner), pipe=pipe, seed=seed, guidance=guidance,
                          steps=steps)

    return at_model_size(images, adapter_for(pipe).image_side, attack)
