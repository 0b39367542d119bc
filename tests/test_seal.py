"""SEAL: keyed semantic patches, exact null calibration, power under noise, caption variants.

Synthetic latents only (no diffusion model); the MiniLM embedder and the scene captioner are small.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from image_wm import scenes
from image_wm.reference.pipelines import load_captioner
from image_wm.schemes import LatentWatermark, get_scheme
from image_wm.schemes.seal import SEAL
from image_wm.semantics import CaptionEmbedder, sentence_embeddings
from provenance.keys import WatermarkKey

SHAPE = (3, 4, 16, 16)
CAPTIONS = ["a small red star on a plain white background",  # [0] and its one-word paraphrase [1]
            "a tiny red star on a plain white background",
            "a large blue ring on a striped green background",  # unrelated to [0]
            "a small purple cross left of a large pink circle on striped yellow background"]
N_NULL, FPR = 2_000, 0.01
BAND = tuple(int(x) for x in sps.binom.ppf([0.0005, 0.9995], N_NULL, FPR))  # 99.9% band of false positives


@pytest.fixture(scope="module")
def key() -> WatermarkKey:
    return WatermarkKey.from_seed("seal-tests")


@pytest.fixture(scope="module")
def seal() -> SEAL:
    return SEAL()


@pytest.fixture(scope="module")
def emb() -> torch.Tensor:
    return sentence_embeddings(CAPTIONS)


@pytest.fixture(scope="module")
def captioner():
    return load_captioner("cpu")


def noisy(z: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A weak recovery: z' = 0.6 z + 0.8 N(0, I)."""
    return 0.6 * z + 0.8 * torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))


def generated(seal: SEAL, key: WatermarkKey, emb: torch.Tensor) -> torch.Tensor:
    """Latents for captions 0, 2, 3 (three unrelated scenes)."""
    return seal.initial_latents(SHAPE, key, torch.Generator(), embeddings=emb[[0, 2, 3]])


def test_registry_protocol_and_geometry(seal: SEAL) -> None:
    assert isinstance(get_scheme("seal"), SEAL) and isinstance(seal, LatentWatermark)
    assert (seal.name, seal.payload_bytes, seal.semantic) == ("seal", 0, True)
    assert seal.geometry((1, 4, 16, 16)) == (1, 256, 4)  # reference latents: 256 patches of 4 values
    assert seal.geometry((1, 4, 64, 64)) == (2, 1024, 16)  # SD: the paper's k = 1024 patches of 4x2x2
    assert SEAL(patch_size=2).geometry((1, 4, 16, 16)) == (2, 64, 16)
    with pytest.raises(ValueError):
        SEAL(patch_size=3).geometry((1, 4, 16, 16))


def test_initial_latents_are_standard_normal_and_keyed(seal: SEAL, key: WatermarkKey, emb: torch.Tensor) -> None:
    for shape in [(1, 4, 16, 16), (1, 4, 64, 64)]:
        z = seal.initial_latents(shape, key, torch.Generator(), embeddings=emb[:1])
        assert z.dtype == torch.float32 and z.device.type == "cpu" and tuple(z.shape) == shape
        assert sps.kstest(z.flatten().numpy(), "norm").pvalue > 0.01
    z = generated(seal, key, emb)
    assert torch.equal(z, generated(seal, key, emb))  # same key + caption: the same patches
    other = generated(seal, WatermarkKey.from_seed("seal-other"), emb)
    cos = torch.nn.functional.cosine_similarity(z.flatten(1), other.flatten(1))
    assert cos.abs().max() < 0.15  # another key: unrelated patterns for the same captions
    with pytest.raises(ValueError):
        seal.initial_latents(SHAPE, key, torch.Generator(), payload=b"x", embeddings=emb[:3])
    with pytest.raises(ValueError):
        seal.initial_latents(SHAPE, key, torch.Generator())


def test_detects_its_own_latents_clean_and_noisy(seal: SEAL, key: WatermarkKey, emb: torch.Tensor) -> None:
    z = generated(seal, key, emb)
    for latents in (z, noisy(z)):
        results = seal.detect(latents, key, embeddings=emb[[0, 2, 3]])
        assert all(r.detected and r.p_value < 1e-20 for r in results)
    # V = 3 variants per image, the generation caption second: found, Bonferroni over 3
    variants = torch.stack([emb[[1, 0, 2]], emb[[3, 2, 0]], emb[[2, 3, 1]]])
    results = seal.detect(noisy(z, 1), key, embeddings=variants)
    for r in results:
        assert r.detected and r.details["best_variant"] == 1 and r.details["distinct_variants"] == 3
        assert r.scheme == "seal" and r.key_id == key.key_id and r.score >= r.threshold
    lemma = seal.detect(z, key, embeddings=emb[[0, 2, 3]])[0].details["lemma"]
    assert lemma["matched_patches"] == 256 and lemma["passed"] and lemma["m_match"] == 44
    assert key.secret.hex() not in results[0].to_json()


def test_no_detection_with_wrong_key_noise_or_unrelated_caption(seal: SEAL, key: WatermarkKey,
                                                                 emb: torch.Tensor) -> None:
    z = generated(seal, key, emb)
    wrong = seal.detect(noisy(z), WatermarkKey.from_seed("seal-wrong"), embeddings=emb[[0, 2, 3]])
    noise = seal.detect(torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)), key,
                        embeddings=emb[[0, 2, 3]])
    assert not any(r.detected for r in wrong + noise)
    for latents in (z, noisy(z)):  # "red star" latents judged as "blue ring" and vice versa
        swapped = seal.detect(latents[:2], key, embeddings=emb[[2, 0]])
        assert not any(r.detected for r in swapped)


