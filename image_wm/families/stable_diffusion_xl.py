"""Stable Diffusion XL: a UNet on two text encoders' states, pooled text and size ids.

Its unconditional branch is the pipeline's own negative half: zeros where the pipeline forces them
for an empty prompt (``force_zeros_for_empty_prompt``), with the size ids of the native size.
"""

from __future__ import annotations

from typing import Any

import torch

from image_wm.families.base import private_helper
from image_wm.families.stable_diffusion import PREDICTIONS, StableDiffusionAdapter

__all__ = ["StableDiffusionXLAdapter"]


class StableDiffusionXLAdapter(StableDiffusionAdapter):
    """A UNet with ``text_time`` added conditioning (SDXL and its fine-tunes)."""

    family = "stable-diffusion-xl"

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        unet = getattr(pipe, "unet", None)
        return (unet is not None and type(unet).__name__ == cls.unet_class
                and getattr(unet.config, "addition_embed_type", None) == "text_time"
                and hasattr(pipe, "encode_prompt")
                and pipe.scheduler.config.get("prediction_type", "epsilon") in PREDICTIONS)

    @torch.no_grad()
    def empty_condition(self, batch: int) -> dict[str, Any]:
        pipe = self.pipe
        _, embeds, _, pooled = pipe.encode_prompt([""], device=pipe.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=True)  # the negative half: SDXL's own
        side = self.image_side
        encoder_2 = getattr(pipe, "text_encoder_2", None)
        projection = int(pooled.shape[-1]) if encoder_2 is None else encoder_2.config.projection_dim
        time_ids = private_helper(pipe, "_get_add_time_ids")((side, side), (0, 0), (side, side), dtype=embeds.dtype,
                                                             text_encoder_projection_dim=projection).to(pipe.device)
        return {"encoder_hidden_states": embeds.expand(batch, -1, -1),
                "added_cond_kwargs": {"text_embeds": pooled.expand(batch, -1), "time_ids": time_ids.expand(batch, -1)}}
