"""EXP and ITS watermarks: alignment statistics against naive references, the sampler and its
processor, calibration of the permutation test, and detection on real SmolLM2 generations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from transformers import LogitsProcessorList

from provenance.keys import WatermarkKey
from text_wm.alignment import CPU_SERIAL_ELEMENTS, edit_statistic, plain_statistic
from text_wm.exp_its import EXP, ITS
from text_wm.generate import generate_watermarked

SCHEMES = [EXP(), ITS()]
KEY = WatermarkKey.from_seed("exp-its-test")
WRONG_KEY = WatermarkKey.from_seed("exp-its-wrong")
PROMPTS = [
    "The history of the old harbour town",
    "Here is my favourite recipe for a quick dinner:",
    "Scientists studying deep ocean currents found",
    "The best advice I ever got about learning",
]


# -- alignment statistics against naive references ----------------------------------------


def naive_plain(cost: list[list[float]]) -> float:
    m, n = len(cost), len(cost[0])
    return min(sum(cost[i][(s + i) % n] for i in range(m)) for s in range(n))


def naive_edit(cost: list[list[float]], gamma: float) -> float:
    """The ring alignment by its definition: deletions as explicit runs of d skipped key positions."""
    m, n = len(cost), len(cost[0])
    a = [0.0] * n
    for i in range(1, m + 1):
        b = [min(a[j] + gamma, a[j - 1] + cost[i - 1][j - 1]) for j in range(n)]  # a[-1]: round the ring
        a = [min(b[(j - d) % n] + d * gamma for d in range(n)) for j in range(n)]
    return min(a)


@pytest.mark.parametrize("gamma", [0.05, 0.3, 1.5])
def test_statistics_match_naive_references(gamma: float) -> None:
    generator = torch.Generator().manual_seed(0)
    for m, n in [(1, 1), (3, 5), (6, 4), (9, 7), (4, 9)]:
        cost = torch.randn(5, m, n, generator=generator, dtype=torch.float64)
        plain, shift = plain_statistic(cost)
        edit = edit_statistic(cost, gamma)
        for b in range(cost.shape[0]):
            rows = cost[b].tolist()
            assert plain[b].item() == pytest.approx(naive_plain(rows), abs=1e-9)
            assert sum(rows[i][(int(shift[b]) + i) % n] for i in range(m)) == pytest.approx(plain[b].item())
            assert edit[b].item() == pytest.approx(naive_edit(rows, gamma), abs=1e-9)
            assert edit[b].item() <= plain[b].item() + 1e-9  # the unedited diagonal is one alignment


def test_edit_statistic_treats_every_key_rotation_alike() -> None:
    """A generation may start at any shift: rotating the key must not change the statistic."""
    generator = torch.Generator().manual_seed(3)
    cost = torch.randn(20, 30, 8, generator=generator, dtype=torch.float64)
    for k in (1, 3, 7):
        assert torch.allclose(edit_statistic(cost, 0.3), edit_statistic(cost.roll(k, dims=2), 0.3))


def test_statistics_with_row_map_equal_expanded_costs() -> None:
    generator = torch.Generator().manual_seed(4)
    unique_cost = torch.randn(4, 3, 6, generator=generator)
    rows = torch.tensor([2, 0, 0, 1, 2, 2, 0])
    expanded = unique_cost[:, rows, :]
    assert torch.allclose(plain_statistic(unique_cost, rows=rows)[0], plain_statistic(expanded)[0])
    assert torch.allclose(edit_statistic(unique_cost, 0.5, rows=rows), edit_statistic(expanded, 0.5))


def test_statistics_with_per_row_lengths_equal_separate_runs() -> None:
    generator = torch.Generator().manual_seed(1)
    cost = torch.randn(6, 8, 5, generator=generator)
    lengths = torch.tensor([8, 3, 5, 1, 8, 6])
    plain, _ = plain_statistic(cost, lengths)
    edit = edit_statistic(cost, 0.4, lengths)
    for b, m in enumerate(lengths.tolist()):
        alone = cost[b : b + 1, :m]
        assert plain[b].item() == pytest.approx(plain_statistic(alone)[0].item(), abs=1e-5)
        assert edit[b].item() == pytest.approx(edit_statistic(alone, 0.4).item(), abs=1e-5)


def test_cpu_chunking_does_not_change_the_edit_statistic() -> None:
    cost = torch.log1p(-torch.rand(2000, 12, 40, generator=torch.Generator().manual_seed(2)))
    assert 2000 * 40 > CPU_SERIAL_ELEMENTS  # so the batch is split into CPU chunks
    together = edit_statistic(cost, 1.0)
    parts = torch.cat([edit_statistic(cost[b : b + 1], 1.0) for b in range(0, 2000, 37)])
    assert torch.allclose(together[::37], parts)


# -- sampler and processor -------------------------------------------------------------


def naive_choice(scheme, tables, probs: list[float], row: int) -> int:
    """The paper's samplers written out: EXP argmax log(xi)/p, ITS first cdf crossing in pi-order."""
    if scheme.name == "exp":
        xi = tables["gumbel"][row].double().neg().exp().neg().exp().tolist()  # the key's uniforms
        scores = [math.log(x) / p if p > 0 else -math.inf for x, p in zip(xi, probs)]
        return max(range(len(probs)), key=scores.__getitem__)
    total, cumulative = sum(probs), 0.0
    u = tables["u"][row].item()
    for token in tables["order"].tolist():
        cumulative += probs[token] / total
        if cumulative > u:
            return token
    raise AssertionError("no token chosen")


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_processor_forces_exactly_the_sampler_token(scheme) -> None:
    vocab, small = 50, type(scheme)(key_length=16)
    tables = small.key_tables(KEY, vocab, "cpu")
    processor = small.processor(KEY, vocab, shifts=[0, 5, 15])
    generator = torch.Generator().manual_seed(3)
    prompt_length = 7
    for step in range(4):
        scores = torch.randn(3, vocab + 3, generator=generator) * 2.0  # 3 padded logit columns
        scores[:, 1::3] = float("-inf")  # zero-probability tokens must never be chosen
        input_ids = torch.zeros(3, prompt_length + step, dtype=torch.long)
        out = processor(input_ids, scores.clone())
        assert out.shape == scores.shape
        chosen = out.argmax(dim=-1)
        assert torch.isfinite(out).sum(dim=-1).tolist() == [1, 1, 1]
        assert out[torch.arange(3), chosen].tolist() == [0.0, 0.0, 0.0]
        probs = torch.softmax(scores[:, :vocab].double(), dim=-1)
        for row, shift in enumerate([0, 5, 15]):
            expected = naive_choice(small, tables, probs[row].tolist(), (shift + step) % 16)
            assert int(chosen[row]) == expected
            assert int(chosen[row]) < vocab and int(chosen[row]) % 3 != 1
    assert processor.shifts == [0, 5, 15]
    random_shifts = small.processor(KEY, vocab)
    random_shifts(torch.zeros(3, 4, dtype=torch.long), torch.randn(3, vocab))
    assert len(random_shifts.shifts) == 3 and all(0 <= s < 16 for s in random_shifts.shifts)


