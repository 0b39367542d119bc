"""Architectures of the miniature world: the exact diffusers classes Stable Diffusion uses, made small.

Why these sizes (64x64 RGB scenes, see ``scenes.py``):

* ``AutoencoderKL`` with downsampling factor 4 (three blocks) and 4 latent channels: a
  16x16x4 latent (1024 entries) per image. Factor 8 would leave 8x8x4 = 256 entries, too few
  for a latent watermark to carry a test statistic; factor 4 keeps the UNet at 16x16 where
  CPU training and inference are cheap. Groups of 8 channels in every GroupNorm (diffusers'
  default of 32 groups on 32-channel blocks is per-channel normalisation, which cannot
  reproduce flat colours). No mid-block attention: at 16x16 it costs time and adds nothing
  the convolutions do not already see.
* ``UNet2DConditionModel`` at 16x16 with cross-attention to the frozen MiniLM token states
  (384-dimensional, at most 16 tokens with [CLS]/[SEP]) at the 8x8 and 4x4 levels only:
  attention over 256 tokens with 8-wide heads took half of a CPU training step; moving it
  down one level and using 4 heads of 32 halves the step time.
* ``UNet3DConditionModel`` with the same block widths, so its spatial layers start from the
  image UNet's weights and only the temporal layers are learnt from scratch.
* ``DDIMScheduler`` with Stable Diffusion's scaled-linear betas and epsilon prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = [
    "WEIGHTS_DIR", "TEXT_MAX_TOKENS", "vae_config", "unet_config", "unet3d_config", "scheduler_config",
    "build_vae", "build_unet", "build_unet3d", "build_scheduler", "load_text_encoder", "embed_captions",
]

WEIGHTS_DIR = Path(__file__).with_name("weights")
TEXT_MAX_TOKENS = 16  # every scene caption fits in 14 word pieces plus [CLS] and [SEP]


def vae_config() -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=8,
        mid_block_add_attention=False,
    )


def unet_config() -> dict:
    return dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128, 128), norm_num_groups=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=384, attention_head_dim=4,  # diffusers' legacy name: 4 heads of 32
    )


def unet3d_config() -> dict:
    """The image UNet's layout with 3D blocks (the spatial weights transfer one to one)."""
    cfg = unet_config()
    return dict(
        sample_size=cfg["sample_size"], in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=cfg["block_out_channels"], norm_num_groups=cfg["norm_num_groups"],
        down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
        # here attention_head_dim is the width of a head: 128 / 32 = 4 heads, as in the image UNet
        cross_attention_dim=384, attention_head_dim=cfg["block_out_channels"][-1] // cfg["attention_head_dim"],
    )


def scheduler_config() -> dict:
    return dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )


def build_vae():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**vae_config())
    # Start the posterior with a tiny variance: the decoder first learns a near-deterministic code.
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels:].fill_(-6.0)
    return vae


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config())


def build_unet3d():
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(**unet3d_config())


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config())


def load_text_encoder(device: str | torch.device = "cpu"):
    """The frozen MiniLM encoder and its tokenizer, capped at ``TEXT_MAX_TOKENS`` tokens."""
    from provenance.models import load_embedder

    encoder, tokenizer = load_embedder(device=str(device))
    tokenizer.model_max_length = TEXT_MAX_TOKENS
    encoder.requires_grad_(False)
    return encoder, tokenizer


@torch.no_grad()
def embed_captions(encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    """Token states exactly as ``StableDiffusionPipeline.encode_prompt`` computes them.

    Padded to ``model_max_length`` and, as in the pipeline, without an attention mask
    (BERT's config has no ``use_attention_mask``), so training sees what inference sees.
    """
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return encoder(ids.to(encoder.device))[0]
