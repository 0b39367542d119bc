"""Forging and model-guided removal attacks on images.

A forgery takes a watermarked image and returns an image the detector should *accept* although
the key holder never made it; it succeeds when the detector says "watermarked". Two families:

- Latent forgeries against the initial-noise schemes (SEAL's threat model, ``docs/algorithms.md`` 3):
  ``noise-extraction`` inverts the watermarked image to its initial noise (``image_wm.inversion``)
  and generates a new image from that noise with another prompt. Tree-Ring and Gaussian Shading
  test only the noise, so the new image carries their mark; SEAL keys the noise on the image's
  caption, so a new caption should no longer match. ``strength`` is the attacker's effort: the
  number of DDIM inversion steps (5..50). ``object-insertion`` pastes a foreign procedural object
  (a random shape of ``image_wm.scenes``, anti-aliased) at a random place, its bounding
  square covering ``strength`` of the image area (SEAL's "cat attack" uses 0.3 to 0.6 of the side,
  0.09 to 0.36 of the area): the content changes, a noise-only detector still accepts.
- Preference-model attacks (WMForger, 10c) with ``attacks.preference_model``: ``pm-removal``
  takes ``strength`` sign-gradient steps of one grey level each that lower the model's
  watermark-likeness score (so the change is at most ``strength`` grey levels per pixel);
  ``pm-transplant`` extracts the residual ``image - pm_removal(image)`` from a watermarked image
  (one-shot, black-box) and adds it to ``target=`` images.

Models come as keywords (``pipe=`` a diffusers text-to-image pipeline, ``model=`` a
``PreferenceModel``); the reference ones load once per process. Work runs on the model's device.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from attacks.preference_model import PreferenceModel, load_preference_model
from attacks.regeneration import REGENERATION_GUIDANCE, at_model_size, image_batch, text_to_image_pipeline
from attacks.registry import register
from image_wm import scenes
from image_wm.families import adapter_for
from image_wm.inversion import invert_images, pixels_to_tensor
from image_wm.pipeline import DEFAULT_STEPS, to_uint8

__all__ = ["foreign_prompts", "foreign_object", "noise_extraction", "object_insertion", "pm_removal", "pm_transplant",
           "removal_residual"]

GREY_LEVEL = 2.0 / 255.0  # one grey level in the [-1, 1] pixel range the models see


# --------------------------------------------------------------------------- latent forgeries

def foreign_prompts(count: int, seed: int) -> list[str]:
    """Captions of seeded procedural scenes: "another prompt" for each forged image."""
    return scenes.generate(count, seed)[1]


@register("noise-extraction", "image", 5, 50, 25, unit="DDIM inversion steps", kind="forgery")
def noise_extraction(images: np.ndarray, strength: float, seed: int = 0, *, pipe: Any = None,
                     prompts: list[str] | None = None, steps: int = DEFAULT_STEPS,
                     guidance: float = REGENERATION_GUIDANCE) -> np.ndarray:
    """Noise-extraction forgery: invert to the initial noise, generate anew from it with another prompt."""
    pipe = text_to_image_pipeline(pipe)

    def attack(batch: np.ndarray) -> np.ndarray:
        wanted = foreign_prompts(len(batch), seed) if prompts is None else list(prompts)
        if len(wanted) != len(batch):
            raise ValueError(f"noise-extraction needs one prompt per image: {len(wanted)} prompts, {len(batch)} images")
        noise = invert_images(pipe, batch, num_steps=int(round(strength)))
        out = pipe(wanted, latents=adapter_for(pipe).pipeline_latents(noise), num_inference_steps=steps,
                   guidance_scale=guidance, output_type="np")
        return to_uint8(out.images)

    return at_model_size(images, adapter_for(pipe).image_side, attack)


def foreign_object(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A random anti-aliased shape filling a ``side`` square: premultiplied colour (float RGB) and alpha.

    Rendered twice by ``scenes.render`` on plain black and plain white, which gives the coverage
    exactly: on black the pixel is ``alpha * colour``, and white minus black is ``255 * (1 - alpha)``.
    """
    half = scenes.RES / 2
    shape = scenes.ShapeSpec(scenes.SHAPES[rng.integers(len(scenes.SHAPES))],
                             scenes.COLOURS[rng.integers(len(scenes.COLOURS))], "large", half, half,
                             rotation=float(rng.uniform(-scenes.MAX_ROTATION, scenes.MAX_ROTATION)),
                             radius=(half - scenes.MARGIN) / scenes.EXTENT)
    on_black, on_white = (scenes.render(scenes.SceneSpec(background="plain", bg_colour="white", bg_rgb=(v, v, v),
                                                         shapes=(shape,))).astype(np.float32)
                          for v in (0.0, 255.0))
    alpha = np.clip(1.0 - (on_white - on_black).mean(axis=-1) / 255.0, 0.0, 1.0)
    grow = cv2.INTER_CUBIC if side > scenes.RES else cv2.INTER_AREA
    colour = cv2.resize(on_black, (side, side), interpolation=grow)
    return np.clip(colour, 0, 255), np.clip(cv2.resize(alpha, (side, side), interpolation=grow), 0, 1)


