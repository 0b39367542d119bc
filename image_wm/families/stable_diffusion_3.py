"""Stable Diffusion 3 / 3.5: an MMDiT (``SD3Transformer2DModel``) predicting the flow-matching velocity.

Its latents keep the ``(B, C, h, w)`` layout, so every latent scheme's noise goes in through
``latents=`` unchanged; the scheduler spaces its own sigmas and, with ``use_dynamic_shifting``,
shifts them by the number of ``patch_size`` image tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from image_wm.families.base import Predictor, refuse_frames
from image_wm.families.flow_matching import FlowMatchingAdapter

__all__ = ["StableDiffusion3Adapter"]


class StableDiffusion3Adapter(FlowMatchingAdapter):
    family = "stable-diffusion-3"
    transformer_class = "SD3Transformer2DModel"

    def __init__(self, pipe: Any) -> None:
        super().__init__(pipe)
        self.patch = int(pipe.transformer.config.patch_size)

    @property
    def image_side(self) -> int:
        return int(self.pipe.transformer.config.sample_size) * int(self.pipe.vae_scale_factor)

    def latent_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        refuse_frames(self.pipe, frames)
        config = self.pipe.transformer.config
        return batch, int(config.in_channels), int(config.sample_size), int(config.sample_size)

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.to(self.pipe.device, self.pipe.transformer.dtype)

    @torch.no_grad()
    def empty_condition(self, batch: int) -> dict[str, Any]:
        embeds, _, pooled, _ = self.pipe.encode_prompt([""], None, None, device=self.pipe.device,
                                                       num_images_per_prompt=1, do_classifier_free_guidance=False)
        return {"encoder_hidden_states": embeds.expand(batch, -1, -1), "pooled_projections": pooled.expand(batch, -1)}

    def predictor(self, condition: dict[str, Any]) -> Predictor:
        def velocity(latents: torch.Tensor, t: Any) -> torch.Tensor:
            t = torch.as_tensor(t, device=latents.device, dtype=latents.dtype).expand(len(latents))
            return self.pipe.transformer(hidden_states=latents, timestep=t, return_dict=False, **condition)[0]

        return velocity
