"""Tests for provenance.stats: exact values against scipy, and empirical FPR calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from provenance import stats

N_NULL = 10_000
FPR = 0.01
# Three binomial standard deviations of an empirical FPR measured on N_NULL draws.
TOLERANCE = 3.0 * math.sqrt(FPR * (1.0 - FPR) / N_NULL)


# -- exact values --------------------------------------------------------------------


def test_z_test_matches_hand_computed_z_and_normal_tail() -> None:
    z, p = stats.z_test(60, 100, 0.5)
    assert z == pytest.approx(2.0)
    assert p == pytest.approx(sps.norm.sf(2.0), rel=1e-12)
    assert isinstance(z, float) and isinstance(p, float)

    z, p = stats.z_test(40, 160, 0.25)  # green-list style gamma = 0.25
    expected_z = (40 - 160 * 0.25) / math.sqrt(160 * 0.25 * 0.75)
    assert z == pytest.approx(expected_z, abs=1e-12)
    assert p == pytest.approx(0.5)


def test_z_test_without_trials_is_no_evidence() -> None:
    assert stats.z_test(0, 0, 0.5) == (0.0, 1.0)


def test_z_test_is_vectorised() -> None:
    z, p = stats.z_test(np.array([60, 0]), np.array([100, 0]), 0.5)
    np.testing.assert_allclose(z, [2.0, 0.0])
    np.testing.assert_allclose(p, [sps.norm.sf(2.0), 1.0])


def test_z_to_p_keeps_precision_in_far_tail() -> None:
    assert stats.z_to_p(1.6448536269514722) == pytest.approx(0.05, rel=1e-12)
    assert stats.z_to_p(30.0) == pytest.approx(sps.norm.sf(30.0), rel=1e-12)
    assert 0.0 < stats.z_to_p(30.0) < 1e-190


def test_binomial_tail_matches_scipy_and_hand_sum() -> None:
    n, p0 = 10, 0.3
    for k in range(n + 2):
        hand = sum(math.comb(n, i) * p0**i * (1 - p0) ** (n - i) for i in range(k, n + 1))
        assert stats.binomial_tail(k, n, p0) == pytest.approx(hand, rel=1e-12, abs=1e-300)
    assert stats.binomial_tail(200, 256) == pytest.approx(sps.binom.sf(199, 256, 0.5), rel=1e-12)
    assert stats.binomial_tail(0, 5) == 1.0


def test_binomial_threshold_is_smallest_k_within_fpr() -> None:
    for n, fpr, p0 in [(256, 1e-2, 0.5), (256, 1e-6, 0.5), (1000, 1e-9, 0.5), (50, 0.05, 0.25)]:
        k = stats.binomial_threshold(n, fpr, p0)
        assert isinstance(k, int)
        assert stats.binomial_tail(k, n, p0) <= fpr
        assert stats.binomial_tail(k - 1, n, p0) > fpr


def test_binomial_threshold_never_rejects_when_fpr_unreachable() -> None:
    assert stats.binomial_threshold(3, 0.01) == 4  # P[X = 3] = 1/8 > 0.01


def test_hoeffding_p_value_formula() -> None:
    assert stats.hoeffding_p_value(0.1, 100) == pytest.approx(math.exp(-2 * 100 * 0.01))
    assert stats.hoeffding_p_value(0.2, 50, value_range=2.0) == pytest.approx(math.exp(-2 * 50 * 0.04 / 4))
    assert stats.hoeffding_p_value(0.0, 100) == 1.0
    assert stats.hoeffding_p_value(-0.3, 100) == 1.0
    np.testing.assert_allclose(stats.hoeffding_p_value(np.array([-1.0, 0.1]), 100), [1.0, math.exp(-2.0)])


def test_hoeffding_threshold_inverts_the_bound() -> None:
    t = stats.hoeffding_threshold(64, 1e-3, value_range=2.0)
    assert stats.hoeffding_p_value(t, 64, value_range=2.0) == pytest.approx(1e-3)


def test_normal_threshold_inverts_normal_tail() -> None:
    assert stats.z_to_p(stats.normal_threshold(1e-6)) == pytest.approx(1e-6, rel=1e-10)


def test_empirical_p_value_counts_ties_as_extreme() -> None:
    null = np.array([1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(stats.empirical_p_value(np.array([0.0, 2.0, 2.5, 9.0]), null), [1.0, 0.8, 0.4, 0.2])
    np.testing.assert_allclose(
        stats.empirical_p_value(np.array([0.0, 2.0, 2.5, 9.0]), null, larger_is_extreme=False), [0.2, 0.8, 0.8, 1.0]
    )


def test_empirical_p_value_plus_one_correction() -> None:
    null = np.arange(999.0)
    assert stats.empirical_p_value(1e9, null) == 1.0 / 1000.0
    assert stats.empirical_p_value(-1e9, null, larger_is_extreme=False) == 1.0 / 1000.0


def test_bonferroni_and_holm_on_fixed_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(stats.bonferroni(p), [0.04, 0.16, 0.12, 0.02])
    # Sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> running max enforces 0.06 for the last.
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.bonferroni([0.5, 0.9]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 * 2 capped at 1
    np.testing.assert_allclose(stats.holm([0.3, 0.9]), [0.6, 0.9])


def test_fisher_matches_scipy_and_survives_zero() -> None:
    p = [0.01, 0.2, 0.5, 0.03]
    assert stats.fisher_combine(p) == pytest.approx(sps.combine_pvalues(p, method="fisher").pvalue, rel=1e-12)
    assert stats.fisher_combine([0.3]) == pytest.approx(0.3)
    zero = stats.fisher_combine([0.0, 0.5])
    assert 0.0 <= zero < 1e-290 and math.isfinite(zero)
    np.testing.assert_allclose(stats.fisher_combine(np.array([[0.3, 1.0], [0.3, 1.0]])), 2 * [0.3 * (1 - math.log(0.3))])


@pytest.mark.parametrize("bad", [[], [0.5, 1.5], [-0.1], [float("nan")]])
def test_p_value_inputs_are_validated(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        stats.holm(bad)


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.5, 2.0])
def test_fpr_must_be_a_probability(fpr: float) -> None:
    with pytest.raises(ValueError):
        stats.normal_threshold(fpr)


# -- empirical calibration on simulated nulls ----------------------------------------


def test_normal_threshold_fpr_on_simulated_nulls() -> None:
    z = np.random.default_rng(1).standard_normal(N_NULL)
    observed = np.mean(z >= stats.normal_threshold(FPR))
    assert abs(observed - FPR) <= TOLERANCE


def test_binomial_threshold_fpr_on_simulated_nulls() -> None:
    draws = np.random.default_rng(2).binomial(256, 0.5, N_NULL)
    observed = np.mean(draws >= stats.binomial_threshold(256, FPR))
    assert observed <= FPR + TOLERANCE


def test_z_test_fpr_on_simulated_nulls() -> None:
    draws = np.random.default_rng(3).binomial(400, 0.25, N_NULL)
    _, p = stats.z_test(draws, 400, 0.25)
    assert abs(np.mean(p <= FPR) - FPR) <= TOLERANCE + 0.005  # normal approximation slack


def test_hoeffding_threshold_fpr_on_simulated_nulls() -> None:
    n = 64
    means = np.random.default_rng(4).random((N_NULL, n)).mean(axis=1)
    excess = means - 0.5
    assert np.mean(excess >= stats.hoeffding_threshold(n, FPR)) <= FPR + TOLERANCE
    assert np.mean(stats.hoeffding_p_value(excess, n) <= FPR) <= FPR + TOLERANCE


@pytest.mark.parametrize("larger_is_extreme", [True, False])
def test_empirical_p_values_are_calibrated(larger_is_extreme: bool) -> None:
    rng = np.random.default_rng(5)
    null, fresh = rng.standard_normal(N_NULL), rng.standard_normal(N_NULL)
    p = stats.empirical_p_value(fresh, null, larger_is_extreme)
    assert abs(np.mean(p <= FPR) - FPR) <= TOLERANCE


@pytest.mark.parametrize("larger_is_extreme", [True, False])
def test_threshold_for_fpr_is_calibrated_and_consistent(larger_is_extreme: bool) -> None:
    rng = np.random.default_rng(6)
    null, fresh = rng.standard_normal(N_NULL), rng.standard_normal(N_NULL)
    threshold = stats.threshold_for_fpr(null, FPR, larger_is_extreme)
    rejected = fresh > threshold if larger_is_extreme else fresh < threshold
    assert abs(np.mean(rejected) - FPR) <= TOLERANCE
    # Every rejected score has an empirical p-value within the FPR; the threshold itself does not.
    assert np.all(stats.empirical_p_value(fresh[rejected], null, larger_is_extreme) <= FPR)
    assert stats.empirical_p_value(threshold, null, larger_is_extreme) > FPR


def test_threshold_for_fpr_strict_side_with_ties() -> None:
    null = np.array([0.0] * 95 + [5.0] * 4)  # N = 99, fpr 0.05 -> at most 4 nulls may be >= a rejected score
    threshold = stats.threshold_for_fpr(null, 0.05)
    assert threshold == 0.0
    assert stats.empirical_p_value(np.nextafter(threshold, 1.0), null) <= 0.05


def test_threshold_for_fpr_needs_enough_null_samples() -> None:
    with pytest.raises(ValueError, match="null samples"):
        stats.threshold_for_fpr(np.arange(98.0), 0.01)
    assert stats.threshold_for_fpr(np.arange(99.0), 0.01) == 98.0
