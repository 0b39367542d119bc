"""What a latent watermark needs from a diffusers pipeline family, and the helpers every family shares.

Why one Protocol: watermarking, inversion, calibration and attacks all need the same few things
from a pipeline (the shape of its initial noise, its ``latents=`` layout, its unconditional branch,
the denoiser's raw prediction, the inversion of its sampler and its documented defaults), and each
family answers them differently. ``image_wm.families.adapter_for`` resolves a pipeline to its
adapter once; no other module branches on a family.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Protocol

import torch

__all__ = ["FamilyAdapter", "Predictor", "full_precision", "refuse_frames", "private_helper", "documented_guidance"]

Predictor = Callable[[torch.Tensor, Any], torch.Tensor]


class FamilyAdapter(Protocol):
    """One resolved pipeline of one family."""

    family: str  # a stable name: "stable-diffusion", "stable-diffusion-xl", "stable-diffusion-3", "flux", ...
    inversion: str  # how ``invert`` runs the sampler backwards, in words
    video: bool  # makes clips: latents carry a frame axis
    pipe: Any

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet or transformer."""
        ...

    @property
    def image_side(self) -> int:
        """The native image side in pixels."""
        ...

    @property
    def default_guidance(self) -> float | None:
        """The pipeline's documented ``guidance_scale`` default; None where guidance is not an input."""
        ...

    @property
    def prediction(self) -> str:
        """What the denoiser predicts: ``epsilon``, ``v_prediction`` or ``flow velocity``."""
        ...

    def latent_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        """Initial-noise shape at the native size, in the layout the schemes see: ``(B, C, h, w)``
        (video: ``(B, C, F, h, w)``)."""
        ...

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Initial noise as the pipeline's ``latents=`` takes it: its device, dtype and layout."""
        ...

    def empty_condition(self, batch: int) -> dict[str, Any]:
        """The unconditional branch, as keyword arguments of ``predictor``."""
        ...

    def predictor(self, condition: dict[str, Any]) -> Predictor:
        """``model(latents, timestep)``: the denoiser's raw output under ``condition``."""
        ...

    def invert(self, latents: torch.Tensor, num_steps: int, condition: dict[str, Any] | None = None
               ) -> torch.Tensor:
        """Clean sampler latents -> the initial noise, by the inverse of this family's sampler, no guidance."""
        ...

    def noise_schedule(self, num_steps: int) -> dict[str, Any]:
        """What fixes ``invert``'s levels at ``num_steps``, as plain JSON values (a calibration fingerprint)."""
        ...


def refuse_frames(pipe: Any, frames: int | None) -> None:
    """An image family's ``latent_shape`` asked for a clip: one line saying so."""
    if frames is not None:
        raise ValueError(f"{type(pipe).__name__} makes images, not {frames}-frame clips")


def full_precision(predict: Predictor, dtype: torch.dtype) -> Predictor:
    """``predict`` called in the denoiser's ``dtype`` on float32 latents, its output back in float32:
    inversion accumulates dozens of small steps, which bfloat16's 8-bit mantissa would round away."""
    return lambda latents, t: predict(latents.to(dtype), t).float()


def private_helper(pipe: Any, name: str) -> Callable[..., Any]:
    """The pipeline's private diffusers method ``name`` (packing, rotary ids, size ids), or one
    ``ValueError`` saying the installed diffusers lacks it: these helpers are not public API, so a
    diffusers release may rename them, and every call to one goes through here."""
    helper = getattr(pipe, name, None)
    if not callable(helper):
        raise ValueError(f"{type(pipe).__name__}.{name} is missing in diffusers {version('diffusers')}; latent "
                         "watermarks on this family need a diffusers release that has it")
    return helper


def documented_guidance(pipe: Any) -> float | None:
    """The ``guidance_scale`` default of the pipeline's own ``__call__`` (what its documentation states)."""
    parameter = inspect.signature(type(pipe).__call__).parameters.get("guidance_scale")
    if parameter is None or not isinstance(parameter.default, (int, float)):
        return None
    return float(parameter.default)
