"""MajorMark and MajorMark+: payload round trips on real SmolLM2 text, calibrated null, unit checks.

All three generations of the model tests (MajorMark, MajorMark+, unwatermarked) come from
ONE batched ``generate`` call, rows routed to their processor, so the model runs once.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from transformers import LogitsProcessorList

from provenance.codes.reed_solomon import codebook
from provenance.keys import WatermarkKey
from provenance.stats import collision_tail
from text_wm.generate import format_prompts
from text_wm.majormark import (
    MajorMark,
    MajorMarkPlus,
    block_candidates,
    majority_bits,
    score_block_candidates,
    split_two_means,
)

KEY = WatermarkKey.from_seed(31)
WRONG_KEY = WatermarkKey.from_seed(32)
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms.",
    "Describe your favourite city.",
    "Give advice to a new gardener.",
]
PAYLOADS = ["0000", "b7e1", "5a3c", "ffff"]  # 0000 and ffff: whitening makes even these embeddable
SCHEMES = {"majormark": MajorMark(), "majormark+": MajorMarkPlus()}
GEN = dict(max_new_tokens=200, min_new_tokens=200, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def generations(text_model, row_router):
    model, tokenizer = text_model
    n = len(PROMPTS)
    groups = [
        (0, n, SCHEMES["majormark"].processor(KEY, tokenizer, payload=PAYLOADS)),
        (n, 2 * n, SCHEMES["majormark+"].processor(KEY, tokenizer, payload=PAYLOADS)),
        (2 * n, 3 * n, None),
    ]
    texts = format_prompts(tokenizer, PROMPTS, chat=True) * 3
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model.generate(**batch, logits_processor=LogitsProcessorList([row_router(groups)]),
                             pad_token_id=tokenizer.pad_token_id, **GEN)
    new = out[:, batch["input_ids"].shape[1]:].cpu()
    return {"majormark": new[:n], "majormark+": new[n:2 * n], "plain": new[2 * n:]}


# -- real model text ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEMES))
def test_payload_round_trip_and_detection_from_200_tokens(generations, tokenizer, name):
    scheme = SCHEMES[name]
    for tokens, payload in zip(generations[name], PAYLOADS):
        assert tokens.numel() == 200
        result = scheme.detect(tokens, KEY, expected_payload=payload)
        assert result.detected and result.p_value < 1e-3, (name, payload, result.p_value)
        assert result.payload == payload, (name, payload, result.details)
        assert result.bit_accuracy == 1.0 and result.details["payload_exact"]
        assert result.scheme == name and result.key_id == KEY.key_id
        assert len(result.details["bit_confidence"]) == scheme.code_bits
        assert result.details["decoder"].startswith("soft maximum-likelihood")
        # decode() reports the same payload, and so does detection from the detokenized text
        assert scheme.decode(tokens, KEY).payload == payload
        from_text = scheme.detect(tokenizer.decode(tokens, skip_special_tokens=True), KEY, tokenizer)
        assert from_text.p_value < 1e-3 and from_text.payload == payload


@pytest.mark.parametrize("name", list(SCHEMES))
def test_hard_decision_chase_reed_solomon_path(generations, name):
    """The paper-style path (clustering / enumeration -> RS with erasures) on the same texts."""
    scheme = (MajorMarkPlus if name == "majormark+" else MajorMark)(soft_decoding=False)
    results = [scheme.decode(t, KEY, expected_payload=p) for t, p in zip(generations[name], PAYLOADS)]
    assert all(r.details["decoder"].startswith("Chase") for r in results)
    assert np.mean([r.details["raw_bit_accuracy"] for r in results]) >= 0.8
    assert np.mean([r.bit_accuracy for r in results]) >= 0.9, [r.payload for r in results]


def test_decode_batch_matches_decode_per_text(generations):
    scheme = SCHEMES["majormark"]
    texts, payload = generations["majormark"][:4], PAYLOADS[0]
    batch = scheme.decode_batch(texts, KEY, expected_payload=payload)
    single = [scheme.decode(t, KEY, expected_payload=payload) for t in texts]
    assert [(r.p_value, r.payload, r.bit_accuracy) for r in batch] == \
        [(r.p_value, r.payload, r.bit_accuracy) for r in single]
    assert batch[0].payload == payload and batch[0].bit_accuracy == 1.0


@pytest.mark.parametrize("name", list(SCHEMES))
def test_unwatermarked_text_and_wrong_key_not_detected(generations, name):
    scheme = SCHEMES[name]
    for tokens in generations["plain"]:
        result = scheme.detect(tokens, KEY)
        assert not result.detected and result.p_value > 0.01, result.p_value
        assert result.payload is None and "decode_error" in result.details
    for tokens in generations[name]:
        result = scheme.detect(tokens, WRONG_KEY)
        assert not result.detected and result.p_value > 0.01, result.p_value
    # one wrong key is one draw: over 10 more, 40 tests at the 1% level may flag at most 2
    flagged = sum(
        scheme.detect(tokens, WatermarkKey.from_seed(100 + k)).detected
        for k in range(10) for tokens in generations[name]
    )
    assert flagged <= 2


@pytest.mark.parametrize("name", list(SCHEMES))
def test_batched_detection_equals_one_text_at_a_time(generations, name):
    """One counting pass over a batch must not mix texts: every field equals the per-text result."""
    scheme = SCHEMES[name]
    texts = [*generations[name][:2], generations["plain"][0], torch.tensor([5, 7]), generations[name][0][:40]]
    batch = scheme.detect_batch(texts, KEY)
    assert [r.detected for r in batch][:3] == [True, True, False]
    for text, got in zip(texts, batch):
        assert got.to_dict() == scheme.detect(text, KEY).to_dict()


def test_each_scheme_does_not_detect_the_other(generations):
    """MajorMark and MajorMark+ partition differently even under one key."""
    for tokens in generations["majormark"]:
        assert SCHEMES["majormark+"].detect(tokens, KEY).p_value > 1e-3
    for tokens in generations["majormark+"]:
        assert SCHEMES["majormark"].detect(tokens, KEY).p_value > 1e-3


# -- calibration of the chi-square null -------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEMES))
def test_null_p_values_are_calibrated_on_random_tokens(name):
    scheme = SCHEMES[name]
    gen = torch.Generator().manual_seed(5)
    p = np.array([
        scheme.detect(torch.randint(0, 49152, (200,), generator=gen), KEY).p_value for _ in range(200)
    ])
    assert np.mean(p <= 0.01) <= 0.03
    assert sps.kstest(p, "uniform").pvalue > 1e-3, np.histogram(p, bins=10, range=(0, 1))[0]


# -- unit checks ---------------------------------------------------------------------------


def test_exact_collision_tail_matches_brute_force_enumeration():
    """P[sum C(n_i, 2) >= k] by enumerating every assignment of 7 tokens to 4 sublists."""
    total, cells = 7, 4
    assignments = np.array(list(itertools.product(range(cells), repeat=total)))
    counts = np.stack([(assignments == c).sum(axis=1) for c in range(cells)], axis=1)
    collisions = (counts * (counts - 1) // 2).sum(axis=1)
    for k in range(0, 22):
        assert collision_tail(total, cells, k) == pytest.approx(np.mean(collisions >= k), abs=1e-12)


def test_two_means_split_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.normal(size=12) + rng.integers(0, 2, size=12) * 2.0
        for min_high in (1, 6, 7):
            high, split = split_two_means(values, min_high)
            order = np.argsort(-values)
            best = min(
                (np.var(values[order[:k]]) * k + np.var(values[order[k:]]) * (12 - k), k)
                for k in range(min_high, 12)
            )
            assert high.sum() == best[1] and high.sum() >= min_high
            assert values[~high].max() <= split <= values[high].min()


def test_clustering_recovers_bits_and_majority_from_synthetic_counts():
    scheme = MajorMark()
    L = scheme.code_bits
    rng = np.random.default_rng(1)
    for _ in range(20):
        bits = rng.integers(0, 2, L)
        m = int(majority_bits(bits))
        counts = torch.zeros(2, 1, L, dtype=torch.long)
        counts[1 - m, 0] = torch.from_numpy(rng.poisson(4.0, L))  # the unbiased family: noise
        counts[m, 0] = torch.from_numpy(np.where(bits == m, rng.integers(6, 12, L), rng.integers(0, 3, L)))
        totals = counts[m].sum(dim=1)
        got, confidence, info = scheme._infer_bits(counts, totals)
        assert info["majority"] == m
        assert np.array_equal(got, bits)
        assert confidence.shape == (L,) and np.all((confidence >= 0) & (confidence <= 1))


def test_block_enumeration_matches_a_naive_loop_and_finds_the_pattern():
    b = 4
    bits, maj, gamma = block_candidates(b)
    assert bits.shape == (16, 4) and bits[0b1011].tolist() == [1, 0, 1, 1]
    assert maj[0b1100] == 1 and gamma[0b1100] == 0.5  # ties go to 1
    assert maj[0b0100] == 0 and gamma[0b0100] == 0.75
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 9, size=(2, 5, b))
    totals = rng.integers(20, 30, size=5)
    z = score_block_candidates(counts, totals)
    for j, c in itertools.product(range(5), range(16)):
        pattern = bits[c]
        m = int(majority_bits(pattern))
        g = float(np.mean(pattern == m))
        if g == 1.0:
            assert z[j, c] == -math.inf  # constant patterns carry nothing
            continue
        hits = counts[m, j][pattern == m].sum()
        t = totals[j]
        assert z[j, c] == pytest.approx((hits - g * t) / math.sqrt(t * g * (1 - g)))
    # a block whose tokens all fall in the preferred sublists of pattern 0b0010 (maj 0)
    counts = np.array([[[9, 8, 0, 10]], [[7, 6, 7, 7]]])
    assert score_block_candidates(counts, [27]).argmax() == 0b0010


def test_codebook_is_the_rs_code_and_chase_decodes_larger_payloads():
    scheme = MajorMark()
    book = codebook(2, 4)
    assert book.shape == (65536, 48)
    for payload in (b"\x00\x00", b"\x12\x34", b"\xff\xfe"):
        assert np.array_equal(book[int.from_bytes(payload, "big")], scheme.code.encode(payload))
    # 32-bit payloads are beyond soft decoding: synthetic counts with 3 misleading bits go through Chase RS
    big = MajorMark(payload_bits=32, parity_bytes=4)
    payload = bytes.fromhex("deadbeef")
    word = big.embedded_word(payload, KEY)
    m = int(majority_bits(word))
    rng = np.random.default_rng(3)
    counts = torch.zeros(2, 1, big.code_bits, dtype=torch.long)
    looks_preferred = word == m
    looks_preferred[[2, 20, 40]] ^= True  # three bits whose counts point the wrong way
    counts[m, 0] = torch.from_numpy(np.where(looks_preferred, 7, 1))
    counts[1 - m, 0] = torch.from_numpy(rng.multinomial(int(counts[m].sum()), np.full(big.code_bits, 1 / 64)))
    totals = counts[m].sum(dim=1)
    bits, confidence, _ = big._infer_bits(counts, totals)
    assert np.sum(bits != word) == 3
    decoded, error = big._decode_counts(bits, confidence, KEY, counts, totals)
    assert error is None and decoded["payload"] == payload and decoded["decoder"].startswith("Chase")


def test_processor_biases_exactly_the_preferred_set_per_row():
    vocab = 3000
    for scheme in (MajorMark(delta=3.0), MajorMarkPlus(delta=3.0, block_bits=6)):
        payloads = ["0001", "c0de"]
        processor = scheme.processor(KEY, vocab, payload=payloads)
        input_ids = torch.tensor([[5, 17, 999], [2, 2, 123]])
        scores = torch.zeros(2, vocab + 7)  # models pad their logit width
        bias = processor(input_ids, scores)
        assert torch.all(bias[:, vocab:] == 0)
        words = scheme._words(KEY)
        for row, payload in enumerate(payloads):
            word = scheme.embedded_word(payload, KEY).reshape(scheme.n_blocks, scheme.bits_per_block)
            ctx = scheme.context_hash(input_ids[row, -1:], words)
            block = int(scheme.block_of(ctx, words))
            m = int(majority_bits(word[block]))
            idx = scheme.sublist(ctx, torch.tensor(block), torch.tensor(m), torch.arange(vocab), words)
            preferred = torch.from_numpy(word[block] == m)[idx]
            assert torch.equal(bias[row, :vocab] == 3.0, preferred)
            assert abs(preferred.float().mean().item() - np.mean(word[block] == m)) < 0.05


def test_detect_and_decode_agree_and_short_input_is_not_detected():
    scheme = MajorMark()
    result = scheme.detect([42], KEY)
    assert not result.detected and result.p_value == 1.0 and result.details["n_scored"] == 0
    with pytest.raises(ValueError):
        scheme.detect([], KEY)


def test_configuration_and_payload_errors():
    with pytest.raises(ValueError, match="payload="):
        MajorMark().processor(KEY, 100)
    with pytest.raises(ValueError, match="exactly 2 bytes"):
        MajorMark().processor(KEY, 100, payload="abcdef")
    with pytest.raises(ValueError, match="hex"):
        MajorMark().processor(KEY, 100, payload="zz")
    with pytest.raises(ValueError, match="divide"):
        MajorMarkPlus(block_bits=5)
    with pytest.raises(ValueError, match="multiple of 8"):
        MajorMark(payload_bits=12)
    assert MajorMark(payload_bits=32, parity_bytes=6).code_bits == 80
    assert MajorMarkPlus().name == "majormark+" and MajorMark().name == "majormark"
