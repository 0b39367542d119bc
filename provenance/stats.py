"""Hypothesis tests, thresholds and multiple-testing corrections shared by every detector.

Why one module: every scheme reports a p-value under a stated null hypothesis and a
threshold at a requested false-positive rate (FPR). Keeping the arithmetic here means
each null is written down once, tested once against scipy, and computed the same
numerically stable way everywhere (survival functions, never ``1 - cdf``).

Conventions: scalar inputs give Python ``float`` (or ``int``) results, array inputs give
``numpy`` arrays; every ``fpr`` must lie strictly between 0 and 1; p-values that are
smaller than the smallest positive double underflow to ``0.0`` (they are then below any
FPR anyone can ask for).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import fft as scipy_fft
from scipy import stats

FISHER_P_FLOOR = 1e-300
"""Smallest p-value Fisher's method takes the log of, so an exact 0 does not give ``-inf``."""


def _out(values: ArrayLike) -> float | np.ndarray:
    """Python float for a 0-d result, float array otherwise (keeps results JSON-friendly)."""
    array = np.asarray(values, dtype=float)
    return float(array) if array.ndim == 0 else array


def check_fpr(fpr: float) -> float:
    """Reject FPRs outside (0, 1): 0 needs an infinite threshold and 1 needs none."""
    fpr = float(fpr)
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie strictly between 0 and 1, got {fpr}")
    return fpr


