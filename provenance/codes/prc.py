"""Pseudorandom LDPC code (PRC) of Gunn, Zhao and Song, "An undetectable watermark for generative image models".

Why a pseudorandom code: the image watermark puts one codeword bit into the sign of each
initial-latent entry. Without the key a codeword is indistinguishable from uniform bits,
so the watermarked latent is distributed like N(0, I) and costs no quality; with the key,
``r`` sparse parity checks (each over ``t`` bits) reveal it, and belief propagation plus a
GF(2) solve recover a payload.

Conventions:
- Bits are uint8 0/1; a codeword is returned as int8 signs ``(-1) ** bit`` (+1 for bit 0),
  the sign of the latent entry that carries it.
- *Posteriors* are soft sign estimates ``E[sign | observation]`` in [-1, 1] (+1: surely
  bit 0); hard signs are posteriors too. :func:`latent_to_posterior` makes them from
  inverted latents.
- Key material is drawn only from ``WatermarkKey.generator("prc", ...)``: the same key and
  parameters always give the same code. Encoding noise comes from the ``rng`` the caller
  passes (derive it from the key and a nonce to make embedding reproducible too).
- Generator rows are bit-packed little-endian into uint64 words (column ``c`` is bit
  ``c % 64`` of word ``c // 64``), so encoding is a popcount and GF(2) elimination XORs 64
  columns per machine word.

Detection (zero-bit). Each parity check ``j`` has a soft product ``Pi_j`` of the de-padded
posteriors over its support: it is satisfied when ``Pi_j > 0`` and weighs
``w_j = log((1 + |Pi_j|) / (1 - |Pi_j|))``, its log-likelihood ratio. The statistic is
``S = sum_j w_j [Pi_j > 0]`` (the reference's ``sum log((1 + Pi_j) / 2)`` up to a constant).
H0: the signs are i.i.d. fair coins independent of their magnitudes (true for N(0, I)
latents and for uniform random bits). ``H`` has full row rank (its staircase gives each
check a private column), so the syndrome of uniform bits is uniform: given the weights,
the ``r`` satisfied-indicators are *exactly* i.i.d. Bernoulli(1/2). Two tests use this:
- ``"calibrated"``: the tail of that exact null; the exact binomial tail when all non-zero
  weights are equal (hard decisions), the Lugannani-Rice saddlepoint approximation of the
  weighted sum otherwise (relative error O(1/r) far into the tail).
- ``"hoeffding"``: the reference's guaranteed bound ``exp(-2 t^2 / sum w_j^2)``. Valid but
  about 10x conservative at fpr 1e-2, so it loses power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from scipy import sparse
from scipy import special
from scipy import stats as sps

from provenance import stats
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

SCHEME = "prc"
TESTS = ("calibrated", "hoeffding")
MAX_LLR = 30.0
"""Clip for log-likelihood ratios: beyond it the bit is certain in float64 anyway, and
hard +-1 inputs with a zero noise rate would otherwise give infinities."""
DEFAULT_BP_ITERATIONS = 64
"""Cap on belief-propagation iterations (the stall rule usually stops far earlier)."""
BP_PATIENCE = 5
"""Belief-propagation iterations without a new low in unsatisfied checks before it stops."""
_NEWTON_STEPS = 60
"""Cap on Newton steps for the saddlepoint; stopping short errs conservative (theta below the root)."""
_NORMAL_ZONE = 1e-2
"""|z| below which the saddlepoint formula cancels catastrophically; the normal tail is exact there to O(1/r)."""


class PRCDecodeError(ValueError):
    """The posteriors do not decode to a payload under this key (too noisy, or not watermarked)."""


# -- parameters and keys --------------------------------------------------------------


@dataclass(frozen=True)
class PRCParams:
    """Sizes of a PRC code (see :meth:`for_length` for the reference's derivation).

    ``k = test_bits + g + message_bits`` is the dimension of the code: a codeword carries
    the key's test bits (checked at decoding), ``g`` fresh random bits (so two encodings of
    one message differ) and the message.
    """

    n: int
    message_bits: int
    t: int
    g: int
    test_bits: int
    r: int
    noise_rate: float
    fpr: float
    bp_iterations: int

    def __post_init__(self) -> None:
        if self.t < 2:
            raise ValueError(f"parity checks need t >= 2 bits, got t={self.t}")
        if self.message_bits < 0 or self.g < 0 or self.test_bits < 1:
            raise ValueError("message_bits and g must be non-negative and test_bits positive")
        if self.r < 1:
            raise ValueError(f"n={self.n} leaves no parity checks (r={self.r}): lower message_bits or fpr, or raise n")
        if self.n - self.r < max(self.k, self.t - 1):
            raise ValueError(
                f"n - r = {self.n - self.r} free rows cannot carry k = {self.k} code dimensions; "
                "lower r or message_bits"
            )
        if not 0.0 <= self.noise_rate < 0.5:
            raise ValueError(f"noise_rate must lie in [0, 0.5), got {self.noise_rate}")
        stats.check_fpr(self.fpr)
        if self.bp_iterations < 1:
            raise ValueError(f"bp_iterations must be positive, got {self.bp_iterations}")

    @classmethod
    def for_length(
        cls,
        n: int,
        message_bits: int = 512,
        fpr: float = 1e-9,
        t: int = 3,
        g: int | None = None,
        r: int | None = None,
        noise_rate: float | None = None,
        bp_iterations: int | None = None,
    ) -> PRCParams:
        """The reference KeyGen's sizes for codeword length ``n``.

        ``secpar = floor(log2 C(n, t))`` bits of security from the sparse checks;
        ``g = secpar``; ``noise_rate = 1 - 2 ** (-secpar / g^2)`` (about 0.018 at n = 16384);
        ``test_bits = ceil(log2(1/fpr))`` so a wrong key or noise passes the decoder's check
        with probability at most ``fpr``; and ``r = n - k - secpar`` checks, as many as
        pseudorandomness allows (more checks, more detection power).

        Belief propagation may run up to ``DEFAULT_BP_ITERATIONS`` iterations, not the
        reference's ``floor(ln n / ln t)`` (8 at n = 16384): on this graph BP keeps
        correcting long after that, and at n = 16384 the longer run decodes flip rates of
        0.30-0.33 that 8 iterations miss. A stall rule (see :func:`belief_propagation`)
        ends it far sooner when it has converged or cannot.
        """
        if n < 2 or t < 2 or t > n:
            raise ValueError(f"need 2 <= t <= n, got n={n}, t={t}")
        secpar = math.comb(n, t).bit_length() - 1
        g = secpar if g is None else g
        test_bits = math.ceil(math.log2(1.0 / stats.check_fpr(fpr)))
        k = test_bits + g + message_bits
        return cls(
            n=n,
            message_bits=message_bits,
            t=t,
            g=g,
            test_bits=test_bits,
            r=n - k - secpar if r is None else r,
            noise_rate=1.0 - 2.0 ** (-secpar / g**2) if noise_rate is None else noise_rate,
            fpr=fpr,
            bp_iterations=DEFAULT_BP_ITERATIONS if bp_iterations is None else bp_iterations,
        )

    @property
    def k(self) -> int:
        return self.test_bits + self.g + self.message_bits


@dataclass(frozen=True, eq=False)
class PRCKey:
    """Key material of one PRC code; arrays are read-only.

    ``generator``: (n, ceil(k/64)) uint64, bit-packed rows of the generator matrix G.
    ``parity_check``: (r, n) CSR matrix H with ``t`` ones per row and ``H G = 0`` over GF(2).
    ``supports``: (r, t) sorted column indices of each check (the CSR's indices, reshaped).
    ``one_time_pad``: (n,) bits added to every codeword; ``test_bits``: (test_bits,) bits
    every payload starts with; ``permutation``: the (n,) shuffle applied to the staircase
    code, kept so the structure can be audited. ``key_id`` names the WatermarkKey.
    """

    params: PRCParams
    generator: np.ndarray
    parity_check: sparse.csr_matrix
    supports: np.ndarray
    one_time_pad: np.ndarray
    test_bits: np.ndarray
    permutation: np.ndarray
    key_id: str


@dataclass(frozen=True)
class PRCDecodeResult:
    """A recovered message and how sure we are of it.

    ``bit_confidence[i]`` is ``|2 P(bit i correct) - 1|`` from the piling-up lemma over the
    codeword bits that bit ``i`` was solved from (1: certain). ``unsatisfied_checks`` counts
    the parity checks belief propagation left unsatisfied (0: it reached a codeword of H).
    """

    payload_bits: np.ndarray
    bit_confidence: np.ndarray
    bp_iterations: int
    unsatisfied_checks: int


def _words(bits: int) -> int:
    return -(-bits // 64)


def _pack(bits: np.ndarray) -> np.ndarray:
    """(..., c) 0/1 array -> (..., ceil(c/64)) little-endian uint64 words."""
    packed = np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little")
    pad = 8 * _words(bits.shape[-1]) - packed.shape[-1]
    packed = np.pad(packed, [(0, 0)] * (packed.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(packed).view("<u8")


def _unpack(words: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`_pack`: the first ``count`` bits of each row, as uint8."""
    as_bytes = np.ascontiguousarray(words).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, count=count, bitorder="little")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _draw_supports(rng: np.random.Generator, n: int, r: int, t: int) -> np.ndarray:
    """Staircase supports: row ``j`` is ``t - 1`` distinct columns of ``[0, n - r + j)`` plus ``n - r + j``.

    All rows are drawn at once; draw ``s`` is uniform over ``limit - s`` values and then
    stepped past the ``s`` earlier picks (in increasing order), which makes every row a
    uniform ``(t - 1)``-subset, as the reference's per-row shuffle does.
    """
    own = np.arange(n - r, n, dtype=np.int64)
    chosen = np.empty((r, t - 1), dtype=np.int64)
    for s in range(t - 1):
        pick = rng.integers(0, own - s)
        earlier = np.sort(chosen[:, :s], axis=1)
        for column in range(s):
            pick += pick >= earlier[:, column]
        chosen[:, s] = pick
    return np.concatenate([chosen, own[:, None]], axis=1)


