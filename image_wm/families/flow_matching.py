"""What the flow-matching transformer families (Stable Diffusion 3, FLUX.1) share: Euler inversion
up the sampler's own shifted sigmas.

A ``FlowMatchEulerDiscreteScheduler`` steps ``z <- z + (sigma_next - sigma) * velocity``; inversion
(``image_wm.sampler_inversion.euler_inversion``) takes those steps back at the levels a fresh copy
of the pipeline's scheduler gives for the latent size, set as the pipeline itself sets it: with a
resolution shift ``mu`` where the scheduler shifts dynamically, from the number of image tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from image_wm.families.base import Predictor, documented_guidance, full_precision
from image_wm.sampler_inversion import euler_inversion

__all__ = ["FlowMatchingAdapter"]


class FlowMatchingAdapter(ABC):
    """Common ground of transformer pipelines under a flow-matching Euler scheduler."""

    family = "flow-matching"
    inversion = "Euler inversion of flow matching on the empty prompt"
    video = False
    transformer_class = ""
    patch = 2  # latent rows and columns per image token
    max_shift_default = 1.16

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        transformer = getattr(pipe, "transformer", None)
        return (transformer is not None and type(transformer).__name__ == cls.transformer_class
                and type(pipe.scheduler).__name__.startswith("FlowMatch"))

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.transformer

    @property
    def default_guidance(self) -> float | None:
        return documented_guidance(self.pipe)

    def resolution_shift(self, tokens: int) -> float:
        """The pipelines' ``mu``: linear in the image-token count between the scheduler's bounds."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        config = self.pipe.scheduler.config
        return calculate_shift(tokens, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                               config.get("base_shift", 0.5), config.get("max_shift", self.max_shift_default))

    @property
    def prediction(self) -> str:
        return "flow velocity"

    def sigma_options(self, num_steps: int, tokens: int) -> dict[str, Any]:
        """Keyword arguments of ``set_timesteps`` as the pipeline passes them (SD3: a shift only
        with ``use_dynamic_shifting``, its own spacing)."""
        if self.pipe.scheduler.config.get("use_dynamic_shifting", False):
            return {"mu": self.resolution_shift(tokens)}
        return {}

    def levels(self, num_steps: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's ``(sigmas, timesteps)`` for ``num_steps`` at a ``height x width`` latent."""
        scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        options = self.sigma_options(num_steps, (height // self.patch) * (width // self.patch))
        scheduler.set_timesteps(None if "sigmas" in options else num_steps, device="cpu", **options)
        return scheduler.sigmas.double(), scheduler.timesteps

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, num_steps: int, condition: dict[str, Any] | None = None
               ) -> torch.Tensor:
        sigmas, timesteps = self.levels(num_steps, latents.shape[-2], latents.shape[-1])
        context = condition if condition is not None else self.empty_condition(len(latents))
        return euler_inversion(full_precision(self.predictor(context), self.pipe.transformer.dtype),
                               latents.to(self.pipe.device, torch.float32), sigmas, timesteps)

    def noise_schedule(self, num_steps: int) -> dict[str, Any]:
        """The scheduler's config: with the latent size it fixes the sigmas ``invert`` uses."""
        config = {k: v for k, v in self.pipe.scheduler.config.items() if not k.startswith("_")}
        return {"scheduler": type(self.pipe.scheduler).__name__, "config": config}

    @abstractmethod
    def empty_condition(self, batch: int) -> dict[str, Any]: ...

    @abstractmethod
    def predictor(self, condition: dict[str, Any]) -> Predictor: ...
