"""Images (or video frames) -> the initial diffusion noise that generated them.

Latent-noise watermarks live in the initial latent ``z_T``; detection must get back to it
from pixels: VAE-encode the image, optionally refine that latent by decoder inversion
(gradient steps on ``||D(z) - x||^2``, as in the PRC paper), then run DDIM backwards with
an empty prompt and no guidance. Works with any diffusers pipeline that has ``vae``,
``unet``, ``scheduler``, ``text_encoder`` and ``tokenizer``; a 3D UNet (video) takes latents
shaped ``(B, C, F, h, w)``. Everything is batched and runs on the pipeline's device.

The DDIM step is written out (rather than using ``DDIMInverseScheduler``) so the timestep
pairing is explicit: going from level ``t_prev`` up to ``t``, the noise is predicted at the
current latent with timestep ``t``, the usual first-order inversion.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["pixels_to_tensor", "encode_images", "decode_latents", "decoder_inversion", "ddim_invert",
           "invert_images", "empty_prompt_embeds"]


def pixels_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] or float [..., 3, H, W] in [-1, 1] -> float [..., 3, H, W] in [-1, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError("numpy images must be uint8 [..., H, W, 3]")
        return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1).movedim(-1, -3)
    return images.float()


def _scale(pipe) -> float:
    return float(pipe.vae.config.scaling_factor)


@torch.no_grad()
def encode_images(pipe, images: np.ndarray | torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Scaled posterior-mean latents of images [B, 3, H, W] (or frames [B, F, 3, H, W] -> [B, C, F, h, w])."""
    x = pixels_to_tensor(images)
    video = x.ndim == 5
    flat = x.reshape(-1, *x.shape[-3:]).to(pipe.device, pipe.vae.dtype)
    if len(flat) == 0:
        raise ValueError("no images to encode: the batch is empty")
    z = torch.cat([pipe.vae.encode(flat[i:i + chunk]).latent_dist.mean for i in range(0, len(flat), chunk)])
    z = z * _scale(pipe)
    if video:
        z = z.view(x.shape[0], x.shape[1], *z.shape[1:]).transpose(1, 2)
    return z


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Scaled latents -> uint8 images [B, H, W, 3] (video latents -> [B, F, H, W, 3])."""
    video = latents.ndim == 5
    flat = latents.transpose(1, 2).reshape(-1, latents.shape[1], *latents.shape[-2:]) if video else latents
    x = torch.cat([pipe.vae.decode(flat[i:i + chunk] / _scale(pipe)).sample for i in range(0, len(flat), chunk)])
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
    z = (z / _scale(pipe)).detach().clone().requires_grad_(True)
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
    z = z.detach() * _scale(pipe)
    if video:
        z = z.view(x.shape[0], x.shape[1], *z.shape[1:]).transpose(1, 2)
    return z


@torch.no_grad()
def empty_prompt_embeds(pipe, batch: int) -> torch.Tensor:
    embeds = pipe.encode_prompt([""], pipe.device, 1, False)[0]
    return embeds.expand(batch, -1, -1)


def _alphas(pipe, num_steps: int) -> tuple[torch.Tensor, list[int], float]:
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_steps)
    timesteps = [int(t) for t in scheduler.timesteps]  # descending
    final = float(scheduler.final_alpha_cumprod)
    return scheduler.alphas_cumprod, timesteps, final


@torch.no_grad()
def ddim_invert(pipe, latents: torch.Tensor, num_steps: int = 50, prompt_embeds: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Deterministic DDIM inversion of clean (scaled) latents to the initial noise, no guidance."""
    alphas, timesteps, final = _alphas(pipe, num_steps)
    context = prompt_embeds if prompt_embeds is not None else empty_prompt_embeds(pipe, len(latents))
    z = latents.to(pipe.device, pipe.unet.dtype)
    a_prev = final
    for t in reversed(timesteps):
        a_t = float(alphas[t])
        eps = pipe.unet(z, t, encoder_hidden_states=context).sample
        x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
        z = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps
        a_prev = a_t
    return z


def invert_images(pipe, images: np.ndarray | torch.Tensor, num_steps: int = 50, decoder_steps: int = 0
                  ) -> torch.Tensor:
    """Pixels -> estimated initial noise: encode, optional decoder inversion, DDIM inversion."""
    latents = encode_images(pipe, images)
    if decoder_steps > 0:
        latents = decoder_inversion(pipe, images, latents, steps=decoder_steps)
    return ddim_invert(pipe, latents, num_steps)
