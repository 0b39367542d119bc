import subprocess
import sys

import pytest
import torch

from provenance.keys import WatermarkKey
from text_wm.generate import generate_watermarked
from text_wm.kgw import KGW

KEY = WatermarkKey.from_seed(11)
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms.",
    "Describe your favourite city.",
    "Give advice to a new gardener.",
]
GEN = dict(max_new_tokens=200, min_new_tokens=200, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def generations(text_model):
    model, tokenizer = text_model
    marked = generate_watermarked(model, tokenizer, PROMPTS, KGW(), KEY, chat=True, seed=0, **GEN)
    plain = generate_watermarked(model, tokenizer, PROMPTS, None, None, chat=True, seed=0, **GEN)
    return marked, plain


def test_detects_own_text_from_200_tokens(generations, tokenizer):
    marked, _ = generations
    for record in marked:
        assert len(record.token_ids) >= 190
        result = KGW().detect(record.token_ids, KEY)
        assert result.detected and result.p_value < 1e-3, result
        # the decoded text re-tokenizes to (almost) the same ids, so text detection works too
        assert KGW().detect(record.text, KEY, tokenizer).p_value < 1e-3


def test_no_detection_without_watermark_or_with_wrong_key(generations):
    marked, plain = generations
    for record in plain:
        assert KGW().detect(record.token_ids, KEY).p_value > 0.01
    wrong = WatermarkKey.from_seed(12)
    for record in marked:
        assert KGW().detect(record.token_ids, wrong).p_value > 0.01


def test_survives_20_percent_word_substitution(generations, tokenizer):
    marked, _ = generations
    rng = torch.Generator().manual_seed(0)
    for record in marked:
        ids = torch.tensor(record.token_ids)
        edit = torch.rand(len(ids), generator=rng) < 0.2
        ids[edit] = torch.randint(0, len(tokenizer), (int(edit.sum()),), generator=rng)
        assert KGW().detect(ids, KEY).p_value < 1e-3


def test_selfhash_detects_and_rejects(text_model):
    model, tokenizer = text_model
    scheme = KGW(seeding="selfhash", context_width=4)
    marked = generate_watermarked(model, tokenizer, PROMPTS[:2], scheme, KEY, chat=True, seed=1, **GEN)
    for record in marked:
        assert scheme.detect(record.token_ids, KEY).p_value < 1e-3
        assert scheme.detect(record.token_ids, WatermarkKey.from_seed(13)).p_value > 0.01


def test_empirical_fpr_on_human_text(human_passages, tokenizer):
    """At the 1% level the false-positive rate on 600 human passages must lie in [0, 2%]."""
    for scheme in (KGW(), KGW(seeding="selfhash", context_width=4)):
        results = scheme.detect_batch(human_passages, KEY, tokenizer, fpr=0.01)
        rate = sum(r.detected for r in results) / len(results)
        assert len(results) >= 500 and rate <= 0.02, (scheme.seeding, rate)


def test_batch_equals_single_and_repeats_are_ignored():
    rng = torch.Generator().manual_seed(3)
    texts = [torch.randint(0, 1000, (n,), generator=rng) for n in (5, 50, 300)]
    batch = KGW().detect_batch(texts, KEY)
    for text, result in zip(texts, batch):
        assert result.to_dict() == KGW().detect(text, KEY).to_dict()
    repeated = torch.tensor([5, 6] * 100)
    assert KGW().detect(repeated, KEY).details["n_scored"] == 2


def test_processor_biases_exactly_the_green_list():
    scheme, vocab = KGW(delta=3.0), 500
    processor = scheme.processor(KEY, vocab)
    input_ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    scores = torch.zeros(2, vocab + 12)  # models often pad their vocabulary
    biased = processor(input_ids, scores.clone())
    green = scheme.green_mask(KEY, input_ids[:, -1:], vocab)
    assert torch.equal(biased[:, :vocab] == 3.0, green)
    assert torch.all(biased[:, vocab:] == 0)
    assert 0.15 < green.float().mean() < 0.35


GREEN_SNIPPET = """
import torch
from provenance.keys import WatermarkKey
from text_wm.kgw import KGW
mask = KGW().green_mask(WatermarkKey.from_seed(11), torch.tensor([[42], [7]]), 49152)
print(mask.nonzero().flatten().tolist()[:400])
"""


def test_green_lists_identical_between_processes():
    runs = {
        subprocess.run([sys.executable, "-c", GREEN_SNIPPET], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
    here = KGW().green_mask(KEY, torch.tensor([[42], [7]]), 49152).nonzero().flatten().tolist()[:400]
    assert runs.pop().strip() == str(here)


def test_rejects_empty_and_too_short_input(tokenizer):
    with pytest.raises(ValueError, match="empty"):
        KGW().detect("   ", KEY, tokenizer)
    with pytest.raises(ValueError, match="too short"):
        KGW().detect([5], KEY)