def _fill_parity_rows(generator: np.ndarray, parents: np.ndarray) -> None:
    """Set ``G[n - r + j] = XOR of G[parents[j]]`` in place, so every check holds: ``H G = 0``.

    A parity row may depend on earlier parity rows, so the rows form a DAG. Re-evaluating
    all of them at once until nothing changes settles one more DAG level per pass; the
    depth grows like log ``r`` (21 passes at n = 16384), where row by row takes ``r`` steps.
    """
    r = parents.shape[0]
    tail = generator[-r:]
    while True:
        update = np.bitwise_xor.reduce(generator[parents], axis=1)
        if np.array_equal(update, tail):
            return
        tail[...] = update


def generate_key(key: WatermarkKey, params: PRCParams) -> PRCKey:
    """Draw the PRC code for ``params`` from ``key``'s "prc" sub-key (reproducible, never OS entropy)."""
    n, k, r, t = params.n, params.k, params.r, params.t
    _, rng = key.generator(
        "prc", "keygen", n, params.message_bits, t, params.g, params.test_bits, r, params.noise_rate
    )
    generator = rng.integers(0, np.iinfo(np.uint64).max, size=(n, _words(k)), dtype=np.uint64, endpoint=True)
    generator[:, -1] &= np.uint64((1 << (k - 64 * (_words(k) - 1))) - 1)  # zero columns >= k
    staircase = _draw_supports(rng, n, r, t)
    _fill_parity_rows(generator, staircase[:, :-1])
    one_time_pad = rng.integers(0, 2, n, dtype=np.uint8)
    test_bits = rng.integers(0, 2, params.test_bits, dtype=np.uint8)
    permutation = rng.permutation(n)
    # New position c holds old row permutation[c], so old column o moves to inverse[o].
    inverse = np.empty(n, dtype=np.int64)
    inverse[permutation] = np.arange(n)
    supports = np.sort(inverse[staircase], axis=1).astype(np.int32)
    parity_check = sparse.csr_matrix(
        (np.ones(r * t, dtype=np.uint8), supports.ravel(), np.arange(0, r * t + 1, t)), shape=(r, n)
    )
    return PRCKey(
        params=params,
        generator=_readonly(generator[permutation]),
        parity_check=parity_check,
        supports=_readonly(supports),
        one_time_pad=_readonly(one_time_pad),
        test_bits=_readonly(test_bits),
        permutation=_readonly(permutation),
        key_id=key.key_id,
    )


