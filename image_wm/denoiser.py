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
* ``flux``: a ``FluxTransformer2DModel`` (FLUX.1 dev and schnell) with a flow-matching scheduler.
  The pipeline takes its latents packed, each 2x2 patch as one token (``(B, hw/4, 4C)``), and
  draws its noise as ``(B, C, h, w)`` before packing; the schemes work in that unpacked layout
  (Tree-Ring's rings need the spatial one) and ``pipeline_latents`` packs for ``latents=``.

Inversion conditions on the pipeline's own unconditional branch, the half of classifier-free
guidance that has no prompt: the empty prompt's encoding, or zeros where the pipeline forces
them (SDXL's ``force_zeros_for_empty_prompt``), with SDXL's size ids for the native size. FLUX.1
dev has no unconditional branch: its guidance is distilled into the transformer as an input. For
the empty prompt, though, the guided prediction of the teacher it was distilled from equals the
unguided one (``u + g (u - u) = u``), so inversion runs on the empty prompt at
``FLUX_INVERSION_GUIDANCE`` = 1, the value at which the student is asked for the teacher's plain
prediction. Which value inverts best on a trained FLUX is not measured (none can be loaded here).

Not supported: ``sample`` prediction, PixArt and other DiTs with learned variance, and the FLUX
pipelines that take image conditioning (Kontext, Fill, Control).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import torch

__all__ = ["family", "denoiser", "latent_shape", "image_side", "pipeline_latents", "empty_condition", "predictor",
           "private_helper"]

SUPPORTED = ("a UNet2DConditionModel / UNet3DConditionModel predicting noise or v (Stable Diffusion 1.x/2.x, "
             "SDXL), an SD3Transformer2DModel (Stable Diffusion 3/3.5) or a FluxTransformer2DModel in a FluxPipeline "
             "(FLUX.1), the transformers with a flow-matching scheduler")
FLUX_INVERSION_GUIDANCE = 1.0
TRANSFORMER_FAMILIES = {"SD3Transformer2DModel": "flow", "FluxTransformer2DModel": "flux"}
# the FLUX pipelines whose latents are the packed noise alone: Kontext, Fill and Control add image
# tokens or channels, so there is no plain text-to-image branch to invert on
FLUX_PIPELINES = ("FluxPipeline", "FluxImg2ImgPipeline")


def family(pipe: Any) -> str:
    """``"unet"``, ``"flow"`` or ``"flux"``; a ``ValueError`` naming the pipeline for anything else."""
    unet, transformer = getattr(pipe, "unet", None), getattr(pipe, "transformer", None)
    if unet is not None:  # any UNet called as unet(z, t, encoder_hidden_states=...[, added_cond_kwargs]), noise out
        extras = _unet_extras(pipe)
        if (extras is None or (extras == "text_time" and callable(getattr(pipe, "_get_add_time_ids", None)))) \
                and pipe.scheduler.config.get("prediction_type", "epsilon") in ("epsilon", "v_prediction"):
            return "unet"
    elif transformer is not None and type(pipe.scheduler).__name__.startswith("FlowMatch"):
        kind = TRANSFORMER_FAMILIES.get(type(transformer).__name__)
        if kind == "flow" or (kind == "flux" and type(pipe).__name__ in FLUX_PIPELINES):
            return kind
    raise ValueError(f"{type(pipe).__name__} is not a supported pipeline: latent watermarks need {SUPPORTED}")


def _unet_extras(pipe: Any) -> str | None:
    """What the UNet takes beside text states: None, or SDXL's ``"text_time"`` (pooled text, size ids)."""
    return getattr(pipe.unet.config, "addition_embed_type", None)


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's UNet or transformer."""
    return pipe.unet if family(pipe) == "unet" else pipe.transformer


def latent_shape(pipe: Any, batch: int) -> tuple[int, int, int, int]:
    """Initial-noise shape ``(batch, C, h, w)`` of one image at the model's native size (for FLUX
    the unpacked shape; FLUX's native size is the pipeline's ``default_sample_size``, not a config)."""
    config = denoiser(pipe).config
    if family(pipe) == "flux":  # FluxPipeline's rows, rounded down to whole 2x2 patches
        side = 2 * (int(pipe.default_sample_size) // 2)
        return batch, int(config.in_channels) // 4, side, side
    side = int(config.sample_size)
    return batch, int(config.in_channels), side, side


def image_side(pipe: Any) -> int:
    """The model's native image side in pixels."""
    rows = pipe.default_sample_size if family(pipe) == "flux" else denoiser(pipe).config.sample_size
    return int(rows) * int(pipe.vae_scale_factor)


def pipeline_latents(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """Initial noise ``(B, C, h, w)`` as the pipeline's ``latents=`` takes it: on its device and in
    its dtype, and for FLUX packed into 2x2-patch tokens, as ``FluxPipeline`` packs its own noise."""
    latents = latents.to(pipe.device, denoiser(pipe).dtype)
    return _pack(pipe, latents) if family(pipe) == "flux" else latents


def private_helper(pipe: Any, name: str) -> Callable[..., Any]:
    """The pipeline's private diffusers method ``name`` (packing, rotary ids, size ids), or one
    ``ValueError`` saying the installed diffusers lacks it: these helpers are not public API, so a
    diffusers release may rename them, and every call to one goes through here."""
    helper = getattr(pipe, name, None)
    if not callable(helper):
        raise ValueError(f"{type(pipe).__name__}.{name} is missing in diffusers {version('diffusers')}; latent "
                         "watermarks on this family need a diffusers release that has it")
    return helper


def _pack(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    return private_helper(pipe, "_pack_latents")(latents, *latents.shape)


def _unpack(pipe: Any, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    scale = int(pipe.vae_scale_factor)
    return private_helper(pipe, "_unpack_latents")(tokens, height * scale, width * scale, scale)


@torch.no_grad()
def empty_condition(pipe: Any, batch: int) -> dict[str, Any]:
    """The pipeline's unconditional conditioning, as keyword arguments of ``predictor`` (what inversion runs with)."""
    kind = family(pipe)
    if kind == "flux":
        embeds, pooled, text_ids = pipe.encode_prompt([""], None, device=pipe.device, num_images_per_prompt=1)
        condition = {"encoder_hidden_states": embeds.expand(batch, -1, -1), "pooled_projections": pooled.expand(batch, -1),
                     "txt_ids": text_ids}
        if pipe.transformer.config.guidance_embeds:
            condition["guidance"] = torch.full((batch,), FLUX_INVERSION_GUIDANCE, device=pipe.device)
        return condition
    if kind == "flow":
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
    time_ids = private_helper(pipe, "_get_add_time_ids")((side, side), (0, 0), (side, side), dtype=embeds.dtype,
                                                         text_encoder_projection_dim=projection).to(pipe.device)
    return {"encoder_hidden_states": embeds.expand(batch, -1, -1),
            "added_cond_kwargs": {"text_embeds": pooled.expand(batch, -1), "time_ids": time_ids.expand(batch, -1)}}


def predictor(pipe: Any, condition: dict[str, Any]) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """``model(latents, timestep)``: the denoiser's raw output (noise, v or velocity, as it was
    trained) under ``condition``, resolved once so a sampler loop does not re-inspect the pipeline."""
    kind = family(pipe)
    if kind == "unet":
        return lambda latents, t: pipe.unet(latents, t, **condition).sample

    def transformer(latents: torch.Tensor, t: Any) -> torch.Tensor:
        t = torch.as_tensor(t, device=latents.device, dtype=latents.dtype).expand(len(latents))
        return pipe.transformer(hidden_states=latents, timestep=t, return_dict=False, **condition)[0]

    image_ids: dict[tuple, torch.Tensor] = {}  # the rotary ids of each latent size, made at its first step

    def flux(latents: torch.Tensor, t: Any) -> torch.Tensor:
        """FLUX takes packed tokens, their 2x2 patches' rotary ids and the timestep divided by 1000."""
        _, _, height, width = latents.shape
        key = (height, width, latents.device, latents.dtype)
        if key not in image_ids:
            image_ids[key] = private_helper(pipe, "_prepare_latent_image_ids")(
                len(latents), height // 2, width // 2, latents.device, latents.dtype)
        t = torch.as_tensor(t, device=latents.device, dtype=latents.dtype).expand(len(latents)) / 1000
        out = pipe.transformer(hidden_states=_pack(pipe, latents), timestep=t, img_ids=image_ids[key],
                               return_dict=False, **condition)[0]
        return _unpack(pipe, out, height, width)

    return flux if kind == "flux" else transformer
