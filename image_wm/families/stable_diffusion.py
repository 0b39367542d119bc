"""Stable Diffusion 1.x / 2.x (and the reference models): a 2D UNet on text-encoder states.

The UNet predicts noise (``epsilon``) or ``v`` (Stable Diffusion 2.x at 768 px) under a
DDPM-family scheduler (DDIM, PNDM, Euler, DPM-Solver, ...). Whatever scheduler generated,
inversion runs DDIM's levels from that scheduler's config (``image_wm.sampler_inversion``), on the
empty prompt's encoding: the unconditional half of classifier-free guidance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from image_wm.families.base import Predictor, documented_guidance, full_precision, refuse_frames
from image_wm.sampler_inversion import ddim_inversion, ddim_scheduler

__all__ = ["StableDiffusionAdapter"]

PREDICTIONS = ("epsilon", "v_prediction")


class StableDiffusionAdapter:
    """A UNet pipeline with text-encoder conditioning only, predicting noise or ``v``."""

    family = "stable-diffusion"
    inversion = "DDIM inversion on the empty prompt"
    video = False
    unet_class = "UNet2DConditionModel"

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        unet = getattr(pipe, "unet", None)
        return (unet is not None and type(unet).__name__ == cls.unet_class
                and getattr(unet.config, "addition_embed_type", None) is None
                and pipe.scheduler.config.get("prediction_type", "epsilon") in PREDICTIONS)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def image_side(self) -> int:
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    @property
    def default_guidance(self) -> float | None:
        return documented_guidance(self.pipe)

    @property
    def prediction(self) -> str:
        return str(self.pipe.scheduler.config.get("prediction_type", "epsilon"))

    def latent_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        refuse_frames(self.pipe, frames)
        side = int(self.pipe.unet.config.sample_size)
        return batch, int(self.pipe.unet.config.in_channels), side, side

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.to(self.pipe.device, self.pipe.unet.dtype)

    @torch.no_grad()
    def empty_condition(self, batch: int) -> dict[str, Any]:
        embeds = self.pipe.encode_prompt([""], self.pipe.device, 1, False)[0]
        return {"encoder_hidden_states": embeds.expand(batch, -1, -1)}

    def predictor(self, condition: dict[str, Any]) -> Predictor:
        return lambda latents, t: self.pipe.unet(latents, t, **condition).sample

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, num_steps: int, condition: dict[str, Any] | None = None
               ) -> torch.Tensor:
        scheduler = ddim_scheduler(self.pipe.scheduler.config, num_steps)
        context = condition if condition is not None else self.empty_condition(len(latents))
        return ddim_inversion(full_precision(self.predictor(context), self.pipe.unet.dtype),
                              latents.to(self.pipe.device, torch.float32),
                              scheduler.alphas_cumprod, [int(t) for t in scheduler.timesteps],
                              float(scheduler.final_alpha_cumprod), scheduler.config.prediction_type)

    def noise_schedule(self, num_steps: int) -> dict[str, Any]:
        """DDIM's timesteps and (rounded) alphas: the levels ``invert`` uses."""
        scheduler = ddim_scheduler(self.pipe.scheduler.config, num_steps)
        return {"scheduler": type(scheduler).__name__, "timesteps": [int(t) for t in scheduler.timesteps],
                "alphas_cumprod": np.round(scheduler.alphas_cumprod.double().numpy(), 6).tolist()}