# -- encoding and the latent channel -----------------------------------------------------


def encode(prc: PRCKey, payload_bits: ArrayLike | None, rng: np.random.Generator) -> np.ndarray:
    """A noisy codeword as int8 signs (+1 for bit 0), shape ``(n,)``.

    The code input is ``[test bits | g random bits | payload]``; with ``payload_bits=None``
    (zero-bit use) the payload is random too. Each bit is then flipped with probability
    ``noise_rate``, which the pseudorandomness proof needs and detection budgets for.
    ``payload_bits`` must be exactly ``message_bits`` bits: lengths are never padded.
    """
    p = prc.params
    if payload_bits is None:
        payload = rng.integers(0, 2, p.message_bits, dtype=np.uint8)
    else:
        payload = np.asarray(payload_bits)
        if payload.shape != (p.message_bits,) or not np.isin(payload, (0, 1)).all():
            raise ValueError(f"payload_bits must be a 1-d array of exactly {p.message_bits} bits (0/1)")
    message = np.concatenate([prc.test_bits, rng.integers(0, 2, p.g, dtype=np.uint8), payload.astype(np.uint8)])
    bits = np.bitwise_count(prc.generator & _pack(message)).sum(axis=1, dtype=np.int64) & 1
    noise = rng.random(p.n) < p.noise_rate
    return (1 - 2 * (bits.astype(np.uint8) ^ prc.one_time_pad ^ noise)).astype(np.int8)


