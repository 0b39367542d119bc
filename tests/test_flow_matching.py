"""Flow-matching (Stable Diffusion 3) pipelines: inversion, watermark round trips, loading and the CLI.

The inversion itself is checked on an exact flow (Gaussian data, whose velocity field is known in
closed form), where a wrong level pairing or an unshifted schedule visibly fails. The pipeline
tests use a tiny Stable Diffusion 3 folder built here: a random-weight ``SD3Transformer2DModel``,
two random tiny CLIP text encoders over MiniLM's tokenizer and the shipped reference VAE (given a
``shift_factor``, as SD3's VAE has). Random weights test plumbing only: that generation, inversion,
detection, loading and the CLI run through the flow-matching path, and that a wrong key finds
nothing. They say nothing about robustness on a trained SD3, nor about the false-positive rate on
its clean images: a random transformer's images invert to latents with biased channel means, not
the N(0, I) noise the schemes' nulls describe (the FPR checks run on the trained reference model,
``tests/test_image_watermarks.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cli
from image_wm import inversion, sampler_inversion
from image_wm.families import adapter_for
from image_wm.pipeline import WatermarkedPipeline, initial_noise
from provenance.keys import WatermarkKey
from tiny_pipelines import assert_watermark_round_trip, cli_detection, unconditioned_call

DATA_VARIANCE = 0.25  # the exact flow's data: N(0, 0.25 I)


def exact_velocity(z: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """E[noise - x0 | z_sigma] for x0 ~ N(0, s^2 I) and z_sigma = (1 - sigma) x0 + sigma noise."""
    sigma, s2 = float(timestep) / 1000, DATA_VARIANCE
    return (sigma - (1 - sigma) * s2) / ((1 - sigma) ** 2 * s2 + sigma ** 2) * z


def test_euler_inversion_undoes_the_schedulers_sampling_on_an_exact_flow() -> None:
    """25 steps at SD3's shift 3: 0.04 relative error; pairing each step with its lower level
    instead gives 0.21, and ignoring the shift 0.09, so the bound below catches either."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(25)
    noise = torch.randn(4096, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = noise.clone()
    for t in scheduler.timesteps:
        z = scheduler.step(exact_velocity(z, t), t, z).prev_sample
    assert abs(float(z.std()) - DATA_VARIANCE ** 0.5) < 0.1  # it sampled the data, far from the noise
    back = sampler_inversion.euler_inversion(exact_velocity, z, scheduler.sigmas.double(), scheduler.timesteps)
    assert float((back - noise).norm() / noise.norm()) < 0.06


@pytest.fixture(scope="module")
def sd3(tiny_folder):
    from image_wm.loading import load_pipeline

    return load_pipeline(tiny_folder("sd3"), device="cpu")


def test_a_local_sd3_folder_loads_as_its_own_pipelines(sd3, tiny_folder) -> None:
    from image_wm.loading import load_pipeline

    assert type(sd3).__name__ == "StableDiffusion3Pipeline" and sd3.text_encoder_3 is None
    adapter = adapter_for(sd3)
    assert adapter.family == "stable-diffusion-3" and adapter.latent_shape(2) == (2, 4, 16, 16)
    img2img = load_pipeline(tiny_folder("sd3"), task="img2img", device="cpu")
    assert type(img2img).__name__ == "StableDiffusion3Img2ImgPipeline"


def test_latents_cross_the_shifted_vae_as_the_pipeline_decodes_them(sd3) -> None:
    """SD3's VAE latents are ``(z - shift) * scale``: decoding matches the pipeline's own decoder, and
    encoding returns the latents without the ``shift * scale`` offset dropping the shift would leave."""
    noise = initial_noise((4, 4, 16, 16), [0, 1, 2, 3])
    run = dict(latents=noise, num_inference_steps=5, guidance_scale=1.0)
    clean = sd3(["a red star"] * 4, output_type="latent", **run).images
    pixels = np.round(np.clip(sd3(["a red star"] * 4, output_type="np", **run).images, 0, 1) * 255).astype(np.uint8)
    decoded = inversion.decode_latents(sd3, clean)
    assert np.abs(decoded.astype(int) - pixels).max() <= 1
    offset = float((inversion.encode_images(sd3, decoded) - clean).mean())
    assert abs(offset) < 0.3 * sd3.vae.config.shift_factor * sd3.vae.config.scaling_factor


def test_inversion_conditions_on_the_empty_prompt_exactly_as_the_pipeline_does(sd3) -> None:
    """The transformer sees the same text states and pooled projection from ``empty_condition`` as
    in the unconditional half of the pipeline's own classifier-free guidance."""
    seen = unconditioned_call(sd3, sd3.transformer)
    ours = adapter_for(sd3).empty_condition(1)
    assert set(ours) == {"encoder_hidden_states", "pooled_projections"}
    for name, value in ours.items():
        assert torch.allclose(value, seen[name], atol=1e-5), name


@pytest.mark.parametrize("dynamic_shift", [False, True])
def test_flow_inversion_uses_the_samplers_own_levels(tiny_folder, dynamic_shift) -> None:
    """The inversion's sigmas are exactly those the pipeline sampled with, shifted statically (SD3) or by
    the image size (``use_dynamic_shifting``), and inverting a guidance-free sample recovers its noise."""
    from image_wm.loading import load_pipeline

    pipe = load_pipeline(tiny_folder("sd3-dynamic-shift" if dynamic_shift else "sd3"), device="cpu")
    noise = initial_noise((4, 4, 16, 16), [5, 6, 7, 8])
    clean = pipe(["a red star"] * 4, latents=noise, num_inference_steps=10, guidance_scale=1.0,
                 output_type="latent").images
    sigmas, _ = adapter_for(pipe).levels(10, clean.shape[-2], clean.shape[-1])
    assert torch.equal(sigmas.float(), pipe.scheduler.sigmas.float())
    assert not torch.allclose(sigmas[1:-1], torch.linspace(1, 0, 11, dtype=sigmas.dtype)[1:-1], atol=1e-3)  # shifted
    back = inversion.invert_latents(pipe, clean, 10)
    assert float((back.sign() == noise.sign()).float().mean()) > 0.95


@pytest.mark.parametrize("scheme, payload", [("gaussian-shading", b"\xbe\xef"), ("prc", None), ("tree-ring", None)])
def test_watermarks_round_trip_on_a_flow_matching_pipeline(sd3, scheme, payload) -> None:
    assert_watermark_round_trip(sd3, scheme, payload, "sd3", images=4)


def test_tree_ring_calibrates_an_sd3_pipeline_by_its_flow_schedule(sd3, monkeypatch, tmp_path) -> None:
    """The nuisance directions are fitted through flow inversion and cached under a fingerprint that
    names the flow scheduler's config, so another shift is another entry."""
    from image_wm import tree_ring_calibration as calibration

    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "PROBE_SCENES", 2)
    wrapped = WatermarkedPipeline(sd3, "tree-ring", WatermarkKey.from_seed("sd3"))
    nuisance = wrapped.detector.nuisance
    assert nuisance.shape[0] == calibration.NUISANCE_DIRECTIONS and np.isfinite(nuisance).all()
    assert len(list((tmp_path / "tree-ring").iterdir())) == 1
    before = calibration.fingerprint(wrapped, wrapped.scheme)
    sd3.scheduler.register_to_config(shift=2.0)
    try:
        assert calibration.fingerprint(wrapped, wrapped.scheme) != before
    finally:
        sd3.scheduler.register_to_config(shift=3.0)