def test_reused_processor_restarts_only_where_it_can_tell_or_is_reset() -> None:
    processor = EXP(key_length=16).processor(KEY, 50, shifts=0)
    call = lambda length: processor(torch.zeros(1, length, dtype=torch.long), torch.randn(1, 50))  # noqa: E731
    call(7), call(8)
    call(5)  # shorter than the last input: a new generation
    assert processor.prompt_length == 5
    call(6)  # one token longer: indistinguishable from the next step
    assert processor.prompt_length == 5
    processor.reset()
    call(6)
    assert processor.prompt_length == 6


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_sampler_is_distortion_free(scheme) -> None:
    """Over 20000 key positions, token frequencies match p (chi-square, 5 dof)."""
    n, probs = 20000, torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04, 0.0])
    wide = type(scheme)(key_length=n)
    tables = wide.key_tables(WatermarkKey.from_seed("distortion"), probs.numel(), "cpu")
    tokens = wide.choose(tables, probs.log().expand(n, -1), torch.arange(n))
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    assert counts[-1] == 0
    chi2 = float((((counts[:-1] - n * probs[:-1]) ** 2) / (n * probs[:-1])).sum())
    assert chi2 < 20.5  # P[chi2_5 > 20.5] ~ 0.001


# -- calibration of the permutation test -----------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_null_p_values_are_uniform_on_random_tokens(scheme) -> None:
    vocab, count, resamples = 49152, 100, 50
    texts = [torch.randint(0, vocab, (30,), generator=torch.Generator().manual_seed(1000 + s)) for s in range(count)]
    results = scheme.detect_batch(texts, KEY, vocab=vocab, n_resamples=resamples, device="cpu")
    p_values = torch.tensor([r.p_value for r in results])
    for level in (0.1, 0.5):
        attained = math.floor(level * (resamples + 1)) / (resamples + 1)  # P[p <= level] under H0
        tolerance = 3.5 * math.sqrt(attained * (1 - attained) / count)
        assert abs(float((p_values <= level).double().mean()) - attained) <= tolerance


