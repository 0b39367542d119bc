"""FLUX.1 pipelines: packed latents, the transformer call inversion makes, its levels, watermark round
trips, the attacks that regenerate, and the CLI.

The pipelines are tiny FLUX folders built here (``tiny_pipelines.build_tiny_flux``): a random-weight
``FluxTransformer2DModel``, tiny random CLIP and T5 encoders over MiniLM's tokenizer and the shipped
reference VAE (given a ``shift_factor``, as FLUX's VAE has). As for SD3 (``tests/test_flow_matching.py``,
where the Euler inversion itself is checked on an exact flow), random weights test plumbing only:
that FLUX's packed layout, rotary ids, timestep scale, distilled guidance and schedule are the
pipeline's own, and that detection finds the key's watermark and no other. They say nothing about
robustness or the false-positive rate on a trained FLUX.

FLUX's native size is ``FluxPipeline.default_sample_size`` latent rows, not a config entry (512 px
over the reference VAE); the API tests set it to 16 rows, the reference world's 64 px, so they run
in seconds, and the CLI test keeps the folder's own 512 px.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest
import torch

from image_wm import inversion
from image_wm.families import adapter_for, private_helper
from image_wm.families.flux import INVERSION_GUIDANCE
from image_wm.pipeline import WatermarkedPipeline, initial_noise
from provenance.keys import WatermarkKey
from tiny_pipelines import assert_watermark_round_trip, cli_detection


def small(pipe):
    pipe.default_sample_size = 16
    return pipe


@pytest.fixture(scope="module")
def flux(tiny_folder):
    from image_wm.loading import load_pipeline

    return small(load_pipeline(tiny_folder("flux"), device="cpu"))


def test_a_local_flux_folder_loads_as_its_own_pipelines(flux, tiny_folder) -> None:
    from image_wm.loading import load_pipeline

    assert type(flux).__name__ == "FluxPipeline" and adapter_for(flux).family == "flux"
    assert adapter_for(flux).latent_shape(2) == (2, 4, 16, 16)  # unpacked: 16 packed channels are 4 x 2 x 2
    assert adapter_for(load_pipeline(tiny_folder("flux"), device="cpu")).latent_shape(1) == (1, 4, 128, 128)
    img2img = load_pipeline(tiny_folder("flux"), task="img2img", device="cpu")
    assert type(img2img).__name__ == "FluxImg2ImgPipeline"


def test_packed_noise_is_the_noise_flux_draws_itself(flux) -> None:
    """``pipeline_latents`` packs ``(B, C, h, w)`` noise exactly as ``FluxPipeline`` packs the noise it
    draws from a generator: the same images either way."""
    run = dict(num_inference_steps=3, guidance_scale=2.0, output_type="latent")
    own = flux(["a red star"], generator=torch.Generator().manual_seed(4), **run).images
    adapter = adapter_for(flux)
    ours = flux(["a red star"], latents=adapter.pipeline_latents(initial_noise(adapter.latent_shape(1), [4])),
                **run).images
    assert torch.equal(own, ours)


def first_call(module: torch.nn.Module, run) -> tuple[dict, torch.Tensor]:
    """The keyword arguments and output of ``module``'s first call while ``run()`` runs."""
    seen = []
    hook = module.register_forward_hook(lambda _, args, kwargs, out: seen.append((kwargs, out[0])), with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("kind", ["flux", "flux-schnell"])
def test_inversion_calls_the_transformer_as_the_pipeline_does_on_the_empty_prompt(tiny_folder, kind) -> None:
    """At the first level, ``predictor`` on ``empty_condition`` gives exactly the velocity the pipeline
    computes for the empty prompt at guidance 1 (FLUX.1-dev) or without a guidance input (schnell):
    same packing, rotary ids, timestep scale and text states."""
    from image_wm.loading import load_pipeline

    pipe = small(load_pipeline(tiny_folder(kind), device="cpu"))
    adapter = adapter_for(pipe)
    noise = initial_noise(adapter.latent_shape(2), [1, 2])
    kwargs, packed_velocity = first_call(pipe.transformer, lambda: pipe(
        ["", ""], latents=adapter.pipeline_latents(noise), num_inference_steps=4,
        guidance_scale=INVERSION_GUIDANCE, output_type="latent"))
    assert ("guidance" in adapter.empty_condition(2)) == (kind == "flux") == (kwargs["guidance"] is not None)
    _, timesteps = adapter.levels(4, noise.shape[-2], noise.shape[-1])
    ours = adapter.predictor(adapter.empty_condition(2))(noise, timesteps[0])
    assert torch.allclose(adapter.pipeline_latents(ours), packed_velocity, atol=1e-5)


@pytest.mark.parametrize("kind", ["flux", "flux-schnell"])
def test_flux_inversion_uses_the_samplers_own_levels(tiny_folder, kind) -> None:
    """The sigmas are FLUX's own: its ``linspace(1, 1/n, n)`` spacing shifted by the token count (dev)
    or statically (schnell, shift 1), and inverting a guidance-free sample recovers its noise."""
    from image_wm.loading import load_pipeline

    pipe = small(load_pipeline(tiny_folder(kind), device="cpu"))
    adapter = adapter_for(pipe)
    noise = initial_noise(adapter.latent_shape(4), [5, 6, 7, 8])
    packed = pipe([""] * 4, latents=adapter.pipeline_latents(noise), num_inference_steps=10,
                  guidance_scale=INVERSION_GUIDANCE, output_type="latent").images
    sigmas, _ = adapter.levels(10, noise.shape[-2], noise.shape[-1])
    assert torch.equal(sigmas.float(), pipe.scheduler.sigmas.float())
    clean = pipe._unpack_latents(packed, 64, 64, pipe.vae_scale_factor)
    back = inversion.invert_latents(pipe, clean, 10)
    assert float((back.sign() == noise.sign()).float().mean()) > 0.95


@pytest.mark.parametrize("scheme, payload", [("gaussian-shading", b"\xbe\xef"), ("prc", None), ("tree-ring", None)])
def test_watermarks_round_trip_on_flux(flux, scheme, payload) -> None:
    assert_watermark_round_trip(flux, scheme, payload, "flux", images=3)


def test_a_bfloat16_flux_pipeline_round_trips(tiny_folder) -> None:
    """FLUX is run in bf16 (12 B parameters): generation, decoder inversion and Euler inversion keep
    the pipeline's dtype throughout and still return the payload."""
    from diffusers import FluxPipeline

    pipe = small(FluxPipeline.from_pretrained(tiny_folder("flux"), dtype=torch.bfloat16))
    pipeline = WatermarkedPipeline(pipe, "gaussian-shading", WatermarkKey.from_seed("bf16"), calibrate=False)
    made = pipeline(["a red star"] * 2, payload=b"\xbe\xef", seed=3, num_inference_steps=10)
    found = pipeline.detect(made.images, fpr=0.01, inversion_steps=10, decoder_steps=3)
    assert all(r.detected and r.payload == "beef" for r in found)


def test_tree_ring_calibrates_a_flux_pipeline(flux, monkeypatch, tmp_path) -> None:
    """The nuisance fit generates, edits and inverts its probe scenes through FLUX's packed path."""
    from image_wm import tree_ring_calibration as calibration

    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "PROBE_SCENES", 2)
    nuisance = WatermarkedPipeline(flux, "tree-ring", WatermarkKey.from_seed("flux")).detector.nuisance
    assert nuisance.shape[0] == calibration.NUISANCE_DIRECTIONS and np.isfinite(nuisance).all()
    assert len(list((tmp_path / "tree-ring").iterdir())) == 1


