"""Images (or video frames) -> the initial diffusion noise that generated them.

Latent-noise watermarks live in the initial latent ``z_T``; detection must get back to it
from pixels: VAE-encode the image, optionally refine that latent by decoder inversion
(gradient steps on ``||D(z) - x||^2``, as in the PRC paper), then run the sampler backwards on
its unconditional branch (the empty prompt) without guidance. Works with the pipelines
``image_wm.denoiser`` supports: a UNet with a DDPM-family scheduler is inverted by DDIM
(whatever scheduler generated, the DDIM levels come from its config), an SD3 or FLUX transformer
with a flow-matching scheduler by Euler steps up the scheduler's own shifted sigmas. A 3D UNet (video)
takes latents shaped ``(B, C, F, h, w)``. Everything is batched and runs on the pipeline's
device; the user's scheduler is never touched.

Both inversions pair the levels the same way: going from level ``s`` up to level ``t``, the
prediction is made at the current latent with timestep ``t``, the usual first-order inversion
of a sampler that stepped from ``t`` down to ``s`` with its prediction at ``t``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from image_wm.denoiser import denoiser, empty_condition, family, predictor

__all__ = ["pixels_to_tensor", "to_sampler_latents", "to_vae_latents", "encode_images", "decode_latents",
           "decoder_inversion", "ddim_scheduler", "ddim_inversion", "ddim_invert", "euler_inversion", "flow_invert",
           "invert_latents", "invert_images"]


def pixels_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] or float [..., 3, H, W] in [-1, 1] -> float [..., 3, H, W] in [-1, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError("numpy images must be uint8 [..., H, W, 3]")
        return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1).movedim(-1, -3)
    return images.float()


def _latent_affine(pipe) -> tuple[float, float]:
    """``(scale, shift)``: the sampler's latents are ``(vae_latent - shift) * scale`` (SD3's VAE has a shift)."""
    config = pipe.vae.config
    return float(config.scaling_factor), float(getattr(config, "shift_factor", None) or 0.0)


def to_sampler_latents(pipe, vae_latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the latents the sampler (and so the watermark) works in."""
    scale, shift = _latent_affine(pipe)
    return (vae_latents - shift) * scale


