"""Real pipeline folders load as themselves: stored dtype, family guidance, ``image inspect``, captioners.

The folders are tiny random-weight Stable Diffusion 1.x, SDXL, SD3 and FLUX.1 pipelines
(``tiny_pipelines``, and an SD 1.x one built here) re-saved in bfloat16, as real checkpoints
ship. They test that loading keeps the folder's dtype (or the one asked for), that generation
uses the family's documented guidance, that ``image inspect`` reports what was understood, that a
watermark round-trips in bfloat16, and that SEAL asks for a captioner that fits the model. Random
weights say nothing about robustness on a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cli
from image_wm.captioning import TransformersCaptioner
from image_wm.inversion import invert_latents
from image_wm.loading import load_model, resolve_dtype, stored_dtype
from provenance.keys import WatermarkKey

# each family's documented ``guidance_scale`` default (the pipelines' own __call__ signatures)
FAMILY_GUIDANCE = {"sd": 7.5, "sdxl": 5.0, "sd3": 7.0, "flux": 3.5, "flux-schnell": None}
FAMILIES = {"sd": "stable-diffusion", "sdxl": "stable-diffusion-xl", "sd3": "stable-diffusion-3", "flux": "flux",
            "flux-schnell": "flux"}


def build_tiny_sd(folder: Path) -> None:
    """A Stable Diffusion 1.x folder: a UNet on one CLIP text encoder, PNDM sampling, over the reference VAE."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from image_wm.reference.components import WEIGHTS_DIR, load_text_encoder

    tokenizer = load_text_encoder("cpu")[1]
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=(2, 4))
    encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    StableDiffusionPipeline(unet=unet, scheduler=scheduler, vae=AutoencoderKL.from_pretrained(WEIGHTS_DIR / "vae"),
                            text_encoder=encoder, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)


@pytest.fixture(scope="module")
def saved_in(tiny_folder, tmp_path_factory):
    """``saved_in(kind, dtype)``: the tiny ``kind`` folder re-saved with its weights in ``dtype``."""
    from image_wm.loading import load_pipeline

    made: dict[tuple[str, torch.dtype], Path] = {}

    def folder(kind: str, dtype: torch.dtype = torch.bfloat16) -> Path:
        if (kind, dtype) not in made:
            source = tmp_path_factory.mktemp("tiny-sd") if kind == "sd" else tiny_folder(kind)
            if kind == "sd":
                build_tiny_sd(source)
            target = tmp_path_factory.mktemp(f"{kind}-{str(dtype)[6:]}")
            load_pipeline(source, dtype="float32", device="cpu").to(dtype).save_pretrained(target)
            made[kind, dtype] = target
        return made[kind, dtype]

    return folder


def small(model):
    """FLUX's native size is the pipeline's ``default_sample_size`` (512 px here): 64 px keeps tests fast."""
    if model.adapter.family == "flux":
        model.pipe.default_sample_size = 16
    return model


@pytest.mark.parametrize("kind", ["sd", "sdxl", "sd3", "flux"])
def test_a_bfloat16_folder_loads_and_round_trips_in_bfloat16_at_its_familys_guidance(saved_in, kind) -> None:
    """Pixels round-trip on the transformers. A random UNet's samples lie far off any VAE's latent
    manifold (``test_unet_pipelines``), so for the UNet families the round trip is the sampler's
    latents, inverted in float32 around the bfloat16 UNet."""
    folder = saved_in(kind)
    assert stored_dtype(folder) == torch.bfloat16
    model = small(load_model(folder, device="cpu"))
    assert model.adapter.family == FAMILIES[kind] and model.guidance == FAMILY_GUIDANCE[kind]
    assert {p.dtype for p in model.adapter.denoiser.parameters()} == {torch.bfloat16}
    assert model.pipe.vae.dtype == torch.bfloat16
    key, payload, prompts = WatermarkKey.from_seed(f"bf16-{kind}"), b"\x5a\xc3", ["a red star above a blue ring"] * 3
    pipeline = model.watermarked("gaussian-shading", key, calibrate=False)
    made = pipeline(prompts, payload=payload, seed=5)
    assert made.images.shape == (3, 64, 64, 3) and made.records[0].guidance_scale == FAMILY_GUIDANCE[kind]
    if kind in ("sd", "sdxl"):
        clean = model.pipe(prompts, latents=model.adapter.pipeline_latents(pipeline.watermarked_latents([5, 6, 7], payload)),
                           num_inference_steps=25, guidance_scale=model.guidance, output_type="latent").images
        assert clean.dtype == torch.bfloat16
        recovered = invert_latents(model.pipe, clean, 25)
        found = pipeline.scheme.detect(recovered, key, fpr=0.01)
        foreign = pipeline.scheme.detect(recovered, WatermarkKey.from_seed(f"bf16-{kind}-other"), fpr=0.01)
    else:
        found = pipeline.detect(made.images, fpr=0.01)
        stranger = model.watermarked("gaussian-shading", WatermarkKey.from_seed(f"bf16-{kind}-other"), calibrate=False)
        foreign = stranger.detect(made.images, fpr=0.01)
    assert all(r.detected and r.payload == payload.hex() for r in found), [r.summary() for r in found]
    assert not any(r.detected for r in foreign)


