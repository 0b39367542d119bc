"""Tiny diffusers pipelines of the families the reference world does not cover, built offline.

Random-weight denoisers and text encoders (MiniLM's tokenizer stands in for CLIP's) around the
shipped reference VAE: they exercise the Stable Diffusion 3 and SDXL code paths, never a claim
about how a trained model of that family behaves.
"""

from __future__ import annotations

from typing import Any

import torch


def _tokenizer():
    from image_wm.reference.components import load_text_encoder

    return load_text_encoder("cpu")[1]


def _clip(tokenizer, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _reference_vae(shift_factor: float | None = None):
    from diffusers import AutoencoderKL

    from image_wm.reference.components import WEIGHTS_DIR

    vae = AutoencoderKL.from_pretrained(WEIGHTS_DIR / "vae")
    if shift_factor is not None:
        vae.register_to_config(shift_factor=shift_factor)
    return vae


def build_tiny_sd3(folder, dynamic_shift: bool = False) -> None:
    """A Stable Diffusion 3 folder (MMDiT, flow matching, no T5) at the reference world's 64 px; the
    VAE gets a ``shift_factor`` of 1.0, as SD3's VAE has one."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=16)
    shift = dict(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256) if dynamic_shift \
        else dict(shift=3.0)
    StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**shift), vae=_reference_vae(1.0),
        text_encoder=_clip(tokenizer, True), tokenizer=tokenizer, text_encoder_2=_clip(tokenizer, True),
        tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None).save_pretrained(folder)


def build_tiny_sdxl(folder) -> None:
    """An SDXL folder (two text encoders, pooled text and size ids, Euler sampling, zeros for the empty
    negative prompt) at the reference world's 64 px."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64, attention_head_dim=(2, 4),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    StableDiffusionXLPipeline(
        unet=unet, scheduler=scheduler, vae=_reference_vae(), text_encoder=_clip(tokenizer, False),
        tokenizer=tokenizer, text_encoder_2=_clip(tokenizer, True), tokenizer_2=tokenizer,
        add_watermarker=False).save_pretrained(folder)


def _t5(tokenizer):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=tokenizer.vocab_size, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id))


def build_tiny_flux(folder, guidance_embeds: bool = True) -> None:
    """A FLUX.1 folder (packed 2x2 latents, rotary position ids, distilled guidance embedding unless
    ``guidance_embeds=False`` as in FLUX.1-schnell, resolution-shifted flow matching) over the reference
    VAE (given a ``shift_factor``, as FLUX's VAE has). FLUX's native size is not in any config
    (``FluxPipeline.default_sample_size`` is 128 latent rows, 512 px over this VAE), so
    ``load_tiny_flux`` sets it to the reference world's 64 px."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8))
    shift = dict(shift=3.0, use_dynamic_shifting=True) if guidance_embeds else dict(shift=1.0)  # dev / schnell
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5,
                                                max_shift=1.15, **shift)
    FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_reference_vae(0.1),
                 text_encoder=_clip(tokenizer, False), tokenizer=tokenizer, text_encoder_2=_t5(tokenizer),
                 tokenizer_2=tokenizer).save_pretrained(folder)


BUILDERS = {"sd3": build_tiny_sd3, "sd3-dynamic-shift": lambda folder: build_tiny_sd3(folder, dynamic_shift=True),
            "sdxl": build_tiny_sdxl, "flux": build_tiny_flux,
            "flux-schnell": lambda folder: build_tiny_flux(folder, guidance_embeds=False)}


def assert_watermark_round_trip(pipe: Any, scheme: str, payload: bytes | None, name: str, images: int) -> None:
    """``images`` watermarked 64 px images, generated at the family's documented guidance (the
    ``WatermarkedPipeline`` default): each detected at FPR 0.01 (with its payload, if any), and none
    under another key."""
    from image_wm.pipeline import WatermarkedPipeline
    from provenance.keys import WatermarkKey

    pipeline = WatermarkedPipeline(pipe, scheme, WatermarkKey.from_seed(name), model_name=f"tiny-{name}", calibrate=False)
    made = pipeline(["a red star above a blue ring"] * images, payload=payload, seed=11)
    assert made.images.shape == (images, 64, 64, 3) and made.records[0].latent_shape == [4, 16, 16]
    found = pipeline.detect(made.images, fpr=0.01)
    assert all(r.detected for r in found)
    if payload is not None:
        assert all(r.payload == payload.hex() for r in found)
    stranger = WatermarkedPipeline(pipe, scheme, WatermarkKey.from_seed(f"{name}-other"), calibrate=False)
    assert not any(r.detected for r in stranger.detect(made.images, fpr=0.01))


def cli_detection(folder, scheme: str, tmp_path, *options: str) -> dict[str, Any]:
    """``image generate`` one image with ``--model folder``, then ``image detect --json`` it: the detection."""
    import json

    from click.testing import CliRunner

    import cli
    from provenance.keys import WatermarkKey

    WatermarkKey.from_seed(f"{scheme}-cli").save(tmp_path / "key.json")
    image = tmp_path / "made.png"
    common = ["--key", str(tmp_path / "key.json"), "--scheme", scheme, "--model", str(folder), *options]
    made = CliRunner().invoke(cli.main, ["image", "generate", *common, "--prompt", "a red star", "--out", str(image)])
    assert made.exit_code == 0, made.output
    found = CliRunner().invoke(cli.main, ["image", "detect", *common, "--json", str(image)])
    assert found.exit_code == 0, found.output
    return json.loads(found.stdout)


def unconditioned_call(pipe: Any, module: torch.nn.Module) -> dict[str, Any]:
    """The keyword arguments ``module`` gets for the unconditional half of the pipeline's first
    guided step (the first of the two halves diffusers batches together)."""
    seen = []
    hook = module.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        pipe(["a red star"], num_inference_steps=1, guidance_scale=2.0, output_type="latent")
    finally:
        hook.remove()

    def first_half(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: first_half(v) for k, v in value.items()}
        return value[:1] if isinstance(value, torch.Tensor) and value.ndim > 0 and len(value) == 2 else value

    return {name: first_half(value) for name, value in seen[0].items()}