def to_vae_latents(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Sampler latents -> what the VAE decoder takes."""
    scale, shift = _latent_affine(pipe)
    return latents / scale + shift


@torch.no_grad()
def encode_images(pipe, images: np.ndarray | torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Sampler latents (posterior mean, shifted and scaled) of images [B, 3, H, W] (or frames
    [B, F, 3, H, W] -> [B, C, F, h, w])."""
    x = pixels_to_tensor(images)
    video = x.ndim == 5
    flat = x.reshape(-1, *x.shape[-3:]).to(pipe.device, pipe.vae.dtype)
    if len(flat) == 0:
        raise ValueError("no images to encode: the batch is empty")
    z = torch.cat([pipe.vae.encode(flat[i:i + chunk]).latent_dist.mean for i in range(0, len(flat), chunk)])
    z = to_sampler_latents(pipe, z)
    if video:
        z = z.view(x.shape[0], x.shape[1], *z.shape[1:]).transpose(1, 2)
    return z


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Sampler latents -> uint8 images [B, H, W, 3] (video latents -> [B, F, H, W, 3])."""
    video = latents.ndim == 5
    flat = latents.transpose(1, 2).reshape(-1, latents.shape[1], *latents.shape[-2:]) if video else latents
    x = torch.cat([pipe.vae.decode(to_vae_latents(pipe, flat[i:i + chunk])).sample for i in range(0, len(flat), chunk)])
    out = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()
    if video:
        out = out.reshape(latents.shape[0], latents.shape[2], *out.shape[1:])
    return out


def decoder_inversion(pipe, images: np.ndarray | torch.Tensor, latents: torch.Tensor | None = None,
                      steps: int = 100, lr: float = 0.1) -> torch.Tensor:
    """Refine latents so the decoder reproduces the images (Adam, cosine learning rate).

    The encoder is only an approximate inverse of the decoder; matching the pixels through
    the decoder itself removes most of that error (the PRC paper's detection-time step).
    """
    x = pixels_to_tensor(images).to(pipe.device, pipe.vae.dtype)
    video = x.ndim == 5
    flat_x = x.reshape(-1, *x.shape[-3:])
    z = encode_images(pipe, images) if latents is None else latents
    if video:
        z = z.transpose(1, 2).reshape(-1, z.shape[1], *z.shape[-2:])
    z = to_vae_latents(pipe, z).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    requires_grad = [p.requires_grad for p in pipe.vae.parameters()]
    pipe.vae.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(pipe.vae.decode(z).sample, flat_x, reduction="sum")
            loss.backward()
            opt.step()
            sched.step()
    finally:
        for p, flag in zip(pipe.vae.parameters(), requires_grad):
            p.requires_grad_(flag)
    z = to_sampler_latents(pipe, z.detach())
    if video:
        z = z.view(x.shape[0], x.shape[1], *z.shape[1:]).transpose(1, 2)
    return z


def ddim_scheduler(pipe, num_steps: int):
    """A fresh DDIM scheduler on the pipeline scheduler's config, set to ``num_steps`` (a PNDM or
    Euler pipeline gets the same noise schedule without PNDM's repeated timesteps)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_steps)
    return scheduler


def ddim_inversion(model: Callable[[torch.Tensor, int], torch.Tensor], latents: torch.Tensor,
                   alphas_cumprod: torch.Tensor, timesteps: list[int], final_alpha: float,
                   prediction_type: str = "epsilon") -> torch.Tensor:
    """Run DDIM's levels upwards, from the clean latent (level ``final_alpha``) to ``timesteps[0]``.

    Each step solves for the ``(x0, noise)`` pair that is consistent with the current latent and
    with the model's output at the level it goes to, then re-noises to that level. For noise
    prediction that is the usual ``noise = model(z, t)``; for ``v`` prediction the two linear
    equations ``z = sqrt(a_s) x0 + sqrt(1 - a_s) noise`` and ``v = sqrt(a_t) noise - sqrt(1 - a_t) x0``
    are solved exactly (``timesteps`` descending, as the sampler runs them).
    """
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"DDIM inversion needs epsilon or v prediction, not {prediction_type!r}")
    z, a_prev = latents, final_alpha
    for t in reversed(timesteps):
        a_t = float(alphas_cumprod[t])
        out = model(z, t)
        p, q, c, d = a_prev ** 0.5, (1 - a_prev) ** 0.5, a_t ** 0.5, (1 - a_t) ** 0.5
        if prediction_type == "epsilon":
            eps = out
            x0 = (z - q * eps) / p
        else:
            x0 = (c * z - q * out) / (p * c + q * d)
            eps = (out + d * x0) / c
        z = c * x0 + d * eps
        a_prev = a_t
    return z


@torch.no_grad()
def ddim_invert(pipe, latents: torch.Tensor, num_steps: int = 50, condition: dict[str, Any] | None = None
                ) -> torch.Tensor:
    """Deterministic DDIM inversion of clean sampler latents to the initial noise, no guidance.

    ``condition`` (default: the pipeline's unconditional branch, ``image_wm.denoiser.empty_condition``)
    is what the UNet is called with.
    """
    scheduler = ddim_scheduler(pipe, num_steps)
    context = condition if condition is not None else empty_condition(pipe, len(latents))
    return ddim_inversion(predictor(pipe, context), latents.to(pipe.device, denoiser(pipe).dtype),
                          scheduler.alphas_cumprod, [int(t) for t in scheduler.timesteps],
                          float(scheduler.final_alpha_cumprod), scheduler.config.prediction_type)


def _flow_levels(pipe, num_steps: int, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's ``(sigmas, timesteps)`` for ``num_steps``, from a fresh copy of its scheduler,
    set as the pipeline sets it.

    SD3 lets the scheduler space its sigmas and, with ``use_dynamic_shifting``, shifts them by a
    ``mu`` from the number of image tokens (``patch_size`` squares); FLUX passes its own spacing
    (``linspace(1, 1/n, n)``, unless the scheduler uses ``use_flow_sigmas``) and always computes
    ``mu``, from its 2x2-patch tokens, with its own default bounds.
    """
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    config = scheduler.config
    flux = family(pipe) == "flux"
    patch = 2 if flux else int(pipe.transformer.config.patch_size)
    tokens = (latents.shape[-2] // patch) * (latents.shape[-1] // patch)
    kwargs: dict[str, Any] = {}
    if flux or config.get("use_dynamic_shifting", False):
        kwargs["mu"] = calculate_shift(tokens, config.get("base_image_seq_len", 256),
                                       config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                       config.get("max_shift", 1.15 if flux else 1.16))
    if flux and not config.get("use_flow_sigmas", False):
        kwargs["sigmas"] = np.linspace(1.0, 1 / num_steps, num_steps)
    scheduler.set_timesteps(None if "sigmas" in kwargs else num_steps, device="cpu", **kwargs)
    return scheduler.sigmas.double(), scheduler.timesteps


def euler_inversion(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], latents: torch.Tensor,
                    sigmas: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Run a flow-matching Euler sampler's levels upwards, from the clean latent to ``sigmas[0]``.

    The sampler steps ``z <- z + (sigmas[i + 1] - sigmas[i]) * velocity(z, timesteps[i])`` from
    ``i = 0``; inversion takes each step back with the velocity at the current latent and the
    timestep of the level it goes to. ``sigmas`` has one more entry than ``timesteps`` (the final 0).
    """
    z = latents
    for i in reversed(range(len(timesteps))):
        z = z + float(sigmas[i] - sigmas[i + 1]) * velocity(z, timesteps[i])
    return z


@torch.no_grad()
def flow_invert(pipe, latents: torch.Tensor, num_steps: int = 50, condition: dict[str, Any] | None = None
                ) -> torch.Tensor:
    """Euler inversion of a flow-matching pipeline (SD3, FLUX) at its own shifted sigmas, no guidance.

    ``condition`` defaults to the pipeline's unconditional branch (``image_wm.denoiser.empty_condition``).
    """
    sigmas, timesteps = _flow_levels(pipe, num_steps, latents)
    context = condition if condition is not None else empty_condition(pipe, len(latents))
    return euler_inversion(predictor(pipe, context),
                           latents.to(pipe.device, denoiser(pipe).dtype), sigmas, timesteps)


def invert_latents(pipe, latents: torch.Tensor, num_steps: int = 50,
                   condition: dict[str, Any] | None = None) -> torch.Tensor:
    """Clean sampler latents -> the initial noise, by the inversion that matches the pipeline's sampler."""
    invert = ddim_invert if family(pipe) == "unet" else flow_invert
    return invert(pipe, latents, num_steps, condition)


def invert_images(pipe, images: np.ndarray | torch.Tensor, num_steps: int = 50, decoder_steps: int = 0
                  ) -> torch.Tensor:
    """Pixels -> estimated initial noise: encode, optional decoder inversion, then ``invert_latents``."""
    latents = encode_images(pipe, images)
    if decoder_steps > 0:
        latents = decoder_inversion(pipe, images, latents, steps=decoder_steps)
    return invert_latents(pipe, latents, num_steps)
