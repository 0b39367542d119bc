"""Tests for provenance.codes.prc: keys, code structure, round trips, calibrated and bounded detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse
from scipy import stats as sps

from provenance import stats
from provenance.codes import prc
from provenance.keys import WatermarkKey

N_NULL = 2_000
FPR = 0.01
# A 99.9% two-sided band for the number of false positives among N_NULL draws at rate FPR.
BAND = tuple(int(x) for x in sps.binom.ppf([0.0005, 0.9995], N_NULL, FPR))


@pytest.fixture(scope="module")
def key() -> WatermarkKey:
    return WatermarkKey.from_seed("prc-tests")


@pytest.fixture(scope="module")
def big(key: WatermarkKey) -> prc.PRCKey:
    """The image scheme's code: n = 4 * 64 * 64 latent signs, a 512-bit payload."""
    return prc.generate_key(key, prc.PRCParams.for_length(16384))


@pytest.fixture(scope="module")
def small(key: WatermarkKey) -> prc.PRCKey:
    return prc.generate_key(key, prc.PRCParams.for_length(1024, message_bits=64))


def flip(signs: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Signs through a binary symmetric channel, as calibrated posteriors ``(1 - 2 rate) * sign``."""
    return (1.0 - 2.0 * rate) * signs * np.where(rng.random(signs.shape) < rate, -1, 1)


def random_bits(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2, count, dtype=np.uint8)


# -- parameters and keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fpr", "t", "expected"),
    [  # (test_bits, g, k, r, noise_rate): the reference KeyGen's sizes, docs/algorithms.md section 1(c)
        (1e-5, 3, (17, 39, 568, 15777, 0.01762)),
        (1e-9, 3, (30, 39, 581, 15764, 0.01762)),
        (1e-5, 4, (17, 51, 580, 15753, 0.01350)),
    ],
)
def test_params_follow_the_reference_derivation(fpr: float, t: int, expected: tuple) -> None:
    params = prc.PRCParams.for_length(16384, message_bits=512, fpr=fpr, t=t)
    test_bits, g, k, r, noise_rate = expected
    assert (params.test_bits, params.g, params.k, params.r) == (test_bits, g, k, r)
    assert params.noise_rate == pytest.approx(noise_rate, abs=5e-6)


def test_params_reject_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="no parity checks"):
        prc.PRCParams.for_length(580, message_bits=512)
    with pytest.raises(ValueError, match="free rows"):
        prc.PRCParams.for_length(1024, message_bits=64, r=1000)
    with pytest.raises(ValueError, match="fpr"):
        prc.PRCParams.for_length(1024, fpr=0.0)


def test_key_generation_is_reproducible_and_key_dependent(key: WatermarkKey, small: prc.PRCKey) -> None:
    again = prc.generate_key(key, small.params)
    other = prc.generate_key(WatermarkKey.from_seed("someone else"), small.params)
    for name in ("generator", "supports", "one_time_pad", "test_bits", "permutation"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small, name))
        assert not np.array_equal(getattr(other, name), getattr(small, name)), name
    assert (again.parity_check != small.parity_check).nnz == 0
    assert again.key_id == small.key_id != other.key_id
    with pytest.raises(ValueError):
        small.generator[0, 0] = 0  # key material is read-only


def test_different_parameters_draw_independent_codes(key: WatermarkKey, small: prc.PRCKey) -> None:
    wider = prc.generate_key(key, prc.PRCParams.for_length(1024, message_bits=65))
    assert not np.array_equal(wider.one_time_pad, small.one_time_pad)


def test_code_structure(big: prc.PRCKey) -> None:
    p = big.params
    h = big.parity_check
    assert isinstance(h, sparse.csr_matrix) and h.shape == (p.r, p.n)
    np.testing.assert_array_equal(np.diff(h.indptr), p.t)
    np.testing.assert_array_equal(h.indices.reshape(p.r, p.t), big.supports)
    # H G = 0 over GF(2): every generator column satisfies every check.
    g = prc._unpack(big.generator, p.k).astype(np.int64)
    assert not np.any((h.astype(np.int64) @ g) % 2)
    # Staircase before the permutation: check j's last column is n - r + j, so H has full row rank.
    np.testing.assert_array_equal(big.permutation[big.supports].max(axis=1), np.arange(p.n - p.r, p.n))


# -- encoding -------------------------------------------------------------------------


def test_noiseless_codewords_satisfy_every_check(key: WatermarkKey) -> None:
    code = prc.generate_key(key, prc.PRCParams.for_length(2048, message_bits=128, noise_rate=0.0))
    rng = np.random.default_rng(0)
    signs = prc.encode(code, random_bits(rng, 128), rng)
    assert signs.dtype == np.int8 and set(np.unique(signs)) <= {-1, 1}
    bits = (signs < 0).astype(np.int64) ^ code.one_time_pad
    assert not np.any((code.parity_check.astype(np.int64) @ bits) % 2)


def test_encoding_noise_has_the_key_rate(small: prc.PRCKey) -> None:
    rng = np.random.default_rng(1)
    payload = random_bits(rng, 64)
    codewords = np.stack([prc.encode(small, payload, rng) for _ in range(200)])
    padded = codewords * (1 - 2 * small.one_time_pad.astype(int))
    satisfied = np.mean(np.prod(padded[:, small.supports], axis=-1) > 0)
    assert satisfied == pytest.approx(0.5 + 0.5 * (1 - 2 * small.params.noise_rate) ** 3, abs=0.01)


def test_encode_rejects_wrong_payloads(small: prc.PRCKey) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="exactly 64 bits"):
        prc.encode(small, random_bits(rng, 63), rng)
    with pytest.raises(ValueError, match="0/1"):
        prc.encode(small, np.full(64, 2), rng)


def test_latent_round_trip_through_the_posterior() -> None:
    rng = np.random.default_rng(2)
    signs = np.where(rng.random(50_000) < 0.5, -1, 1)
    latent = prc.codeword_to_latent(signs, rng)
    np.testing.assert_array_equal(np.sign(latent), signs)
    assert sps.kstest(latent, "norm").pvalue > 1e-3  # uniform signs give exactly N(0, 1)
    noisy = latent + rng.normal(0.0, np.sqrt(1.5), latent.shape)
    posterior = prc.latent_to_posterior(noisy, noise_var=1.5)
    # Calibrated: E[sign | posterior] equals the posterior, checked in bins.
    bins = np.digitize(posterior, np.linspace(-1, 1, 9))
    for b in np.unique(bins):
        chosen = bins == b
        if chosen.sum() > 2_000:
            assert np.mean(signs[chosen]) == pytest.approx(np.mean(posterior[chosen]), abs=0.05)


# -- decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "rate"), [(0, 0.0), (1, 0.1), (2, 0.2)])
def test_payload_round_trip_under_bit_flips(big: prc.PRCKey, seed: int, rate: float) -> None:
    rng = np.random.default_rng(seed)
    payload = random_bits(rng, 512)
    result = prc.decode(big, flip(prc.encode(big, payload, rng), rate, rng))
    np.testing.assert_array_equal(result.payload_bits, payload)
    assert result.bit_confidence.shape == (512,) and np.all(result.bit_confidence > 0.99)


def test_payload_round_trip_through_noisy_latents(big: prc.PRCKey) -> None:
    rng = np.random.default_rng(3)
    payload = random_bits(rng, 512)
    latent = prc.codeword_to_latent(prc.encode(big, payload, rng), rng)
    noisy = latent + rng.normal(0.0, 0.6, latent.shape)  # about 80% of signs survive
    assert 0.75 < np.mean(np.sign(noisy) == np.sign(latent)) < 0.85
    result = prc.decode(big, prc.latent_to_posterior(noisy, noise_var=0.36))
    np.testing.assert_array_equal(result.payload_bits, payload)


def test_decoding_noise_or_the_wrong_key_fails_cleanly(key: WatermarkKey, big: prc.PRCKey) -> None:
    rng = np.random.default_rng(4)
    stranger = prc.generate_key(WatermarkKey.from_seed("stranger"), big.params)
    for posteriors in (
        np.where(rng.random(big.params.n) < 0.5, -1.0, 1.0),
        prc.latent_to_posterior(rng.standard_normal(big.params.n)),
        prc.encode(stranger, random_bits(rng, 512), rng).astype(float),
    ):
        with pytest.raises(prc.PRCDecodeError, match="test bits"):
            prc.decode(big, posteriors)


def test_decoding_too_much_noise_fails_rather_than_guessing(big: prc.PRCKey) -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(prc.PRCDecodeError):
        prc.decode(big, flip(prc.encode(big, random_bits(rng, 512), rng), 0.42, rng))


def test_gauss_jordan_picks_the_greedy_basis_and_solves() -> None:
    rng = np.random.default_rng(6)
    k = 70  # two words per row
    for _ in range(5):
        base = rng.integers(0, 2, (90, k), dtype=np.uint8)
        # Interleave dependent rows (sums of earlier ones) so greediness matters.
        rows = [base[0]]
        for i in range(1, 90):
            if rng.random() < 0.3:
                picked = rng.choice(len(rows), size=min(2, len(rows)), replace=False)
                rows.append(np.bitwise_xor.reduce(np.stack(rows)[picked], axis=0))
            rows.append(base[i])
        matrix = np.stack(rows)
        pivots, combination = prc._gauss_jordan(prc._pack(matrix), k, track=True)
        assert sorted(pivots) == _gf2_greedy(matrix)
        x = random_bits(rng, k)
        y = (matrix.astype(np.int64) @ x) % 2
        np.testing.assert_array_equal((combination.astype(np.int64) @ y) % 2, x)
    assert prc._gauss_jordan(prc._pack(matrix[:, :k]), k + 1) is None  # rank below k is reported


def _gf2_greedy(matrix: np.ndarray) -> list[int]:
    """Rows independent (over GF(2)) of all rows before them, by the textbook row-insertion loop."""
    basis: dict[int, np.ndarray] = {}  # leading column -> reduced row
    chosen = []
    for i, row in enumerate(matrix.astype(np.uint8)):
        row = row.copy()
        for lead, reduced in basis.items():
            if row[lead]:
                row ^= reduced
        if row.any():
            lead = int(np.argmax(row))
            for other, reduced in basis.items():
                if reduced[lead]:
                    basis[other] = reduced ^ row
            basis[lead] = row
            chosen.append(i)
    return chosen


def test_dropping_rows_that_close_checks_keeps_the_greedy_basis(small: prc.PRCKey) -> None:
    rng = np.random.default_rng(7)
    confidence = rng.random(small.params.n)
    order = np.argsort(-confidence, kind="stable")
    pivots, _ = prc._gauss_jordan(small.generator[order], small.params.k)
    np.testing.assert_array_equal(prc._most_confident_basis(small, confidence), order[np.sort(pivots)])


# -- zero-bit detection ---------------------------------------------------------------


def test_detection_fires_on_noisy_codewords(key: WatermarkKey) -> None:
    code = prc.generate_key(key, prc.PRCParams.for_length(4096))
    rng = np.random.default_rng(8)
    for test in prc.TESTS:
        for _ in range(3):
            result = prc.detect(code, flip(prc.encode(code, None, rng), 0.2, rng), test=test)
            assert result.detected and result.p_value < 1e-9 and result.score > result.threshold


def test_detection_stays_quiet_on_random_signs_and_other_keys(big: prc.PRCKey) -> None:
    rng = np.random.default_rng(9)
    stranger = prc.generate_key(WatermarkKey.from_seed("stranger"), big.params)
    unmarked = np.where(rng.random((20, big.params.n)) < 0.5, -1.0, 1.0)
    foreign = np.stack([prc.encode(stranger, None, rng) for _ in range(20)]).astype(float)
    for batch in (unmarked, foreign):
        p = prc.p_values(big, batch)
        assert p.shape == (20,) and np.all(p > 1e-4)
        assert not prc.detect(big, batch[0]).detected


def test_hard_decisions_give_the_exact_binomial_tail(small: prc.PRCKey) -> None:
    rng = np.random.default_rng(10)
    signs = flip(prc.encode(small, None, rng), 0.3, rng)
    result = prc.detect(small, signs, fpr=1e-3)
    satisfied = result.details["checks_satisfied"]
    assert result.p_value == pytest.approx(stats.binomial_tail(satisfied, small.params.r), rel=1e-12)
    count = stats.binomial_threshold(small.params.r, 1e-3)
    assert result.threshold == pytest.approx((count - small.params.r / 2) / (np.sqrt(small.params.r) / 2))


def test_saddlepoint_tail_matches_the_exact_null_far_into_the_tail() -> None:
    """Integer weights make the exact null computable: 400 two-point convolutions."""
    rng = np.random.default_rng(11)
    weights = rng.integers(1, 31, 400)
    pmf = np.zeros(weights.sum() + 1)
    pmf[0] = 1.0
    for w in weights:
        pmf[w:] = 0.5 * (pmf[w:] + pmf[:-w].copy())
        pmf[:w] *= 0.5
    tail = np.cumsum(pmf[::-1])[::-1]  # tail[s] = P[S >= s]
    for level in (1e-3, 1e-6, 1e-9, 1e-12):
        s = int(np.argmax(tail <= level))
        approx = float(prc._weighted_tail(np.array(float(s)), weights.astype(float)))
        assert approx == pytest.approx(tail[s], rel=0.05)


def test_calibrated_fpr_is_nominal_and_hoeffding_is_conservative(small: prc.PRCKey) -> None:
    rng = np.random.default_rng(12)
    n = small.params.n
    hard = np.where(rng.random((N_NULL, n)) < 0.5, -1.0, 1.0)
    soft = prc.latent_to_posterior(rng.standard_normal((N_NULL, n)))
    for batch in (hard, soft):
        calibrated = int(np.count_nonzero(prc.p_values(small, batch) <= FPR))
        hoeffding = int(np.count_nonzero(prc.p_values(small, batch, test="hoeffding") <= FPR))
        assert BAND[0] <= calibrated <= BAND[1], (calibrated, BAND)
        assert hoeffding < BAND[0], (hoeffding, BAND)  # a bound: well below nominal


def test_threshold_and_p_value_agree(big: prc.PRCKey) -> None:
    rng = np.random.default_rng(13)
    fpr = 1e-6
    decisions = []
    for noise in np.linspace(1.2, 2.4, 12):  # soft posteriors from strong to weak signal
        latent = prc.codeword_to_latent(prc.encode(big, None, rng), rng)
        posteriors = prc.latent_to_posterior(latent + rng.normal(0.0, noise, latent.shape))
        for test in prc.TESTS:
            result = prc.detect(big, posteriors, fpr=fpr, test=test)
            assert result.detected == (result.score >= result.threshold)
            decisions.append(result.detected)
    assert any(decisions) and not all(decisions)  # the sweep crosses the threshold


def test_detection_result_is_complete_and_serialisable(small: prc.PRCKey, key: WatermarkKey) -> None:
    rng = np.random.default_rng(14)
    result = prc.detect(small, flip(prc.encode(small, None, rng), 0.1, rng))
    data = json.loads(result.to_json())
    assert data["scheme"] == "prc" and data["key_id"] == key.key_id and data["fpr"] == small.params.fpr
    assert data["details"]["p_value_hoeffding"] >= data["details"]["p_value_calibrated"]
    with pytest.raises(ValueError, match="test must be"):
        prc.p_values(small, np.ones(small.params.n), test="bonferroni")
    with pytest.raises(ValueError, match="last dimension"):
        prc.detect(small, np.ones(small.params.n + 1))
