"""FLUX.1 (dev and schnell): a ``FluxTransformer2DModel`` under a flow-matching scheduler.

The pipeline takes its latents packed, each 2x2 patch as one token (``(B, hw/4, 4C)``), and draws
its noise as ``(B, C, h, w)`` before packing; the schemes work in that unpacked layout (Tree-Ring's
rings need the spatial one) and ``pipeline_latents`` packs for ``latents=``. The transformer takes
rotary ids for the patches and the timestep divided by 1000. FLUX's native size is the pipeline's
``default_sample_size``, not a config entry.

FLUX.1 dev has no unconditional branch: its guidance is distilled into the transformer as an
input. For the empty prompt, though, the guided prediction of the teacher it was distilled from
equals the unguided one (``u + g (u - u) = u``), so inversion runs on the empty prompt at
``INVERSION_GUIDANCE`` = 1, the value at which the student is asked for the teacher's plain
prediction. Which value inverts best on a trained FLUX is not measured (none can be loaded here).
FLUX.1 schnell has no guidance input at all, so its default guidance is None.

Only ``FluxPipeline`` and ``FluxImg2ImgPipeline`` take the packed noise alone: Kontext, Fill and
Control add image tokens or channels, so there is no plain text-to-image branch to invert on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from image_wm.families.base import Predictor, documented_guidance, private_helper, refuse_frames
from image_wm.families.flow_matching import FlowMatchingAdapter

__all__ = ["FluxAdapter", "INVERSION_GUIDANCE"]

INVERSION_GUIDANCE = 1.0
PIPELINES = ("FluxPipeline", "FluxImg2ImgPipeline")


class FluxAdapter(FlowMatchingAdapter):
    family = "flux"
    transformer_class = "FluxTransformer2DModel"
    max_shift_default = 1.15

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        return super().matches(pipe) and type(pipe).__name__ in PIPELINES

    @property
    def guidance_embedded(self) -> bool:
        return bool(self.pipe.transformer.config.guidance_embeds)

    @property
    def default_guidance(self) -> float | None:
        return documented_guidance(self.pipe) if self.guidance_embedded else None

    @property
    def image_side(self) -> int:
        return int(self.pipe.default_sample_size) * int(self.pipe.vae_scale_factor)

    def latent_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        refuse_frames(self.pipe, frames)
        side = 2 * (int(self.pipe.default_sample_size) // 2)  # FluxPipeline's rows, in whole 2x2 patches
        return batch, int(self.pipe.transformer.config.in_channels) // 4, side, side

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.pack(latents.to(self.pipe.device, self.pipe.transformer.dtype))

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        return private_helper(self.pipe, "_pack_latents")(latents, *latents.shape)

    def unpack(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        scale = int(self.pipe.vae_scale_factor)
        return private_helper(self.pipe, "_unpack_latents")(tokens, height * scale, width * scale, scale)

    def sigma_options(self, num_steps: int, tokens: int) -> dict[str, Any]:
        """FLUX always shifts by ``mu`` and passes its own spacing ``linspace(1, 1/n, n)`` unless the
        scheduler uses ``use_flow_sigmas``."""
        options: dict[str, Any] = {"mu": self.resolution_shift(tokens)}
        if not self.pipe.scheduler.config.get("use_flow_sigmas", False):
            options["sigmas"] = np.linspace(1.0, 1 / num_steps, num_steps)
        return options

    @torch.no_grad()
    def empty_condition(self, batch: int) -> dict[str, Any]:
        pipe = self.pipe
        embeds, pooled, text_ids = pipe.encode_prompt([""], None, device=pipe.device, num_images_per_prompt=1)
        condition = {"encoder_hidden_states": embeds.expand(batch, -1, -1), "pooled_projections": pooled.expand(batch, -1),
                     "txt_ids": text_ids}
        if self.guidance_embedded:
            condition["guidance"] = torch.full((batch,), INVERSION_GUIDANCE, device=pipe.device)
        return condition

    def predictor(self, condition: dict[str, Any]) -> Predictor:
        image_ids: dict[tuple, torch.Tensor] = {}  # the rotary ids of each latent size, made at its first step

        def velocity(latents: torch.Tensor, t: Any) -> torch.Tensor:
            _, _, height, width = latents.shape
            key = (height, width, latents.device, latents.dtype)
            if key not in image_ids:
                image_ids[key] = private_helper(self.pipe, "_prepare_latent_image_ids")(
                    len(latents), height // 2, width // 2, latents.device, latents.dtype)
            t = torch.as_tensor(t, device=latents.device, dtype=latents.dtype).expand(len(latents)) / 1000
            out = self.pipe.transformer(hidden_states=self.pack(latents), timestep=t, img_ids=image_ids[key],
                                        return_dict=False, **condition)[0]
            return self.unpack(out, height, width)

        return velocity