def test_empirical_fpr_is_calibrated(seal: SEAL, key: WatermarkKey, emb: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(11)
    latents = 3.0 * torch.randn((N_NULL, 4, 16, 16), generator=gen)  # any scale: the test is scale-free
    one = seal.detect(latents, key, FPR, embeddings=emb[:1].expand(N_NULL, 1, -1))
    assert BAND[0] <= sum(r.detected for r in one) <= BAND[1]
    assert sps.kstest([r.p_value for r in one], "uniform").pvalue > 1e-3  # exact null: uniform p-values
    three = seal.detect(latents, key, FPR, embeddings=emb[[0, 2, 3]].expand(N_NULL, 3, -1))
    assert sum(r.detected for r in three) <= BAND[1]  # Bonferroni over variants stays conservative


def test_similar_captions_keep_most_patch_hashes(seal: SEAL, key: WatermarkKey, emb: torch.Tensor) -> None:
    hashes = seal.patch_hashes(key, emb, SHAPE)
    paraphrase = (hashes[0] == hashes[1]).float().mean().item()
    unrelated = (hashes[0] == hashes[2]).float().mean().item()
    print(f"shared patch hashes: paraphrase {paraphrase:.2f}, unrelated {unrelated:.2f}")
    assert paraphrase > 0.5 and unrelated < 0.15


def test_sentence_embeddings_are_unit_norm_and_semantic(emb: torch.Tensor) -> None:
    assert emb.shape == (len(CAPTIONS), 384) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(CAPTIONS)), atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_caption_variants_and_caption_embedder(captioner) -> None:
    images, _, _ = scenes.generate(4, seed=5)
    variants = captioner.caption_variants(images, 4)
    assert [v[0] for v in variants] == captioner.caption(images)
    assert all(len(v) == len(set(v)) == 4 for v in variants)
    assert captioner.caption_variants(images, 4) == variants  # deterministic
    embedded = CaptionEmbedder(captioner=captioner).embed(images, variants=3)
    assert embedded.shape == (4, 3, 384)
    assert torch.allclose(embedded[:, 0], sentence_embeddings(captioner.caption(images)), atol=1e-5)


class UNet2DConditionModel:
    """A stand-in UNet, named as diffusers' so that the Stable Diffusion family adapter takes the pipeline."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.config, self.dtype = SimpleNamespace(sample_size=8, in_channels=4), torch.float32


class _FakePipe:
    """A stand-in diffusers pipeline: 4x8x8 latents, 'images' that record which call made them."""

    device, vae_scale_factor = "cpu", 8

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.unet = UNet2DConditionModel()
        self.scheduler = SimpleNamespace(config={"prediction_type": "epsilon"})
        self.calls: list[int] = []

    def __call__(self, prompts, latents, **_):
        from types import SimpleNamespace

        self.calls.append(len(prompts))
        return SimpleNamespace(images=np.full((len(prompts), 64, 64, 3), len(self.calls) / 10.0, np.float32))


class _ScriptedSemantics:
    """Returns scripted embeddings per embed() call, in call order."""

    def __init__(self, script: list[torch.Tensor]) -> None:
        self.script = list(script)

    def embed(self, images: np.ndarray, variants: int = 1) -> torch.Tensor:
        out = self.script.pop(0)
        assert out.shape[:2] == (len(images), variants)
        return out


def test_semantic_generation_keeps_each_images_best_round(key: WatermarkKey, emb: torch.Tensor) -> None:
    """Captions of generated images move between rounds; each image keeps its best-matching round."""
    from image_wm.pipeline import WatermarkedPipeline

    star, _, ring, cross = emb
    other = sentence_embeddings(["a large green diamond on a dotted black background"])[0]
    orth = torch.nn.functional.normalize(other - (other @ star) * star, dim=0)
    near_star = np.cos(np.radians(30)) * star + np.sin(np.radians(30)) * orth  # 30 degrees off: a partial match
    script = [torch.stack([cross, ring])[:, None],  # provisional images: keyed on cross, ring
              torch.stack([torch.stack([star, other, other]), torch.stack([other, ring, cross])]),  # round 1
              torch.stack([near_star, other, other])[None],  # round 2, image 0 only (keyed on star)
              torch.stack([ring, other, other])[None]]  # round 3 (keyed on near_star): a miss
    pipe = _FakePipe()
    wp = WatermarkedPipeline(pipe, SEAL(), key, semantics=_ScriptedSemantics(script), caption_rounds=3)
    latents, images = wp.scheme.generate(wp, ["p0", "p1"], [0, 1], 25, 2.0)
    assert pipe.calls == [2, 2, 1, 1]  # image 1 matched its keying (variant 2) in round 1 and stopped
    assert images[1, 0, 0, 0] == round(2 / 10 * 255) and images[0, 0, 0, 0] == round(3 / 10 * 255)
    expected = SEAL().initial_latents((2, 4, 8, 8), key, torch.Generator(), embeddings=torch.stack([star, ring]))
    assert torch.equal(latents, expected)  # image 0: round 2 (keyed on star, shows near_star), not round 3