def test_flux_schnell_takes_no_guidance(saved_in) -> None:
    model = small(load_model(saved_in("flux-schnell"), device="cpu"))
    assert model.guidance is None
    made = model.watermarked("tree-ring", WatermarkKey.from_seed("schnell"), calibrate=False)(["a blue ring"], seed=1)
    assert made.records[0].guidance_scale is None


def test_dtype_is_the_folders_unless_overridden(saved_in) -> None:
    folder = saved_in("sd")
    assert load_model(folder, dtype="float32", device="cpu").adapter.denoiser.dtype == torch.float32
    assert load_model(folder, dtype="float16", device="cpu").adapter.denoiser.dtype == torch.float16
    half = saved_in("sd", torch.float16)
    assert stored_dtype(half) == torch.float16
    assert load_model(half, device="cpu").adapter.denoiser.dtype == torch.float32  # half precision: not on a CPU
    assert resolve_dtype("auto", torch.float16, torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("kind", ["sd", "sdxl", "sd3", "flux"])
def test_image_inspect_reports_a_folder(saved_in, kind) -> None:
    result = CliRunner().invoke(cli.main, ["image", "inspect", "--model", str(saved_in(kind)), "--device", "cpu",
                                           "--json"])
    assert result.exit_code == 0, result.output
    seen = json.loads(result.stdout)
    assert seen["family"] == FAMILIES[kind] and seen["dtype"] == "bfloat16" and seen["device"] == "cpu"
    assert seen["default_guidance"] == FAMILY_GUIDANCE[kind]
    assert seen["native_size"] == (512 if kind == "flux" else 64)  # FLUX's default_sample_size, over this VAE
    assert seen["latent_shape"] == ([4, 128, 128] if kind == "flux" else [4, 16, 16])
    assert seen["inversion"].startswith("Euler" if kind in ("sd3", "flux") else "DDIM")
    assert seen["prediction"] == ("flow velocity" if kind in ("sd3", "flux") else "epsilon")
    assert seen["schemes"] == {"tree-ring": "ready", "gaussian-shading": "ready", "prc": "ready",
                               "seal": "needs --captioner"}
    forced = CliRunner().invoke(cli.main, ["image", "inspect", "--model", str(saved_in(kind)), "--device", "cpu",
                                           "--dtype", "float32", "--json"])
    assert json.loads(forced.stdout)["dtype"] == "float32"


def test_image_inspect_reports_the_reference_model_by_default() -> None:
    result = CliRunner().invoke(cli.main, ["image", "inspect", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["model"] == "reference" and lines["family"] == "stable-diffusion"
    assert lines["default guidance"] == "2.0" and lines["native size"] == "64" and lines["dtype"] == "float32"
    assert "seal (ready)" in lines["schemes"]


def test_seal_on_a_folder_without_a_captioner_is_refused_in_one_line(saved_in, tmp_path) -> None:
    WatermarkKey.from_seed("seal-refusal").save(tmp_path / "key.json")
    result = CliRunner().invoke(cli.main, ["image", "generate", "--key", str(tmp_path / "key.json"), "--scheme", "seal",
                                           "--model", str(saved_in("sd")), "--prompt", "a red star",
                                           "--out", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and not (tmp_path / "out.png").exists()
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and "--captioner" in result.output
    with pytest.raises(ValueError, match="--captioner"):
        load_model(saved_in("sd"), device="cpu").watermarked("seal", WatermarkKey.from_seed("x"))


def build_tiny_captioner(folder: Path) -> None:
    """A random-weight vision encoder-decoder (ViT encoder, BERT decoder) saved with its processor and tokenizer."""
    from transformers import (BertConfig, BertLMHeadModel, ViTConfig, ViTImageProcessor, ViTModel,
                              VisionEncoderDecoderModel)

    from image_wm.reference.components import load_text_encoder

    tokenizer = load_text_encoder("cpu")[1]
    torch.manual_seed(0)
    encoder = ViTModel(ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64))
    decoder = BertLMHeadModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64, is_decoder=True,
                                         add_cross_attention=True))
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.sep_token_id
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_a_transformers_captioner_folder_makes_seal_ready(saved_in, tmp_path) -> None:
    build_tiny_captioner(tmp_path / "captioner")
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    captions = TransformersCaptioner(tmp_path / "captioner", torch.device("cpu")).caption_variants(images, 3)
    assert len(captions) == 2 and all(1 <= len(c) <= 3 and all(isinstance(t, str) for t in c) for c in captions)
    result = CliRunner().invoke(cli.main, ["image", "inspect", "--model", str(saved_in("sd")), "--device", "cpu",
                                           "--captioner", str(tmp_path / "captioner"), "--json"])
    assert json.loads(result.stdout)["schemes"]["seal"] == "ready"
    model = load_model(saved_in("sd"), device="cpu", captioner=tmp_path / "captioner")
    pipeline = model.watermarked("seal", WatermarkKey.from_seed("seal-captioned"))
    assert isinstance(pipeline.semantics.captioner, TransformersCaptioner)
    made = pipeline(["a red star"], seed=2)
    assert made.images.shape == (1, 64, 64, 3) and made.records[0].scheme == "seal"
    assert pipeline.detect(made.images, fpr=0.01)[0].scheme == "seal"


def test_a_missing_captioner_folder_is_one_line(saved_in, tmp_path) -> None:
    WatermarkKey.from_seed("c").save(tmp_path / "key.json")
    result = CliRunner().invoke(cli.main, ["image", "generate", "--key", str(tmp_path / "key.json"), "--scheme", "seal",
                                           "--model", str(saved_in("sd")), "--captioner", str(tmp_path / "none"),
                                           "--prompt", "a red star", "--out", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "image-to-text" in result.output


def test_tree_ring_on_a_folder_calibrates_on_the_models_own_generations(saved_in) -> None:
    """A folder's probes are its own unwatermarked generations, named in the calibration fingerprint;
    the reference world's are its procedural scenes."""
    from image_wm import tree_ring_calibration as calibration

    wrapped = load_model(saved_in("sd3"), device="cpu").watermarked("tree-ring", WatermarkKey.from_seed("probes"))
    probes = calibration.probes_of(wrapped)
    assert wrapped.probes is None and probes.source.startswith("generations")
    expected = wrapped.run_pipeline(list(calibration.PROBE_PROMPTS[:2]), wrapped.plain_latents([3, 4]),
                                    calibration.PROBE_STEPS, wrapped.guidance)
    assert np.array_equal(probes.make(2, 3), expected)
    own = calibration.fingerprint(wrapped, wrapped.scheme)
    wrapped.probes = calibration.ProbeImages("reference procedural scenes", probes.make)
    assert calibration.fingerprint(wrapped, wrapped.scheme) != own
    assert load_model(device="cpu").probes.source == "reference procedural scenes"


def test_the_image_and_video_wrappers_refuse_the_other_kind() -> None:
    from image_wm.pipeline import WatermarkedPipeline
    from image_wm.video import WatermarkedVideoPipeline

    image, video = load_model(device="cpu"), load_model(task="text-to-video", device="cpu")
    assert video.adapter.video and not image.adapter.video and video.adapter.family == "text-to-video"
    with pytest.raises(ValueError, match="makes clips"):
        WatermarkedPipeline(video.pipe, "prc", WatermarkKey.from_seed("kinds"))
    with pytest.raises(ValueError, match="makes images"):
        WatermarkedVideoPipeline(image.pipe, WatermarkKey.from_seed("kinds"))