def test_exp_scores_repeated_tokens_once() -> None:
    """A repeat keeps its place in the alignment at the constant neutral cost, whatever the key."""
    scheme = EXP()
    text = torch.randint(0, 49152, (40,), generator=torch.Generator().manual_seed(8))
    repeated = torch.cat([text, text[:10], text[:10]])
    base, longer = (scheme.detect(t, KEY, vocab=49152, n_resamples=5) for t in (text, repeated))
    assert longer.details["n_scored"] == base.details["n_scored"] == len(torch.unique(text))
    expected = base.details["plain_statistic"] + 20 * scheme.neutral_cost
    assert longer.details["plain_statistic"] == pytest.approx(expected, abs=1e-3)


def test_one_key_flags_natural_like_text_at_a_binomial_rate() -> None:
    """One deployed key must not flag a population of texts in a clump.

    Texts drawn from a Zipf law share their commonest tokens, as natural text does. Scoring
    every occurrence, the flag counts of 12 keys on the same 100 texts at p <= 0.05 spread
    from 1 to 11 (dispersion index 39 on 11 degrees of freedom); scoring each distinct token
    once they spread as a binomial would (index about 8). Fails above the chi-square 99.9%
    point.
    """
    vocab, level, n_keys = 49152, 0.05, 12
    rng = np.random.default_rng(0)
    weights = np.arange(1, 3001) ** -1.1
    token_ids = rng.choice(vocab, 3000, replace=False)
    texts = [torch.as_tensor(token_ids[rng.choice(3000, 120, p=weights / weights.sum())]) for _ in range(100)]
    counts = np.array([
        sum(r.p_value <= level for r in EXP().detect_batch(texts, WatermarkKey.from_seed(f"zipf-{k}"), vocab=vocab,
                                                           device="cpu"))
        for k in range(n_keys)
    ])
    rate = counts.mean() / len(texts)
    dispersion = ((counts - counts.mean()) ** 2).sum() / (len(texts) * rate * (1 - rate))
    assert dispersion < chi2.ppf(0.999, n_keys - 1)
    assert counts.mean() <= len(texts) * level + 3 * math.sqrt(len(texts) * level / n_keys)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_batch_detection_equals_single_detection(scheme) -> None:
    generator = torch.Generator().manual_seed(5)
    texts = [torch.randint(0, 1000, (length,), generator=generator) for length in (12, 40, 7)]
    texts.append(torch.cat([texts[0], texts[0]]))  # repeated tokens share key entries
    batch = scheme.detect_batch(texts, KEY, vocab=1000, n_resamples=60, device="cpu")
    for text, result in zip(texts, batch):
        single = scheme.detect(text, KEY, vocab=1000, n_resamples=60, device="cpu")
        assert single.p_value == result.p_value
        assert single.score == pytest.approx(result.score, abs=1e-5)
        assert single.details == pytest.approx(result.details)


# -- long texts: windows ------------------------------------------------------------------


