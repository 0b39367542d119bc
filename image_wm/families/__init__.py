"""Diffusers pipeline families behind one Protocol (``FamilyAdapter``), one module each.

``adapter_for(pipe)`` resolves a pipeline to its family's adapter, or refuses it in one line
naming what is supported. Supported: Stable Diffusion 1.x/2.x (noise or ``v`` prediction, any
DDPM-family scheduler; the reference models), SDXL, Stable Diffusion 3/3.5, FLUX.1 (dev and
schnell) and text-to-video UNets. Not supported: ``sample`` prediction, PixArt and other DiTs with
learned variance, and the FLUX pipelines that take image conditioning (Kontext, Fill, Control).
"""

from __future__ import annotations

from typing import Any

from image_wm.families.base import FamilyAdapter, Predictor, documented_guidance, private_helper
from image_wm.families.flux import FluxAdapter
from image_wm.families.stable_diffusion import StableDiffusionAdapter
from image_wm.families.stable_diffusion_3 import StableDiffusion3Adapter
from image_wm.families.stable_diffusion_xl import StableDiffusionXLAdapter
from image_wm.families.text_to_video import TextToVideoAdapter

__all__ = ["FamilyAdapter", "Predictor", "ADAPTERS", "SUPPORTED", "adapter_for", "documented_guidance",
           "private_helper"]

ADAPTERS = (StableDiffusionAdapter, StableDiffusionXLAdapter, TextToVideoAdapter, StableDiffusion3Adapter,
            FluxAdapter)
SUPPORTED = ("a UNet2DConditionModel / UNet3DConditionModel predicting noise or v (Stable Diffusion 1.x/2.x, "
             "SDXL, text-to-video), an SD3Transformer2DModel (Stable Diffusion 3/3.5) or a FluxTransformer2DModel in a "
             "FluxPipeline (FLUX.1), the transformers with a flow-matching scheduler")


def adapter_for(pipe: Any) -> FamilyAdapter:
    """The adapter of ``pipe``'s family; a ``ValueError`` naming the pipeline for anything unsupported."""
    for adapter in ADAPTERS:
        if adapter.matches(pipe):
            return adapter(pipe)
    raise ValueError(f"{type(pipe).__name__} is not a supported pipeline: latent watermarks need {SUPPORTED}")