def test_regeneration_and_noise_extraction_run_on_sd3(sd3) -> None:
    from attacks.forgery import noise_extraction
    from attacks.regeneration import regenerate

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    for out in (regenerate(images, 1.0, ["a", "b"], pipe=sd3), regenerate(images, 0.5, ["a", "b"], pipe=sd3),
                noise_extraction(images, 10, pipe=sd3)):
        assert out.shape == images.shape and out.dtype == np.uint8 and not np.array_equal(out, images)


def test_cli_generates_and_detects_with_an_sd3_folder(tiny_folder, tmp_path) -> None:
    assert cli_detection(tiny_folder("sd3"), "prc", tmp_path)["detected"]


def test_an_audit_runs_on_an_sd3_folder(tiny_folder, tmp_path) -> None:
    """``provenance audit --model DIR``: generation, attacks (img2img regeneration included) and detection."""
    args = ["audit", "--modality", "image", "--schemes", "prc", "--attacks", "jpeg,regen", "--levels", "1", "--n", "2",
            "--steps", "4", "--model", str(tiny_folder("sd3")), "--out", str(tmp_path / "audit")]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "audit" / "results.json").read_text())["cells"]
    assert [c["attack"] for c in cells] == ["none", "jpeg", "regen"] and cells[0]["tpr"] == 1.0


def test_unsupported_pipelines_are_refused_in_one_line(tmp_path) -> None:
    """A UNet predicting the clean sample has no inversion here: the folder is refused, nothing written."""
    from image_wm.reference import load_text_to_image

    reference = load_text_to_image("cpu")
    reference.scheduler.register_to_config(prediction_type="sample")
    reference.save_pretrained(tmp_path / "x0-model")
    WatermarkKey.from_seed("v").save(tmp_path / "key.json")
    result = CliRunner().invoke(cli.main, ["image", "generate", "--key", str(tmp_path / "key.json"), "--scheme",
                                           "prc", "--prompt", "a red star", "--model", str(tmp_path / "x0-model"),
                                           "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "not a supported pipeline" in result.output and not (tmp_path / "x.png").exists()


def test_ddim_inversion_takes_its_levels_from_the_schedulers_config() -> None:
    """A pipeline sampling with Euler or PNDM inverts exactly as with DDIM (same betas), where before
    Euler had no ``final_alpha_cumprod`` and PNDM repeated timesteps."""
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    from image_wm.reference import load_text_to_image

    pipe = load_text_to_image("cpu")
    latents = initial_noise((2, 4, 16, 16), [1, 2]) * 0.7
    expected = inversion.invert_latents(pipe, latents, 10)
    for other in (EulerDiscreteScheduler, PNDMScheduler):
        pipe.scheduler = other.from_config(pipe.scheduler.config)
        assert torch.equal(inversion.invert_latents(pipe, latents, 10), expected)