def test_short_texts_keep_the_previous_results() -> None:
    """Texts within the window score as before windows existed: these permutation p-values (x 201
    resamples + 1) and scores were computed by the implementation without windows."""
    generator = torch.Generator().manual_seed(21)
    texts = [torch.randint(0, 1000, (length,), generator=generator) for length in (60, 180)]
    expected = {"exp": [(112, 28, -99.585205078125), (3, 16, -288.12432861328125)],
                "its": [(69, 46, 12.735725402832031), (201, 121, 44.26211166381836)]}
    for scheme in SCHEMES:
        results = scheme.detect_batch(texts, KEY, vocab=1000, n_resamples=200, device="cpu")
        for text, result, (count, plain_count, score) in zip(texts, results, expected[scheme.name]):
            details = result.details
            assert details["p_value_permutation"] == count / 201 and details["p_value_plain"] == plain_count / 201
            if scheme.name == "exp":  # the weighted Bonferroni of the permutation and analytic tails
                assert result.p_value == min(1.0, count / 200, 201 * details["p_value_analytic"])
            else:
                assert result.p_value == count / 201 and details["p_value_analytic"] is None
            assert result.score == pytest.approx(score, abs=1e-4)
            assert result.details["windows"] == 1
            assert result.details["tokens_total"] == result.details["tokens_scored"] == text.numel()
            assert "window_p_values" not in result.details


