"""Images (or video frames) -> the initial diffusion noise that generated them.

Latent-noise watermarks live in the initial latent ``z_T``; detection must get back to it
from pixels: VAE-encode the image, optionally refine that latent by decoder inversion
(gradient steps on ``||D(z) - x||^2``, as in the PRC paper), then run the sampler backwards on
its unconditional branch (the empty prompt) without guidance. The last step is the pipeline
family's (``image_wm.families``): DDIM for a UNet with a DDPM-family scheduler, Euler steps up the
scheduler's own shifted sigmas for an SD3 or FLUX transformer. A 3D UNet (video) takes latents
shaped ``(B, C, F, h, w)``. Everything is batched and runs on the pipeline's device; the user's
scheduler is never touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from image_wm.families import adapter_for

__all__ = ["pixels_to_tensor", "to_sampler_latents", "to_vae_latents", "encode_images", "decode_latents",
           "decoder_inversion", "invert_latents", "invert_images"]


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
    z = to_sampler_latents(pipe, z.float())  # the watermark lives in float32, whatever the VAE runs in
    if video:
        z = z.view(x.shape[0], x.shape[1], *z.shape[1:]).transpose(1, 2)
    return z


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Sampler latents -> uint8 images [B, H, W, 3] (video latents -> [B, F, H, W, 3])."""
    video = latents.ndim == 5
    flat = latents.transpose(1, 2).reshape(-1, latents.shape[1], *latents.shape[-2:]) if video else latents
    x = torch.cat([pipe.vae.decode(to_vae_latents(pipe, flat[i:i + chunk]).to(pipe.vae.dtype)).sample
                   for i in range(0, len(flat), chunk)])
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
            decoded = pipe.vae.decode(z.to(pipe.vae.dtype)).sample  # z stays float32, as encode_images returns it
            loss = torch.nn.functional.mse_loss(decoded.float(), flat_x.float(), reduction="sum")
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


def invert_latents(pipe, latents: torch.Tensor, num_steps: int = 50,
                   condition: dict[str, Any] | None = None) -> torch.Tensor:
    """Clean sampler latents -> the initial noise, by the inversion of the pipeline family's sampler
    (``FamilyAdapter.invert``); ``condition`` defaults to the pipeline's unconditional branch."""
    return adapter_for(pipe).invert(latents, num_steps, condition)


def invert_images(pipe, images: np.ndarray | torch.Tensor, num_steps: int = 50, decoder_steps: int = 0
                  ) -> torch.Tensor:
    """Pixels -> estimated initial noise: encode, optional decoder inversion, then ``invert_latents``."""
    latents = encode_images(pipe, images)
    if decoder_steps > 0:
        latents = decoder_inversion(pipe, images, latents, steps=decoder_steps)
    return invert_latents(pipe, latents, num_steps)