@register("object-insertion", "image", 0.01, 0.5, 0.2, unit="area fraction", kind="forgery")
def object_insertion(images: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
    """Object-insertion forgery: paste a foreign procedural object covering ``strength`` of the area."""
    batch, single = image_batch(images)
    out = batch.astype(np.float32)
    h, w = batch.shape[1:3]
    side = max(1, min(h, w, int(round(np.sqrt(strength * h * w)))))
    for i in range(len(out)):
        rng = np.random.default_rng([seed, i])
        colour, alpha = foreign_object(rng, side)
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        window = out[i, y:y + side, x:x + side]
        window[:] = window * (1.0 - alpha[..., None]) + colour
    result = np.round(out).clip(0, 255).astype(np.uint8)
    return result[0] if single else result


# --------------------------------------------------------------------------- preference-model attacks

def _preference_model(model: PreferenceModel | None) -> PreferenceModel:
    return load_preference_model() if model is None else model


def removal_residual(images: np.ndarray, steps: int, model: PreferenceModel | None = None) -> torch.Tensor:
    """``images - pm_removal(images)`` before rounding, float [N, 3, H, W] in [-1, 1] units.

    Each step moves every pixel one grey level against the sign of the gradient of the summed
    scores (the model scores each image on its own, so the sum gives per-image gradients).
    """
    model = _preference_model(model)
    device = next(model.parameters()).device
    x = pixels_to_tensor(image_batch(images)[0]).to(device)
    adv = x.clone()
    for _ in range(int(round(steps))):
        adv.requires_grad_(True)
        grad, = torch.autograd.grad(model(adv).sum(), adv)
        adv = (adv.detach() - GREY_LEVEL * grad.sign()).clamp(-1.0, 1.0)
    return (x - adv).cpu()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(1, -1).numpy()


@register("pm-removal", "image", 1, 50, 10, unit="gradient steps of one grey level")
def pm_removal(images: np.ndarray, strength: float, seed: int = 0, *, model: PreferenceModel | None = None
               ) -> np.ndarray:
    """Preference-model removal: gradient steps that lower the watermark-likeness score (``seed`` unused)."""
    batch, single = image_batch(images)
    out = _to_uint8(pixels_to_tensor(batch) - removal_residual(batch, int(round(strength)), model))
    return out[0] if single else out


@register("pm-transplant", "image", 1, 50, 10, unit="gradient steps of one grey level", kind="forgery")
def pm_transplant(images: np.ndarray, strength: float, seed: int = 0, *, target: np.ndarray | None = None,
                  model: PreferenceModel | None = None) -> np.ndarray:
    """Preference-model forgery: add the residual the removal takes off a watermarked image to ``target``.

    One watermarked source serves every target; otherwise sources and targets pair up one to one.
    The residual is resized to each target's size. ``seed`` is unused (the attack is deterministic).
    """
    if target is None:
        raise ValueError("pm-transplant needs target= images to forge the watermark onto")
    sources, _ = image_batch(images)
    targets, single = image_batch(target)
    if len(sources) not in (1, len(targets)):
        raise ValueError(f"pm-transplant takes 1 source or one per target ({len(targets)}), got {len(sources)}")
    residual = removal_residual(sources, int(round(strength)), model)
    if residual.shape[-2:] != targets.shape[1:3]:
        residual = torch.nn.functional.interpolate(residual, size=targets.shape[1:3], mode="bilinear",
                                                   align_corners=False)
    out = _to_uint8(pixels_to_tensor(targets) + residual)
    return out[0] if single else out
