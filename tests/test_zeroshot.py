"""Zero-shot detector: the empirical null holds its FPR on held-out human text; model text is caught.

The held-out passages are the half of tests/data/human_passages.jsonl that the shipped null
did not see (``calibration_indices`` in the null file). Scoring all 300 of them costs minutes
on one core, so the full FPR check is ``slow``; the fast one scores 20 of them at 32 tokens and
still fails if the null is shifted or the p-value points the wrong way.
"""

import json

import numpy as np
import pytest

from text_wm.generate import generate_watermarked
from text_wm.zeroshot import DEFAULT_NULL, GRID, ZeroShotDetector, model_fingerprint, split_indices

PROMPTS = [
    "Explain how rain forms.", "Write a short story about a lighthouse keeper.", "Describe your favourite city.",
    "Give advice to a new gardener.", "Why is the sky blue?", "Tell me about the history of bread.",
    "How do bees make honey?", "Describe a walk in the mountains.", "What makes a good teacher?",
    "Explain what a computer does.",
]


@pytest.fixture(scope="module")
def null_file():
    return json.loads(DEFAULT_NULL.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def held_out(human_passages, null_file):
    calibration = set(null_file["calibration_indices"])
    return [p for i, p in enumerate(human_passages) if i not in calibration]


@pytest.fixture(scope="module")
def detectors(text_model):
    """Both calibrations of the default model, scoring at most 64 tokens (the null's longest length)."""
    return {c: ZeroShotDetector(*text_model, calibration=c, max_tokens=max(GRID)) for c in ("empirical", "concentration")}


def rates(detectors, terms, fpr=0.01):
    return {c: float(np.mean([d.decide(t, fpr).detected for t in terms])) for c, d in detectors.items()}


def test_null_file_is_the_calibration_half_for_this_model(text_model, null_file, human_passages):
    assert null_file["fingerprint"] == model_fingerprint(text_model[0])
    assert null_file["calibration_indices"] == split_indices(len(human_passages))[0]
    assert [len(null_file["statistics"][str(g)]) for g in GRID] == [300] * len(GRID)
    assert ZeroShotDetector(*text_model).calibration == "empirical"


def test_bad_input_is_refused(detectors):
    detector = detectors["empirical"]
    for bad in ("", "   \n", "Far too short to score."):
        with pytest.raises(ValueError):
            detector.detect(bad)
    with pytest.raises(ValueError):
        detector.detect([])
    with pytest.raises(ValueError):
        detector.detect("word " * 40, fpr=0.0)
    with pytest.raises(ValueError, match="calibration"):
        ZeroShotDetector(detector.model, detector.tokenizer, calibration="guess")


def test_empirical_fpr_on_a_few_held_out_passages(text_model, held_out):
    """20 held-out passages scored at 32 tokens: at most 2 flagged at 1% and 5 at 10% (Bin tails ~1e-3, 1e-2)."""
    detector = ZeroShotDetector(*text_model, max_tokens=32)
    terms = detector.terms(held_out[:20])
    flagged = {fpr: sum(detector.decide(t, fpr).detected for t in terms) for fpr in (0.01, 0.1)}
    results = [detector.decide(t) for t in terms]
    assert all(r.details["calibration"] == "empirical" and r.details["scored_tokens"] == 32 for r in results)
    assert all(0.0 < r.p_value <= 1.0 for r in results)
    print(f"\nflagged of 20 held-out human passages (32 tokens): {flagged}")
    assert flagged[0.01] <= 2 and flagged[0.1] <= 5


@pytest.mark.slow
def test_empirical_fpr_on_the_held_out_half(detectors, held_out):
    terms = detectors["empirical"].terms(held_out)
    fpr = rates(detectors, terms)
    # measured: empirical 0.010; the concentration calibration flags 100% (its bound is about model text, not human)
    print(f"\nFPR at nominal 1% on {len(terms)} held-out human passages (64 tokens): {fpr}")
    assert 0.0 <= fpr["empirical"] <= 0.02


@pytest.mark.slow
def test_detects_text_the_model_sampled(text_model, detectors):
    model, tokenizer = text_model
    records = generate_watermarked(model, tokenizer, PROMPTS, None, None, chat=True, seed=0, do_sample=True,
                                   temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=60, max_new_tokens=100)
    terms = detectors["empirical"].terms([r.text for r in records])
    tpr = {fpr: rates(detectors, terms, fpr) for fpr in (0.01, 0.1)}
    p_values = [detectors["empirical"].decide(t).p_value for t in terms]
    print(f"\nTPR on {len(terms)} SmolLM2 samples (60-100 tokens, scored on <= 64) at FPR 1% and 10%: {tpr}; "
          f"empirical p-values {np.round(p_values, 3)}")
    # measured: 0.1 at 1% and 0.9 at 10% (empirical); the concentration bound flags every sample (and every human text)
    assert tpr[0.1]["empirical"] >= 0.6 and np.median(p_values) <= 0.1
    assert tpr[0.01]["concentration"] >= 0.9