def _check_p_values(p_values: ArrayLike) -> np.ndarray:
    """A non-empty float array of p-values, each in [0, 1]."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        raise ValueError("at least one p-value is required")
    if np.any(np.isnan(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    return p


def z_to_p(z: ArrayLike) -> float | np.ndarray:
    """One-sided upper-tail p-value of a z-score.

    H0: ``z`` is a draw from the standard normal distribution N(0, 1).
    Uses ``norm.sf`` (erfc-based), which keeps full relative precision far into the tail
    where ``1 - cdf`` would round to 0.
    """
    return _out(stats.norm.sf(z))


def z_test(successes: ArrayLike, trials: ArrayLike, p0: float) -> tuple[float | np.ndarray, float | np.ndarray]:
    """One-sided (upper) one-proportion z-test; returns ``(z, p_value)``.

    H0: each of the ``trials`` trials succeeds independently with probability ``p0``,
    so ``successes ~ Bin(trials, p0)``, approximated by its normal limit. Watermark
    detectors count "green" hits this way; the normal approximation is what the
    published schemes report, use :func:`binomial_tail` for the exact tail.
    ``trials == 0`` carries no evidence and gives ``(0.0, 1.0)``.
    """
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 must lie strictly between 0 and 1, got {p0}")
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    if np.any(trials < 0) or np.any(successes < 0) or np.any(successes > trials):
        raise ValueError("need 0 <= successes <= trials")
    safe_trials = np.where(trials > 0, trials, 1.0)
    z = np.where(trials > 0, (successes - safe_trials * p0) / np.sqrt(safe_trials * p0 * (1.0 - p0)), 0.0)
    p_value = np.where(trials > 0, stats.norm.sf(z), 1.0)
    return _out(z), _out(p_value)


def normal_threshold(fpr: float) -> float:
    """The z-score whose upper tail is exactly ``fpr``: reject H0 when ``z >= threshold``.

    H0: the z-score is standard normal (the null of :func:`z_to_p`).
    """
    return float(stats.norm.isf(check_fpr(fpr)))


def binomial_tail(k: ArrayLike, n: ArrayLike, p0: float = 0.5) -> float | np.ndarray:
    """Exact ``P[X >= k]`` for ``X ~ Bin(n, p0)``.

    H0: ``n`` independent trials each succeed with probability ``p0`` (e.g. each
    extracted watermark bit matches the key bit with probability 1/2).
    Computed as ``binom.sf(k - 1)`` (regularised incomplete beta), accurate in the far tail.
    """
    return _out(stats.binom.sf(np.asarray(k) - 1, n, p0))


def binomial_threshold(n: int, fpr: float, p0: float = 0.5) -> int:
    """Smallest ``k`` with ``P[X >= k] <= fpr`` for ``X ~ Bin(n, p0)``; reject H0 when ``X >= k``.

    H0: as in :func:`binomial_tail`. Exact (no normal approximation): this is the rule of
    Gaussian Shading, "the smallest i whose tail is at most the FPR". Because the binomial
    is discrete the attained FPR is usually strictly below ``fpr``. Returns ``n + 1`` (never
    reject) when even ``P[X = n]`` exceeds ``fpr``.
    """
    fpr = check_fpr(fpr)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    tails = stats.binom.sf(np.arange(-1, n + 1), n, p0)  # tails[k] = P[X >= k], k = 0..n+1
    return int(np.argmax(tails <= fpr))


def hoeffding_p_value(mean_excess: ArrayLike, n: int, value_range: float = 1.0) -> float | np.ndarray:
    """Hoeffding upper bound on ``P[mean - E >= t]`` for ``t = mean_excess``.

    H0: the ``n`` scores are independent, each lies in an interval of width
    ``value_range``, and they share the mean ``E``. Then
    ``P[mean - E >= t] <= exp(-2 n t^2 / value_range^2)``. Used where the score
    distribution is unknown but bounded: the bound is valid, but conservative.
    Returns ``min(1, bound)``, and 1 for ``t <= 0`` (no excess, no evidence).
    """
    if n <= 0 or value_range <= 0:
        raise ValueError("n and value_range must be positive")
    t = np.asarray(mean_excess, dtype=float)
    bound = np.exp(-2.0 * n * np.square(np.maximum(t, 0.0)) / value_range**2)
    return _out(np.where(t > 0, np.minimum(1.0, bound), 1.0))


def hoeffding_threshold(n: int, fpr: float, value_range: float = 1.0) -> float:
    """The excess ``t`` with ``exp(-2 n t^2 / value_range^2) = fpr``: reject H0 when ``mean - E >= t``.

    H0: as in :func:`hoeffding_p_value`; the attained FPR is at most ``fpr``.
    """
    fpr = check_fpr(fpr)
    if n <= 0 or value_range <= 0:
        raise ValueError("n and value_range must be positive")
    return value_range * math.sqrt(math.log(1.0 / fpr) / (2.0 * n))


def cosine_tail(cosine: ArrayLike, dim: int) -> float | np.ndarray:
    """P(u . e >= cosine) for u uniform on the unit sphere of R^dim and a fixed unit vector e.

    The null of matched filters against a keyed Gaussian pattern: given the observation, a
    pattern drawn independently of it points in a uniform direction, so its cosine with the
    observation has this law exactly, whatever the observation looks like.
    """
    values = np.clip(np.asarray(cosine, dtype=float), -1.0, 1.0)
    half = (dim - 1) / 2.0
    return _out(stats.beta.sf((1.0 + values) / 2.0, half, half))


def cosine_threshold(fpr: float, dim: int) -> float:
    """The cosine above which :func:`cosine_tail` is below ``fpr``."""
    half = (dim - 1) / 2.0
    return float(2.0 * stats.beta.isf(check_fpr(fpr), half, half) - 1.0)


def empirical_p_value(
    observed: ArrayLike, null_samples: ArrayLike, larger_is_extreme: bool = True
) -> float | np.ndarray:
    """``(1 + #{null >= observed}) / (N + 1)``, or with ``<=`` when smaller is extreme.

    H0: the observed score and the ``N`` null scores (e.g. scores under other keys, or
    of permuted data) are exchangeable. Under H0 the observed score's rank among all
    ``N + 1`` is uniform, so the "+1" makes ``P[p <= a] <= a`` hold exactly for every
    ``a``; without it a score beyond every null sample would get the impossible p = 0.
    This covers permutation tests too. ``observed`` may be an array (one p-value each),
    compared against one null sample by binary search on the sorted null.
    """
    null = np.sort(np.asarray(null_samples, dtype=float).ravel())
    if null.size == 0:
        raise ValueError("at least one null sample is required")
    obs = np.asarray(observed, dtype=float)
    if larger_is_extreme:
        count = null.size - np.searchsorted(null, obs, side="left")
    else:
        count = np.searchsorted(null, obs, side="right")
    return _out((1.0 + count) / (null.size + 1.0))


def threshold_for_fpr(null_samples: ArrayLike, fpr: float, larger_is_extreme: bool = True) -> float:
    """Empirical threshold for a target FPR; the comparison is STRICT on both sides.

    With ``larger_is_extreme`` reject H0 when ``score > threshold`` (a score equal to the
    threshold is not rejected); otherwise reject when ``score < threshold``. For every
    rejected score :func:`empirical_p_value` is ``<= fpr``, ties included.

    H0: as in :func:`empirical_p_value` (score exchangeable with the null samples), so
    the attained FPR is at most ``fpr``. The threshold is the ``(m + 1)``-th most extreme
    null sample, with ``m`` the largest count such that ``(1 + m) / (N + 1) <= fpr``;
    that needs ``N >= 1/fpr - 1`` null samples, and fewer raise ``ValueError``.
    """
    fpr = check_fpr(fpr)
    null = np.sort(np.asarray(null_samples, dtype=float).ravel())
    size = null.size
    m = math.floor(fpr * (size + 1)) - 1
    if m >= 0 and (1.0 + m) / (size + 1.0) > fpr:  # guard the float product above
        m -= 1
    if m < 0:
        raise ValueError(
            f"{size} null samples cannot certify fpr={fpr}: need at least {math.ceil(1.0 / fpr) - 1}"
        )
    return float(null[size - 1 - m] if larger_is_extreme else null[m])


def bonferroni(p_values: ArrayLike) -> np.ndarray:
    """Bonferroni-adjusted p-values ``min(1, m * p)``.

    H0 (per hypothesis, e.g. "not watermarked with key i"): the adjusted p-values control
    the family-wise error rate over all ``m`` hypotheses under any dependence, so
    testing many keys at FPR ``a`` each does not give ``m * a`` false alarms.
    """
    p = _check_p_values(p_values)
    return np.minimum(1.0, p * p.size)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values (uniformly more powerful than Bonferroni).

    H0 (per hypothesis): as in :func:`bonferroni`; family-wise error rate is controlled
    under any dependence. Sorted ascending, the ``i``-th (0-based) p-value is scaled by
    ``m - i``; a running maximum keeps the adjusted values monotone in the raw ones.
    """
    p = _check_p_values(p_values)
    flat = p.ravel()
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * (flat.size - np.arange(flat.size))
    adjusted = np.empty_like(flat)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.reshape(p.shape)


def fisher_combine(p_values: ArrayLike) -> float | np.ndarray:
    """Fisher's combined p-value: ``-2 sum log p`` against chi-square with ``2k`` dof.

    H0: all ``k`` p-values come from true, independent nulls (so each is uniform on
    [0, 1]). Combines evidence from independent pieces (e.g. image tiles, text chunks).
    p-values are clipped to at least ``FISHER_P_FLOOR`` so an exact 0 stays finite.
    Combines along the last axis, so a 2-d array gives one p-value per row.
    """
    p = _check_p_values(p_values)
    statistic = -2.0 * np.sum(np.log(np.maximum(p, FISHER_P_FLOOR)), axis=-1)
    return _out(stats.chi2.sf(statistic, 2 * p.shape[-1]))


@lru_cache(maxsize=4096)
def collision_tail(total: int, cells: int, collisions: int) -> float:
    """Exact ``P[K >= collisions]`` for ``K = sum_i C(n_i, 2)``, ``n ~ Multinomial(total, 1/cells)``.

    Pearson's statistic is ``X^2 = cells (2 K + total) / total - total``, so this is its
    exact upper tail. Poissonisation: with the ``n_i`` independent Poisson(total/cells),
    the multinomial is their law given ``sum n_i = total``, so a dynamic programme over
    cells with state (tokens so far ``m``, collisions so far ``k``) gives
    ``P[K >= collisions, N = total] / P[N = total]``. ``k`` only grows, so every state at
    or beyond ``collisions`` is merged into one absorbing column. Cost
    ``O(cells * total * collisions * sqrt(collisions))``: ~0.1-0.5 s at 150-250 tokens.
    """
    if collisions <= 0:
        return 1.0
    n_values = np.arange(total + 1)
    weight = stats.poisson.pmf(n_values, total / cells)
    pairs = n_values * (n_values - 1) // 2
    stay = int(np.searchsorted(pairs, collisions))  # counts n < stay keep k below the target
    jump_weight = np.where(n_values >= stay, weight, 0.0)
    below = np.zeros((total + 1, collisions))  # below[m, k]
    below[0, 0] = 1.0
    above = np.zeros(total + 1)  # above[m]: mass with k >= collisions
    for _ in range(cells):
        suffix = np.cumsum(below[:, ::-1], axis=1)[:, ::-1]  # suffix[m, k] = sum_{k' >= k} below[m, k']
        new_above = np.convolve(above, weight)[: total + 1] + np.convolve(suffix[:, 0], jump_weight)[: total + 1]
        new_below = np.zeros_like(below)
        for n in range(min(stay, total + 1)):
            q = int(pairs[n])
            new_below[n:, q:] += weight[n] * below[: total + 1 - n, : collisions - q]
            if q > 0:
                new_above[n:] += weight[n] * suffix[: total + 1 - n, collisions - q]
        below, above = new_below, new_above
    return float(min(1.0, above[total] / stats.poisson.pmf(total, total)))


def lattice_sum_tail(pmf: ArrayLike, count: int, observed: int) -> float:
    """``P[X_1 + ... + X_count >= observed]`` for i.i.d. ``X`` with ``P[X = k] = pmf[k]``, k = 0..K.

    H0: the per-item scores are independent draws from a known law on the integers 0..K (e.g.
    a text's g-value sums under "the hash is a random oracle"). Exact up to floating point, also
    deep in the tail: the sum's law is convolved (FFT) under the exponentially tilted law whose
    mean is ``observed / count``, where the mass sits near ``observed`` and FFT rounding is
    negligible, then tilted back, ``P[S = j] = Q[S = j] exp(count kappa(theta) - theta j)``.
    """
    weights = np.asarray(pmf, dtype=float)
    if weights.ndim != 1 or weights.size == 0 or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError("pmf must be a non-empty 1-D probability vector")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    values = np.arange(weights.size)
    support = values[weights > 0]
    if observed <= count * int(support.min()):
        return 1.0
    if observed > count * int(support.max()):
        return 0.0
    log_weights = np.where(weights > 0, np.log(np.where(weights > 0, weights, 1.0)), -np.inf)

    def tilted(theta: float) -> tuple[np.ndarray, float]:
        """The law tilted by ``theta`` and its log normaliser ``kappa(theta)``."""
        logs = log_weights + theta * values
        top = logs.max()
        kappa = float(top + np.log(np.exp(logs - top).sum()))
        return np.exp(logs - kappa), kappa

    target = observed / count
    low, high = 0.0, 1.0
    while tilted(high)[0] @ values < target and high < 1e6:
        low, high = high, 2.0 * high
    for _ in range(100):  # bisection: the tilted mean rises with theta
        middle = 0.5 * (low + high)
        low, high = (middle, high) if tilted(middle)[0] @ values < target else (low, middle)
    theta = low
    law, kappa = tilted(theta)
    size = count * (weights.size - 1) + 1
    length = scipy_fft.next_fast_len(size, real=True)  # any length >= size keeps the convolution from wrapping
    total_law = np.clip(np.fft.irfft(np.fft.rfft(law, n=length) ** count, n=length)[:size], 0.0, None)
    tail = np.arange(observed, size)
    terms = total_law[observed:]
    keep = terms > 0
    if not keep.any():
        return 0.0
    logs = np.log(terms[keep]) + count * kappa - theta * tail[keep]
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))