def codeword_to_latent(signs: ArrayLike, rng: np.random.Generator) -> np.ndarray:
    """Pseudo-Gaussian latent ``sign * |N(0, 1)|``: exactly N(0, I) when the signs are uniform."""
    signs = np.asarray(signs)
    return signs * np.abs(rng.standard_normal(signs.shape))


def latent_to_posterior(latents: ArrayLike, noise_var: float = 1.5) -> np.ndarray:
    """Soft bits from an inverted latent: ``E[sign(z) | z']`` for ``z ~ N(0, 1)`` seen as ``z' = z + N(0, noise_var)``.

    The paper's ``erf(z' / sqrt(2 sigma^2 (1 + sigma^2)))`` with ``sigma^2 = noise_var``
    (1.5 in the reference, tuned for SD inversion error). Larger ``noise_var`` trusts the
    inverted latent less.
    """
    if noise_var <= 0:
        raise ValueError(f"noise_var must be positive, got {noise_var}")
    return special.erf(np.asarray(latents, dtype=float) / math.sqrt(2.0 * noise_var * (1.0 + noise_var)))


def _debiased(prc: PRCKey, posteriors: ArrayLike) -> np.ndarray:
    """Posteriors of the code bits: one-time pad removed, shrunk by the encoder's noise ``1 - 2 eta``."""
    s = np.asarray(posteriors, dtype=float)
    if s.shape[-1:] != (prc.params.n,):
        raise ValueError(f"posteriors must have last dimension n={prc.params.n}, got shape {s.shape}")
    if not np.all(np.abs(s) <= 1.0):
        raise ValueError("posteriors must be finite sign expectations in [-1, 1]")
    return s * ((1.0 - 2.0 * prc.params.noise_rate) * (1.0 - 2.0 * prc.one_time_pad.astype(float)))