def test_window_layout() -> None:
    scheme = EXP(window_tokens=100, max_windows=3)
    assert scheme.windows(100) == [(0, 100)]
    assert scheme.windows(101) == [(0, 50), (50, 101)]  # near-equal parts covering the whole text
    assert scheme.windows(300) == [(0, 100), (100, 200), (200, 300)]
    assert scheme.windows(1000) == [(0, 100), (450, 550), (900, 1000)]  # spread from start to end
    assert EXP(window_tokens=100, max_windows=1).windows(250) == [(0, 100)]
    for m in (101, 257, 300, 301, 999, 10**6):
        spans = scheme.windows(m)
        assert len(spans) == min(3, -(-m // 100)) and all(0 < hi - lo <= 100 for lo, hi in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and spans[0][0] == 0 and spans[-1][1] == m
    with pytest.raises(ValueError):
        EXP(window_tokens=0)
    with pytest.raises(ValueError):
        EXP(max_windows=0)


def _watermarked_tokens(scheme, vocab: int, count: int, shift: int, seed: int) -> torch.Tensor:
    """``count`` tokens the scheme's sampler picks from random next-token distributions."""
    tables = scheme.key_tables(KEY, vocab, "cpu")
    logits = torch.randn(count, vocab, generator=torch.Generator().manual_seed(seed)) * 3.0
    return scheme.choose(tables, logits, (shift + torch.arange(count)) % scheme.key_length)


@pytest.mark.parametrize("cls", [EXP, ITS], ids=["exp", "its"])
def test_long_text_is_tested_on_windows_with_a_bonferroni_p_value(cls) -> None:
    vocab, scheme = 1000, cls(window_tokens=100, max_windows=3)
    generator = torch.Generator().manual_seed(30)
    marked = _watermarked_tokens(scheme, vocab, 100, shift=40, seed=31)
    text = torch.randint(0, vocab, (1000,), generator=generator)  # windows start at 0, 450 and 900
    text[450:550] = marked  # a watermarked passage inside unwatermarked text: the middle window
    plain = torch.randint(0, vocab, (1000,), generator=generator)
    found, null = scheme.detect_batch([text, plain], KEY, vocab=vocab, device="cpu")  # 100 resamples
    for result in (found, null):
        details = result.details
        assert details["tokens_total"] == 1000 and details["tokens_scored"] == 300 and details["windows"] == 3
        assert details["window_starts"] == [0, 450, 900] and details["window_lengths"] == [100, 100, 100]
        assert details["n_resamples"] == 3 * 101 - 1  # so the text's smallest p-value stays 1/101
        window_p = details["window_p_values"]
        assert result.p_value == pytest.approx(min(1.0, 3 * min(window_p)))
        assert result.p_value >= min(window_p) and window_p[details["best_window"]] == min(window_p)
        assert result.detected == (result.p_value <= 0.01) == (result.score < result.threshold)
    assert found.detected and found.details["best_window"] == 1
    assert found.details["p_value_permutation"] == pytest.approx(1 / 303)  # the window's floor, 302 resamples
    if cls is ITS:
        assert found.p_value == pytest.approx(1 / 101)
    else:  # below the permutation floor: the analytic tail of the plain statistic
        assert found.p_value == pytest.approx(303 * found.details["p_value_analytic"]) and found.p_value < 1e-10
    assert not null.detected and null.p_value > 0.01
    # each window's p-value is the one the window gets as a text on its own
    alone = scheme.detect(plain[450:550], KEY, vocab=vocab, n_resamples=302, device="cpu")
    assert null.details["window_p_values"][1] == alone.p_value
    # a text between one and max_windows windows is scored whole, in near-equal parts
    partly = scheme.detect(text[:250], KEY, vocab=vocab, n_resamples=20, device="cpu")
    assert partly.details["tokens_scored"] == 250 and partly.details["window_lengths"] == [83, 83, 84]
    assert partly.details["n_resamples"] == 62


def test_long_null_texts_keep_a_valid_p_value() -> None:
    """Random long texts: the windowed p-values are super-uniform (Bonferroni); the permutation part never
    goes below its floor (EXP's p-value may, through the analytic tail, but stays valid)."""
    scheme, vocab, resamples = EXP(window_tokens=30, max_windows=3), 1000, 20
    texts = [torch.randint(0, vocab, (200,), generator=torch.Generator().manual_seed(500 + s)) for s in range(60)]
    results = scheme.detect_batch(texts, KEY, vocab=vocab, n_resamples=resamples, device="cpu")
    p_values = np.array([r.p_value for r in results])
    assert min(r.details["p_value_permutation"] for r in results) >= 1 / (3 * (resamples + 1)) - 1e-12
    for level in (0.1, 0.3, 0.5):  # P[p <= level] <= level under H0, with sampling slack
        assert np.mean(p_values <= level) <= level + 3 * math.sqrt(level * (1 - level) / len(texts))


def test_progress_bar_does_not_change_results() -> None:
    text = torch.randint(0, 1000, (120,), generator=torch.Generator().manual_seed(9))
    quiet = EXP().detect(text, KEY, vocab=1000, n_resamples=30, device="cpu")
    shown = EXP().detect(text, KEY, vocab=1000, n_resamples=30, device="cpu", progress=True)
    assert quiet.p_value == shown.p_value and quiet.details == shown.details


# -- real generations with SmolLM2 -----------------------------------------------------
# One generate call (decoding is memory-bound, so 12 rows cost little more than 4): rows
# 0-3 EXP, 4-7 ITS (fixed shifts), 8-11 unwatermarked.

SHIFTS = [3, 70, 140, 250]
NEW_TOKENS = 200


@pytest.fixture(scope="module")
def lm(text_model):
    model, tokenizer = text_model
    tokenizer.padding_side = "left"
    return model, tokenizer


def generate_rows(lm, row_router, new_tokens: int, seed: int) -> tuple[list[torch.Tensor], list]:
    model, tokenizer = lm
    processors = [scheme.processor(KEY, tokenizer, shifts=SHIFTS) for scheme in SCHEMES]
    split = row_router([(0, 4, processors[0]), (4, 8, processors[1]), (8, 12, None)])
    encoded = tokenizer(PROMPTS * 3, return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **encoded, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([split]),
        )
    return list(out[:, encoded["input_ids"].shape[1] :]), processors


@pytest.fixture(scope="module")
def generations(lm, row_router):
    rows, processors = generate_rows(lm, row_router, NEW_TOKENS, seed=11)
    assert all(p.shifts == SHIFTS for p in processors)
    assert all(row.numel() == NEW_TOKENS for row in rows)
    return {"exp": rows[0:4], "its": rows[4:8], "plain": rows[8:12]}


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_watermarked_generations_detected(scheme, lm, generations) -> None:
    """Primary: the edit-robust permutation p-value with 999 resamples reaches its floor 1/1000."""
    results = scheme.detect_batch(generations[scheme.name], KEY, lm[1], n_resamples=999, device="cpu")
    for result in results:
        assert result.detected and result.p_value <= 1e-3
        assert result.score < result.threshold
        assert result.details["p_value_plain"] <= 1e-3
        if scheme.name == "exp":
            assert result.details["p_value_analytic"] < 1e-6


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_wrong_key_and_unwatermarked_text_not_detected(scheme, lm, generations) -> None:
    """8 null cases (4 with the wrong key, 4 unwatermarked): p-values look like H0.

    Each p-value is exactly valid, so one of 8 may fall at 1/101 by chance (probability
    ~8%, it does for one ITS case with these seeds); two or more would be a 0.3% event.
    """
    wrong = scheme.detect_batch(generations[scheme.name], WRONG_KEY, lm[1], device="cpu")
    assert all(r.key_id == WRONG_KEY.key_id for r in wrong)
    plain = scheme.detect_batch(generations["plain"], KEY, lm[1], device="cpu")
    p_values = sorted(r.p_value for r in wrong + plain)
    assert all(p > 0.01 for p in p_values[1:]) and p_values[4] > 0.1, p_values


def test_fixed_shift_generation_is_deterministic(lm, row_router) -> None:
    """Same prompts and shifts, another sampling seed: the watermarked rows repeat exactly."""
    first, _ = generate_rows(lm, row_router, 6, seed=1)
    second, processors = generate_rows(lm, row_router, 6, seed=12345)
    assert all(p.shifts == SHIFTS and p.prompt_length is not None for p in processors)
    for a, b in zip(first[:8], second[:8]):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(first[8:], second[8:]))  # plain sampling differs


@pytest.mark.parametrize("scheme", [EXP(), pytest.param(ITS(), marks=pytest.mark.slow)], ids=["exp", "its"])
def test_empirical_fpr_on_human_text(scheme, human_passages, tokenizer) -> None:
    """At the 1% level the false-positive rate on 500 human passages (first 200 tokens) lies in [0, 2%]."""
    ids = [torch.tensor(tokenizer(t, add_special_tokens=False)["input_ids"][:200]) for t in human_passages[:500]]
    results = scheme.detect_batch(ids, KEY, tokenizer, fpr=0.01)
    rate = sum(r.detected for r in results) / len(results)
    assert len(results) == 500 and rate <= 0.02, rate


def test_the_generation_record_keeps_the_key_shift_and_the_scheme_settings(text_model):
    model, tokenizer = text_model
    scheme = EXP()
    key = WatermarkKey.from_seed("record-shift")
    records = generate_watermarked(model, tokenizer, ["Tell me about tides.", "Name a colour."], scheme, key,
                                   processor_kwargs={"shifts": [7, 200]}, max_new_tokens=6, do_sample=True)
    assert [r.settings["key_shift"] for r in records] == [7, 200]
    assert all(r.settings["key_length"] == scheme.key_length and "device" not in r.settings for r in records)
    json.dumps([r.to_dict() for r in records])  # a record is plain JSON


def test_exp_reaches_below_the_permutation_floor_in_agreement_with_brute_force() -> None:
    """Texts with a watermarked stretch of 0-12 tokens in 120 random ones (key length 64, so they wrap):
    the analytic tail is never below a 20,000-resample brute-force p-value of the plain statistic (it is
    a Bonferroni bound) and within the key length of it; once the brute force reaches its floor the
    combined p-value goes far below it. On random texts the analytic tail keeps its level."""
    scheme, vocab = EXP(key_length=64), 1000
    generator = torch.Generator().manual_seed(40)
    texts = []
    for marked in (0, 3, 6, 9, 12, 40):
        text = torch.randint(0, vocab, (120,), generator=generator)
        text[:marked] = _watermarked_tokens(scheme, vocab, marked, shift=5, seed=41 + marked)
        texts.append(text)
    brute = scheme.detect_batch(texts, KEY, vocab=vocab, edit_robust=False, n_resamples=20_000, device="cpu")
    for result in brute:
        exact, analytic = result.details["p_value_plain"], result.details["p_value_analytic"]
        if exact > 1 / 20_001:
            assert exact <= analytic * 1.2 + 3e-4, (exact, analytic)
            assert analytic <= 64 * exact * 1.2 + 3e-4, (exact, analytic)
    strongest = brute[-1]
    assert strongest.details["p_value_plain"] == 1 / 20_001 and strongest.p_value < 1e-9
    null = [torch.randint(0, vocab, (120,), generator=generator) for _ in range(400)]
    analytic = np.array([r.details["p_value_analytic"] for r in
                         scheme.detect_batch(null, KEY, vocab=vocab, edit_robust=False, n_resamples=1, device="cpu")])
    for level in (0.05, 0.2):
        assert np.mean(analytic <= level) <= level + 3 * math.sqrt(level * (1 - level) / len(null))