def test_regeneration_and_noise_extraction_run_on_flux(flux) -> None:
    """Through FluxPipeline and the FluxImg2ImgPipeline made from it, which keeps its native size
    (``default_sample_size`` is an attribute, not a config, and ``from_pipe`` alone would reset it)."""
    from attacks.forgery import noise_extraction
    from attacks.regeneration import regenerate

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    for out in (regenerate(images, 1.0, ["a", "b"], pipe=flux), regenerate(images, 0.5, ["a", "b"], pipe=flux),
                noise_extraction(images, 10, pipe=flux)):
        assert out.shape == images.shape and out.dtype == np.uint8 and not np.array_equal(out, images)


def test_image_conditioned_flux_pipelines_are_refused(flux) -> None:
    from diffusers import FluxKontextPipeline

    with pytest.raises(ValueError, match="FluxKontextPipeline is not a supported pipeline"):
        adapter_for(FluxKontextPipeline.from_pipe(flux))


def test_cli_generates_and_detects_with_a_flux_folder(tiny_folder, tmp_path) -> None:
    assert cli_detection(tiny_folder("flux"), "gaussian-shading", tmp_path, "--steps", "4")["detected"]


def test_a_diffusers_release_without_a_private_helper_gets_one_clear_error():
    class FluxPipeline:  # a release that renamed _pack_latents
        def _pack_latents_v2(self, *args):
            return args

    with pytest.raises(ValueError, match=f"FluxPipeline._pack_latents is missing in diffusers {version('diffusers')}"):
        private_helper(FluxPipeline(), "_pack_latents")