# -- zero-bit detection -----------------------------------------------------------------


def _llr(expectation: np.ndarray) -> np.ndarray:
    """``log P(+) / P(-) = 2 atanh(E[sign])``, clipped to ``+-MAX_LLR``."""
    bound = math.tanh(MAX_LLR / 2.0)
    clipped = np.clip(expectation, -bound, bound)
    return np.log((1.0 + clipped) / (1.0 - clipped))


def _check_evidence(prc: PRCKey, posteriors: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per check: satisfied (``Pi_j > 0``) and its weight ``w_j = 2 atanh |Pi_j|``, each (..., r)."""
    product = np.prod(_debiased(prc, posteriors)[..., prc.supports], axis=-1)
    return product > 0, _llr(np.abs(product))


def _cgf(theta: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``K, K', K''`` of ``sum_j w_j B_j`` with ``B_j ~ Bernoulli(1/2)`` at ``theta`` (shape (..., 1))."""
    x = theta * weights
    k0 = np.sum(np.logaddexp(0.0, x) - math.log(2.0), axis=-1)
    sigma = special.expit(x)
    k1 = np.sum(weights * sigma, axis=-1)
    k2 = np.sum(weights**2 * sigma * (1.0 - sigma), axis=-1)
    return k0, k1, k2


def _saddlepoint_tail(theta: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(s, P[S >= s])`` at the saddlepoint ``theta`` (``s = K'(theta)``), by Lugannani-Rice.

    Near ``theta = 0`` the formula is 0/0 and the (symmetric) null is normal to O(1/r), so
    the normal tail is used there.
    """
    k0, s, k2 = _cgf(theta[..., None], weights)
    mean, sd = 0.5 * weights.sum(axis=-1), 0.5 * np.sqrt(np.sum(weights**2, axis=-1))
    z = (s - mean) / sd
    w_hat = np.sign(theta) * np.sqrt(np.maximum(2.0 * (theta * s - k0), 0.0))
    u_hat = theta * np.sqrt(k2)
    central = np.abs(z) < _NORMAL_ZONE
    safe_w, safe_u = np.where(central, 1.0, w_hat), np.where(central, 1.0, u_hat)
    tail = sps.norm.sf(safe_w) + sps.norm.pdf(safe_w) * (1.0 / safe_u - 1.0 / safe_w)
    return s, np.clip(np.where(central, sps.norm.sf(z), tail), 0.0, 1.0)


def _weighted_tail(observed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Saddlepoint ``P[S >= observed]`` for ``S = sum_j w_j B_j``; batched over leading axes.

    ``K'`` is concave for ``theta > 0`` and convex below, so Newton from 0 approaches the
    root monotonically. Observations at or beyond the support's ends are the boundary
    atoms ``2 ** -#(w > 0)`` and 1.
    """
    total = weights.sum(axis=-1)
    theta = np.zeros_like(observed)
    inside = (observed > 0) & (observed < total)
    for _ in range(_NEWTON_STEPS):
        _, k1, k2 = _cgf(theta[..., None], weights)
        step = np.where(inside, (observed - k1) / np.maximum(k2, 1e-300), 0.0)
        theta = theta + step
        if np.all(np.abs(step) <= 1e-12 * np.maximum(1.0, np.abs(theta))):
            break
    _, tail = _saddlepoint_tail(theta, weights)
    top = np.exp2(-np.count_nonzero(weights > 0, axis=-1).astype(float))
    return np.where(observed >= total, top, np.where(observed <= 0, 1.0, tail))


def _lattice(weights: np.ndarray) -> np.ndarray:
    """Whether all non-zero weights are equal (hard decisions): then the null is an exact binomial."""
    big = weights.max(axis=-1)
    small = np.where(weights > 0, weights, np.inf).min(axis=-1)
    return big - np.where(np.isfinite(small), small, big) <= 1e-9 * big


def _p_values(satisfied: np.ndarray, weights: np.ndarray, test: str) -> np.ndarray:
    """One p-value per leading index under the exact null of the module docstring."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    observed = np.sum(weights * satisfied, axis=-1)
    excess = observed - 0.5 * weights.sum(axis=-1)
    spread = np.sqrt(np.sum(weights**2, axis=-1))
    no_evidence = spread == 0
    if test == "hoeffding":
        # Hoeffding for independent terms of ranges w_j: P[S - E >= t] <= exp(-2 t^2 / sum w_j^2),
        # i.e. stats.hoeffding_p_value with one term of unit range and the excess in units of the spread.
        p = stats.hoeffding_p_value(excess / np.where(no_evidence, 1.0, spread), 1)
    else:
        lattice = _lattice(weights)
        active = weights[lattice] > 0
        p = np.empty(observed.shape)
        p[lattice] = stats.binomial_tail(np.sum(satisfied[lattice] & active, axis=-1), np.sum(active, axis=-1))
        p[~lattice] = _weighted_tail(observed[~lattice], weights[~lattice])
    return np.where(no_evidence, 1.0, p)


def p_values(prc: PRCKey, posteriors: ArrayLike, test: str = "calibrated") -> float | np.ndarray:
    """Zero-bit p-values for posteriors of shape (..., n): one per codeword, vectorised over the batch."""
    p = _p_values(*_check_evidence(prc, posteriors), test)
    return float(p) if p.ndim == 0 else p


def _score_threshold(weights: np.ndarray, fpr: float, test: str) -> float:
    """The standardised score ``(S - E S) / sd(S)`` at which ``test`` rejects at ``fpr``.

    Hoeffding: ``sqrt(2 ln(1/fpr))`` for any weights. Calibrated: the exact binomial
    threshold for hard decisions, otherwise the root of the saddlepoint tail in ``theta``.
    """
    if test == "hoeffding":
        return math.sqrt(2.0 * math.log(1.0 / fpr))
    active = weights[weights > 0]
    if active.size == 0:
        return math.inf
    if _lattice(active):
        count = stats.binomial_threshold(active.size, fpr)
        return (count - 0.5 * active.size) / (0.5 * math.sqrt(active.size))

    def log_excess(theta: float) -> float:
        return math.log(max(float(_saddlepoint_tail(np.array(theta), active)[1]), 1e-320)) - math.log(fpr)

    lower, upper = -1.0 / float(active.max()), 1.0 / float(active.max())  # the tail falls monotonically in theta
    while log_excess(upper) > 0:
        upper *= 2.0
    while log_excess(lower) < 0:
        lower *= 2.0
    theta = optimize.brentq(log_excess, lower, upper, xtol=1e-12)
    s = float(_saddlepoint_tail(np.array(theta), active)[0])
    return (s - 0.5 * active.sum()) / (0.5 * math.sqrt(np.sum(active**2)))


def detect(prc: PRCKey, posteriors: ArrayLike, fpr: float | None = None, test: str = "calibrated") -> DetectionResult:
    """Zero-bit detection on one codeword's posteriors (shape (n,)); ``fpr`` defaults to the key's.

    ``score`` is the standardised statistic ``(S - E S) / sd(S)`` under H0 and ``threshold``
    the score at which ``test`` rejects; ``detected`` is ``p_value <= fpr``. Both tests'
    p-values are in ``details``.
    """
    fpr = stats.check_fpr(prc.params.fpr if fpr is None else fpr)
    satisfied, weights = _check_evidence(prc, posteriors)
    if satisfied.ndim != 1:
        raise ValueError("detect takes one codeword; use p_values for a batch")
    both = {name: float(_p_values(satisfied, weights, name)) for name in TESTS}
    spread = 0.5 * math.sqrt(float(np.sum(weights**2)))
    excess = float(np.sum(weights * satisfied) - 0.5 * weights.sum())
    return DetectionResult(
        detected=bool(both[test] <= fpr),
        p_value=both[test],
        score=excess / spread if spread > 0 else 0.0,
        threshold=_score_threshold(weights, fpr, test),
        fpr=fpr,
        scheme=SCHEME,
        key_id=prc.key_id,
        details={
            "test": test,
            "null": "given their weights, the r parity checks are i.i.d. fair coins (uniform signs, full-rank H)",
            "p_value_calibrated": both["calibrated"],
            "p_value_hoeffding": both["hoeffding"],
            "checks": prc.params.r,
            "checks_satisfied": int(np.count_nonzero(satisfied)),
            "n": prc.params.n,
        },
    )


# -- decoding ----------------------------------------------------------------------------


def _check_messages(to_checks: np.ndarray) -> np.ndarray:
    """Sum-product check update on (t, r) edge messages: ``2 atanh`` of the other edges' ``tanh(m/2)`` product.

    Leave-one-out products come from running prefix and suffix products over the ``t``
    positions (no division, so a zero message is handled exactly).
    """
    tanh = np.tanh(to_checks / 2.0)
    others = np.empty_like(tanh)
    running = np.ones_like(tanh[0])
    for position in range(tanh.shape[0]):
        others[position] = running
        running = running * tanh[position]
    running = np.ones_like(tanh[0])
    for position in reversed(range(tanh.shape[0])):
        others[position] *= running
        running = running * tanh[position]
    return _llr(others)


def belief_propagation(
    supports: np.ndarray, channel_llr: np.ndarray, iterations: int, patience: int = BP_PATIENCE
) -> tuple[np.ndarray, int, int]:
    """Flooding sum-product decoding; returns (posterior LLRs, iterations run, unsatisfied checks).

    Messages live on the ``r * t`` edges as a (t, r) array (contiguous per check position):
    checks update all at once with the leave-one-out tanh rule, variables gather theirs with
    one ``bincount``. LLRs are ``log P(bit 0) / P(bit 1)``. Stops when the hard decision
    satisfies every check, or when the count of unsatisfied checks has not reached a new
    low for ``patience`` iterations: BP often settles with a handful of checks stuck in small
    trapping sets, which the GF(2) solve (using only the most confident bits) does not mind,
    while on noise it never settles.
    """
    edges = np.ascontiguousarray(supports.T)
    flat = edges.ravel()
    to_checks = channel_llr[edges]
    best, since_best = edges.shape[1] + 1, 0
    for iteration in range(1, iterations + 1):
        to_variables = _check_messages(to_checks)
        total = channel_llr + np.bincount(flat, weights=to_variables.ravel(), minlength=channel_llr.size)
        at_checks = total[edges]
        unsatisfied = int(np.count_nonzero(np.logical_xor.reduce(at_checks < 0, axis=0)))
        best, since_best = (unsatisfied, 0) if unsatisfied < best else (best, since_best + 1)
        if unsatisfied == 0 or since_best >= patience:
            break
        to_checks = at_checks - to_variables
    return total, iteration, unsatisfied


def _gauss_jordan(rows: np.ndarray, k: int, track: bool = False) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Gauss-Jordan over GF(2) on bit-packed ``rows`` (most trusted first).

    Each column's pivot is the first not-yet-pivot row with a 1 there, which selects exactly
    the greedy basis (a row is kept iff it is independent of all rows before it). Returns
    (pivot row per column, T) or None when the rows have rank below ``k``; with ``track``,
    T is the (k, m) 0/1 matrix with ``x = T y mod 2`` whenever ``rows x = y`` is consistent
    (the combinations of rows that became unit vectors).

    The loop runs over the ``k`` columns; each step XORs the pivot into every row holding
    that column, 64 columns per word. Words are stored transposed, (words, m), so a step
    touches contiguous runs of all rows under a mask instead of gathering rows; words left
    of the current column are already zero in the pivot and are skipped.
    """
    m, width = rows.shape
    if track:
        rows = np.concatenate([rows, _pack(np.eye(m, dtype=np.uint8))], axis=1)
    work = np.ascontiguousarray(rows.T)
    free = np.ones(m, dtype=bool)
    pivots = np.empty(k, dtype=np.int64)
    for column in range(k):
        word = column >> 6
        has_bit = (work[word] >> np.uint64(column & 63)) & np.uint64(1)
        candidates = has_bit.astype(bool) & free
        pivot = int(np.argmax(candidates))
        if not candidates[pivot]:
            return None
        has_bit[pivot] = 0
        work[word:] ^= work[word:, pivot, None] & -has_bit  # -1 is all ones: XOR where the bit is set
        free[pivot] = False
        pivots[column] = pivot
    return pivots, (_unpack(np.ascontiguousarray(work[width:, pivots].T), m) if track else None)


def _not_implied(order: np.ndarray, supports: np.ndarray) -> np.ndarray:
    """Mask over ``order``: False for rows that close a parity check of earlier rows.

    The last member (in ``order``) of a check is the XOR of the others, so the greedy basis
    never takes it. Dropping these rows before elimination leaves about 1,500 of 16,384
    candidates, where the most confident rows would otherwise need a window of thousands
    of mostly dependent rows (confident bits come in whole satisfied checks).
    """
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    closing = supports[np.arange(supports.shape[0]), np.argmax(position[supports], axis=1)]
    keep = np.ones(order.size, dtype=bool)
    keep[closing] = False
    return keep[order]


def _most_confident_basis(prc: PRCKey, confidence: np.ndarray) -> np.ndarray:
    """The greedy basis: ``k`` generator rows, each independent of all more confident rows, in confidence order."""
    order = np.argsort(-confidence, kind="stable")
    candidates = order[_not_implied(order, prc.supports)]
    found = _gauss_jordan(prc.generator[candidates], prc.params.k)
    if found is None:
        raise PRCDecodeError("the generator matrix has rank below k: the key is degenerate")
    return candidates[np.sort(found[0])]


def decode(prc: PRCKey, posteriors: ArrayLike, iterations: int | None = None) -> PRCDecodeResult:
    """Recover the payload: belief propagation, then a GF(2) solve on the most confident bits.

    The code input ``x`` solves ``G_S x = y_S`` on the ``k`` most confident codeword bits
    ``S`` that are linearly independent (greedy, in BP-confidence order). The decoded test
    bits must equal the key's, so noise or a wrong key is accepted with probability at most
    ``2 ** -test_bits <= fpr``. Raises ``PRCDecodeError`` otherwise. ``iterations``
    overrides the key's cap on belief-propagation iterations.
    """
    p = prc.params
    soft = _debiased(prc, posteriors)
    if soft.ndim != 1:
        raise ValueError("decode takes one codeword's posteriors, shape (n,)")
    llr, used, unsatisfied = belief_propagation(prc.supports, _llr(soft), iterations or p.bp_iterations)
    basis = _most_confident_basis(prc, np.abs(llr))
    solved = _gauss_jordan(prc.generator[basis], p.k, track=True)
    if solved is None or solved[1] is None:  # the basis was chosen with rank k: only a corrupt key gets here
        raise PRCDecodeError("the most confident generator rows do not span the code")
    combination = solved[1]
    x = (combination.astype(np.float32) @ (llr[basis] < 0).astype(np.float32)).astype(np.int64) & 1
    log_trust = np.log(np.maximum(np.abs(np.tanh(llr[basis] / 2.0)), 1e-300))
    confidence = np.exp(combination.astype(float) @ log_trust)
    if not np.array_equal(x[: p.test_bits], prc.test_bits):
        raise PRCDecodeError(
            "decoded test bits do not match the key: too noisy to decode, or not watermarked with this key"
        )
    start = p.test_bits + p.g
    return PRCDecodeResult(
        payload_bits=x[start:].astype(np.uint8),
        bit_confidence=confidence[start:],
        bp_iterations=used,
        unsatisfied_checks=unsatisfied,
    )
