"""Forgeries and preference-model attacks: the shipped preference model ranks held-out patterned
scenes above clean ones, its removal lowers the score and its residual transplants, object
insertion covers the asked area, and noise extraction forges Gaussian Shading on a new prompt
(slow: Tree-Ring and SEAL rates, the latter being the scheme built to resist)."""

from __future__ import annotations

import numpy as np
import pytest

import attacks
from attacks.forgery import foreign_prompts
from attacks.preference_model import HELD_OUT_SEED, load_preference_model, pairwise_accuracy, patterned_pairs
from attacks.regeneration import text_to_image_pipeline
from image_wm.loading import shared_model
from image_wm.pipeline import WatermarkedPipeline
from provenance.keys import WatermarkKey
from provenance.stats import binomial_tail

STEPS = 10  # generation and inversion steps on the reference model
FPR = 1e-3
PROMPTS = [
    "a large yellow circle on a plain black background",
    "a small red star above a large blue ring on a striped green background",
    "a large white cross on a gradient purple background",
]


@pytest.fixture(scope="module")
def pm():
    return load_preference_model(device="cpu")


@pytest.fixture(scope="module")
def pairs():
    """Held-out scenes (a seed the training never drew), clean and patterned."""
    return patterned_pairs(128, HELD_OUT_SEED + 1)


def test_shipped_preference_model_ranks_patterned_above_clean(pm, pairs):
    clean, patterned, _ = pairs
    correct = pairwise_accuracy(pm, clean, patterned)
    print(f"held-out pairwise accuracy {correct.mean():.3f} on {len(correct)} pairs")
    assert correct.mean() >= 0.8
    assert binomial_tail(int(correct.sum()), len(correct), 0.5) < 1e-9  # H0: ranks are coin flips


def test_pm_removal_lowers_the_score_within_its_budget(pm, pairs):
    _, patterned, _ = pairs
    images = patterned[:16]
    removal = attacks.get("pm-removal")
    out = removal(images, 5, model=pm)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out, removal(images, 5, model=pm))
    assert np.abs(out.astype(int) - images).max() <= 5 + 1  # 5 grey-level steps, then rounding
    before, after = pm.score(images), pm.score(out)
    print(f"mean score before {before.mean():.2f}, after 5 steps {after.mean():.2f}")
    assert (after < before).all()
    assert removal(images[0], 1, model=pm).shape == images[0].shape


def test_pm_transplant_makes_targets_look_watermarked(pm, pairs):
    clean, patterned, _ = pairs
    transplant = attacks.get("pm-transplant")
    targets = clean[16:32]
    forged = transplant(patterned[0], 10, target=targets, model=pm)  # one source, many targets
    assert forged.shape == targets.shape
    assert (pm.score(forged) > pm.score(targets)).float().mean() >= 0.9
    big = np.repeat(np.repeat(targets[:2], 2, axis=1), 2, axis=2)
    assert transplant(patterned[:2], 3, target=big, model=pm).shape == big.shape
    with pytest.raises(ValueError):
        transplant(patterned[:3], 3, target=targets, model=pm)
    with pytest.raises(ValueError):
        transplant(patterned[0], 3, model=pm)


def test_object_insertion_covers_the_asked_area(pairs):
    clean = pairs[0][:8]
    insert = attacks.get("object-insertion")
    changed = [float((insert(clean, a, seed=0) != clean).any(-1).mean()) for a in (0.05, 0.2, 0.5)]
    assert changed[0] < changed[1] < changed[2] <= 0.5
    assert np.array_equal(insert(clean, 0.2, seed=3), insert(clean, 0.2, seed=3))
    assert not np.array_equal(insert(clean, 0.2, seed=3), insert(clean, 0.2, seed=4))
    assert insert(clean[0], 0.2).shape == clean[0].shape


def on_reference(scheme: str, key: WatermarkKey) -> WatermarkedPipeline:
    """``scheme`` on the reference model the attacks load by default (the same pipeline), with its
    own guidance, captioner and calibration probes."""
    wp = shared_model().watermarked(scheme, key)
    assert wp.pipe is text_to_image_pipeline()
    return wp


def detected(wp: WatermarkedPipeline, images: np.ndarray) -> np.ndarray:
    return np.array([r.detected for r in wp.detect(images, fpr=FPR, inversion_steps=STEPS)])


def test_noise_extraction_forges_gaussian_shading_on_new_prompts():
    wp = on_reference("gaussian-shading", WatermarkKey.from_seed("forgery"))
    marked = wp(PROMPTS, payload=b"\x0f\xf0", seed=7, num_inference_steps=STEPS).images
    forged = attacks.get("noise-extraction")(marked, STEPS, seed=0, pipe=wp.pipe, steps=STEPS)
    assert forged.shape == marked.shape
    assert not set(foreign_prompts(len(PROMPTS), 0)) & set(PROMPTS)
    found = detected(wp, forged)
    print(f"gaussian-shading noise-extraction forgeries detected: {found.sum()}/{len(found)}")
    # Each inversion keeps about 0.84 sign agreement on the reference model, and a forgery needs two
    # (extract, then detect), so not every forgery need land. Without
    # the mark, P[>= 1 of 3 detected at FPR 1e-3] <= 3e-3, so one detection shows the forgery works.
    assert found.sum() >= 1


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["tree-ring", "gaussian-shading", "seal"])
def test_latent_forgery_rates(scheme):
    """Forging success on 8 watermarked images per scheme (measured, see the report's table).

    A noise-only scheme accepts a noise-extraction forgery about as often as its own images; SEAL,
    keyed on the caption, is the scheme built to refuse it, so its rate is measured, not asserted.
    """
    prompts = foreign_prompts(8, seed=99)
    wp = on_reference(scheme, WatermarkKey.from_seed("forgery-rates"))
    marked = wp(prompts, seed=40, num_inference_steps=25).images
    rates = {"unattacked": float(detected(wp, marked).mean())}
    forged = attacks.get("noise-extraction")(marked, 25, seed=1, pipe=wp.pipe)
    rates["noise-extraction"] = float(detected(wp, forged).mean())
    rates["object-insertion 0.2"] = float(detected(wp, attacks.get("object-insertion")(marked, 0.2, seed=1)).mean())
    print(f"{scheme}: detection rate at fpr {FPR:g}: {rates}")
    if scheme != "seal":
        assert rates["noise-extraction"] >= 0.5 * rates["unattacked"] > 0
