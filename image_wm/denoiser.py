"""One view of a diffusers pipeline's denoiser, so watermarking and inversion need not care which it is.

Why: a latent watermark needs four things from a pipeline: the shape of its initial noise, the
denoiser's dtype, its unconditional prediction at a given noise level (inversion), and
whether the scheduler is DDPM-family or flow matching. Two families are supported, and anything
else is refused with one line that says so, rather than failing deep inside a sampler:

* ``unet``: a ``UNet2DConditionModel`` or ``UNet3DConditionModel`` predicting noise
  (``epsilon``) or ``v`` (Stable Diffusion 2.x at 768 px) with a DDPM-family scheduler,
  conditioned on text-encoder states (Stable Diffusion 1.x / 2.x, the reference models,
  ModelScope-style video) or, in SDXL, also on pooled text and size ids (``added_cond_kwargs``).
* ``flow``: an ``SD3Transformer2DModel`` (Stable Diffusion 3 / 3.5: an MMDiT) predicting the
  flow-matching velocity with a ``FlowMatchEulerDiscreteScheduler``. Its latents keep the
  ``(B, C, h, w)`` layout, so every latent scheme's noise goes in through ``latents=`` unchanged.

Inversion conditions on the pipeline's own unconditional branch, the half of classifier-free
guidance that has no prompt: the empty prompt's encoding, or zeros where the pipeline forces
them (SDXL's ``force_zeros_for_empty_prompt``), with SDXL's size ids for the native size.

Not supported: ``sample`` prediction, FLUX (packed latents, and its guidance is distilled into
the transformer, so there is no unconditional branch to invert on: which guidance value inverts
best would need a trained FLUX to measure), PixArt and other DiTs with learned variance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["family", "denoiser", "latent_shape", "image_side", "empty_condition", "predictor"]

SUPPORTED = ("a UNet2DConditionModel / UNet3DConditionModel predicting noise or v (Stable Diffusion 1.x/2.x, "
             "SDXL) or an SD3Transformer2DModel with a flow-matching scheduler (Stable Diffusion 3/3.5)")


def family(pipe: Any) -> str:
    """``"unet"`` or ``"flow"``; a ``ValueError`` naming the pipeline for anything else."""
    unet, transformer = getattr(pipe, "unet", None), getattr(pipe, "transformer", None)
    if unet is not None:  # any UNet called as unet(z, t, encoder_hidden_states=...[, added_cond_kwargs]), noise out
        extras = _unet_extras(pipe)
        if (extras is None or (extras == "text_time" and hasattr(pipe, "_get_add_time_ids"))) \
                and pipe.scheduler.config.get("prediction_type", "epsilon") in ("epsilon", "v_prediction"):
            return "unet"
    elif transformer is not None and type(transformer).__name__ == "SD3Transformer2DModel":
        if type(pipe.scheduler).__name__.startswith("FlowMatch"):
            return "flow"
    raise ValueError(f"{type(pipe).__name__} is not a supported pipeline: latent watermarks need {SUPPORTED}")


def _unet_extras(pipe: Any) -> str | None:
    """What the UNet takes beside text states: None, or SDXL's ``"text_time"`` (pooled text, size ids)."""
    return getattr(pipe.unet.config, "addition_embed_type", None)


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's UNet or transformer."""
    return pipe.unet if family(pipe) == "unet" else pipe.transformer


def latent_shape(pipe: Any, batch: int) -> tuple[int, int, int, int]:
    """Initial-noise shape ``(batch, C, h, w)`` of one image at the model's native size."""
    config = denoiser(pipe).config
    side = int(config.sample_size)
    return batch, int(config.in_channels), side, side


def image_side(pipe: Any) -> int:
    """The model's native image side in pixels."""
    return int(denoiser(pipe).config.sample_size) * int(pipe.vae_scale_factor)


@torch.no_grad()
def empty_condition(pipe: Any, batch: int) -> dict[str, Any]:
    """The pipeline's unconditional conditioning, as keyword arguments of ``predictor`` (what inversion runs with)."""
    if family(pipe) == "flow":
        embeds, _, pooled, _ = pipe.encode_prompt([""], None, None, device=pipe.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return {"encoder_hidden_states": embeds.expand(batch, -1, -1), "pooled_projections": pooled.expand(batch, -1)}
    if _unet_extras(pipe) is None:
        embeds = pipe.encode_prompt([""], pipe.device, 1, False)[0]
        return {"encoder_hidden_states": embeds.expand(batch, -1, -1)}
    _, embeds, _, pooled = pipe.encode_prompt([""], device=pipe.device, num_images_per_prompt=1,
                                              do_classifier_free_guidance=True)  # the negative half: SDXL's own
    side = image_side(pipe)
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    projection = int(pooled.shape[-1]) if encoder_2 is None else encoder_2.config.projection_dim
    time_ids = pipe._get_add_time_ids((side, side), (0, 0), (side, side), dtype=embeds.dtype,
                                      text_encoder_projection_dim=projection).to(pipe.device)
    return {"encoder_hidden_states": embeds.expand(batch, -1, -1),
            "added_cond_kwargs": {"text_embeds": pooled.expand(batch, -1), "time_ids": time_ids.expand(batch, -1)}}


def predictor(pipe: Any, condition: dict[str, Any]) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """``model(latents, timestep)``: the denoiser's raw output (noise, v or velocity, as it was
    trained) under ``condition``, resolved once so a sampler loop does not re-inspect the pipeline."""
    if family(pipe) == "unet":
        return lambda latents, t: pipe.unet(latents, t, **condition).sample

    def transformer(latents: torch.Tensor, t: Any) -> torch.Tensor:
        t = torch.as_tensor(t, device=latents.device, dtype=latents.dtype).expand(len(latents))
        return pipe.transformer(hidden_states=latents, timestep=t, return_dict=False, **condition)[0]

    return transformer
