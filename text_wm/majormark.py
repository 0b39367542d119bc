"""MajorMark and MajorMark+: multi-bit text watermarks keyed on the message's majority bit.

After Xu, Hu and Zhang, "Majority Bit-Aware Watermarking for Large Language Models"
(arXiv 2508.03829). No reference code exists; the construction below is ours and
follows the paper's idea: the preferred ("green") set is chosen by the message's
*majority* bit, so it always covers at least half of the vocabulary (a large green list
distorts the text less than the small per-bit lists of earlier multi-bit schemes), and
the message is read back by clustering (MajorMark) or by enumerating block patterns
(MajorMark+).

Message
    ``payload_bits`` (a multiple of 8, at least 16) are Reed-Solomon encoded with
    ``parity_bytes`` check bytes into an ``L``-bit codeword (default 2 + 4 bytes = 48
    bits), then XOR-ed with a keyed pseudo-random *whitening mask*. Whitening matters
    twice: RS is linear, so the all-zero payload has the all-zero codeword, which would
    be constant and unembeddable (every sublist would be preferred); and for MajorMark+
    it makes each block's pattern uniformly random, so a constant block (which carries
    nothing) has probability ``2 / 2**b`` only. The embedded word is ``w = c XOR mask``.

Vocabulary partition (all keyed integer hashes from :mod:`text_wm.hashing`)
    ``ctx`` is the fold of the previous ``context_width`` token ids (left hash, as KGW).
    The word is cut into ``B`` blocks of ``b`` bits (MajorMark: one block, ``b = L``;
    MajorMark+: ``b = block_bits``). A position belongs to block ``j = H_blk(ctx) mod B``
    (so every block's tokens are spread over the whole text). With ``m_j`` the majority
    bit of block ``j`` (ties go to 1), every vocabulary token ``v`` falls into sublist
    ``i = bucket_b(H(ctx, 2 j + m_j, v))`` (the hash's top 16 bits scaled to ``[0, b)``,
    :func:`text_wm.hashing.bucket`); the preferred set is the union of the sublists
    whose bit equals the majority, ``{v : w_{j,i} = m_j}``, a fraction
    ``gamma_j = #{i : w_{j,i} = m_j} / b >= 1/2`` of the vocabulary, and generation adds
    ``delta`` to its logits. The hash words are drawn per layout ``(L, b)``, so MajorMark
    and MajorMark+ under one key never share a partition. The family is seeded with ``m_j``: a word and its
    complement have the same "positions equal to the majority" sets, and seeding by the
    majority bit is what tells them apart at decoding (only the family of the true
    majority shows any bias).

Decoding
    Counts are taken over distinct (context, token) pairs (repeated n-grams would count
    one hash draw many times, like KGW). For each block and each majority candidate
    ``m`` we count how many scored tokens of that block fall into each sublist,
    ``n[m, j, i]``.

    MajorMark (clustering): for each ``m`` the ``L`` counts are split into a high and a
    low group by exact 1-D 2-means (sort, try every split, keep the one with the least
    within-group sum of squares). The high group must hold the majority: at least
    ``ceil(L/2)`` positions for ``m = 1`` and ``floor(L/2) + 1`` for ``m = 0`` (ties go to
    1), since the encoder guarantees it; this removes splits that cannot occur. ``m`` is
    the family with the larger Pearson dispersion (the unbiased family is pure noise).
    Bits: ``m`` in the high group, ``1 - m`` elsewhere; a bit's confidence is
    ``erf(|z| / sqrt 2)`` with ``z`` its count's distance from the split point in Poisson
    standard deviations.

    MajorMark+ (enumeration): for every block all ``2**b`` patterns ``c`` are scored at
    once as one tensor product, ``hits(c) = sum_i [c_i = m(c)] n[m(c), j, i]`` and
    ``z(c) = (hits - gamma(c) T_j) / sqrt(T_j gamma(c) (1 - gamma(c)))``; the best ``z``
    wins. Constant patterns (``gamma = 1``) carry nothing and are never candidates; a
    block whose whitened bits happen to be constant is embedded with no bias and comes
    out as a low-confidence (erased) byte. Bit confidences come from a softmax of
    ``z**2 / 2`` over the patterns (``|2 P(bit = decided) - 1|``).

    Payload. The hard bits above (and their confidences) are what the paper's decoders
    produce; the payload is then recovered with the RS code in one of two ways:

    * soft maximum likelihood (default for payloads of at most 16 bits): every one of
      the ``2**16`` codewords is whitened and scored against the counts at once (a
      3 MB table, built by GF(2)-linearity of RS from 16 basis codewords), and the
      codeword that best explains the counts wins. The score is the pooled hit z-score
      ``(sum_j H_j - sum_j gamma_j T_j) / sqrt(sum_j T_j gamma_j (1 - gamma_j))``, with
      ``H_j`` the tokens of block ``j`` in that codeword's preferred set. This uses the
      RS code as a codebook rather than as an error corrector, so it is not limited to
      ``parity_bytes / 2`` wrong bytes; it is what makes 16-bit payloads come back
      exactly from 100-200 tokens (measured below). ``corrected_symbols`` then counts
      the bytes where the hard bits differ from the chosen codeword;
      ``payload_margin`` is the z gap to the runner-up.
    * Chase Reed-Solomon (larger payloads, or ``soft_decoding=False``): bytes are ranked
      by their least confident bit; every set of at most ``max_erasures`` of the (up to
      8) least confident bytes is tried as erasures, and among the distinct payloads
      that decode, the one with the best pooled z wins. With ``block_bits = 8`` a
      MajorMark+ block is exactly one RS symbol, so a wrong block costs one symbol.

Detection (needs no knowledge of the message)
    H0: the text was written without the key. Then each distinct (context, token)
    pair's block and sublist are independent uniform hash draws (the sublist up to a
    relative deviation of ``b / 2**16`` from ``bucket``, negligible beside the test's own
    approximation), so for each block and
    each majority family the sublist counts are Multinomial(T_j, 1/b), and Pearson's
    ``X^2 = sum_i (n_i - T_j/b)^2 / (T_j/b)`` is approximately chi2(b - 1) (its exact
    mean is ``b - 1`` and its variance ``2(b-1)(1 - 1/T_j)``, so the body fits even for
    small counts; the far tail does not, see below). Watermarked text concentrates
    tokens in the preferred sublists and inflates the dispersion.
    MajorMark: the two families' statistics are tested separately and the smaller
    p-value is corrected for the two looks by Sidak, ``p = 1 - (1 - p_min)^2`` with
    ``p_min = min_m P[chi2(L-1) >= X^2_m]``. The families are seeded differently, so
    given the scored pairs their sublist draws, hence the two statistics, are
    independent and the correction is exact (Bonferroni's ``2 p_min`` would pile null
    p-values up at 1). The maximum beats the sum because the biased family carries all
    the signal and the other adds only noise.
    For sparse counts the chi-square tail is too light: on 2e5 multinomial null draws
    (L = 48) a nominal 0.01 gives 0.019 at T = 10, 0.014 at T = 50, 0.0115 at T = 100
    and still ~0.011 at T = 190-300; a nominal 0.001 up to 0.0037. MajorMark therefore
    replaces the chi-square tail by the *exact* multinomial tail (:func:`provenance.stats.collision_tail`,
    a dynamic programme) whenever fewer than ``EXACT_NULL_MAX_TOKENS`` tokens are scored
    and the chi-square p-value lies in [1e-30, 0.05] (``EXACT_NULL_MIN_P``,
    ``EXACT_NULL_BELOW_P``; beyond 1e-30 the chi-square value stands). The reported
    p-value is then valid at every level up to 0.05: a text either gets the exact tail
    or a chi-square value above 0.05 (above it the chi-square is accurate: P[p <= 0.05]
    measured 0.0497 at T = 50). For longer texts the chi-square remains, ~10% relatively
    anti-conservative at 0.01 (measured), which we accept.
    MajorMark+: the blocks' majorities differ, so all blocks and both families are
    summed: ``X^2 ~ chi2(2 (b-1) B')`` with ``B'`` the blocks that received tokens. The
    families use different hash seeds, so given the pairs their counts are independent;
    blocks hold disjoint pairs. Summing 12 families averages the per-family tail error
    away: measured FPR at 0.01 was 0.000-0.013 for T = 10-1000 on random tokens.
    ``detected = p <= fpr``; ``score`` is the chi-square statistic and ``threshold`` the
    statistic's critical value.

Defaults: ``delta = 3`` for MajorMark and ``delta = 4`` for MajorMark+, whose summed statistic
spends half its degrees of freedom on the unbiased families and so detects less per token; the
measurements behind them are in ``docs/text.md`` (MajorMark).

Result shape: ``detect`` and ``decode`` both return a
:class:`~provenance.result.DetectionResult` from the same analysis. ``detect`` decodes
the payload only when the watermark is detected (a payload read from unmarked text is
noise, and skipping it keeps null scoring cheap); ``decode`` always decodes. When
decoding fails (Chase RS with ``max_erasures < parity_bytes`` only), ``payload`` is None
and ``details['decode_error']`` says why. With ``expected_payload``, ``bit_accuracy``
compares the payload bits (decoded, or the raw systematic bits when nothing was decoded)
and ``details['raw_bit_accuracy']`` the hard codeword bits before any correction.

Caveat: both decoders always return *some* codeword (soft ML picks the best of all of
them; Chase may erase all parity), so a payload is trustworthy only together with a
detection, which is why ``detect`` decodes only detected texts. ``payload_margin`` (soft
ML) is a further check: a small gap to the runner-up means a guess.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import stats as sps
from transformers import LogitsProcessor

from provenance.codes.reed_solomon import ReedSolomonCode, ReedSolomonDecodeError, codebook
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult
from provenance.stats import collision_tail
from text_wm.base import TokenInput, as_token_ids, vocab_size_of
from text_wm.hashing import bucket, combine, context_windows, fold_top16, key_words, keyed, mix32, to_bits, window_hash
from text_wm.kernels import add_bias, kernel, scratch

PayloadInput = bytes | bytearray | str

DEFAULT_DELTA = 3.0
"""MajorMark's logit bias when none is given (measured choice, docs/text.md)."""

DEFAULT_DELTA_BLOCKWISE = 4.0
"""MajorMark+'s: its summed chi-square detects less per token, so it needs a larger bias."""

CHASE_CANDIDATE_BYTES = 8
"""Chase decoding tries erasure sets among at most this many least-confident bytes."""


EXACT_NULL_MAX_TOKENS = 256
"""MajorMark's exact multinomial tail is computed for fewer scored tokens than this."""

EXACT_NULL_BELOW_P = 0.05
"""...and only where the chi-square p-value is below this (where decisions are taken)..."""

EXACT_NULL_MIN_P = 1e-30
"""...and above this: beyond it the text is watermarked beyond doubt and the exact tail,
whose cost grows with the statistic, would take seconds."""


SOFT_DECODING_MAX_PAYLOAD_BITS = 16
"""Payloads up to this size are decoded by scoring every codeword (2**16 x L bits, ~3 MB)."""


# -- pure helpers (exported for tests) -----------------------------------------------------


def majority_bits(bits: np.ndarray) -> np.ndarray:
    """Majority bit along the last axis; ties go to 1."""
    bits = np.asarray(bits)
    return (2 * bits.sum(axis=-1) >= bits.shape[-1]).astype(np.int64)


def split_two_means(values: np.ndarray, min_high: int) -> tuple[np.ndarray, float]:
    """Exact 1-D 2-means with the high group holding at least ``min_high`` values.

    Returns ``(high, split)``: a boolean mask of the high group and the split point (the
    midpoint of the two group means, clamped into the gap between the groups). Exact
    because in 1-D an optimal 2-means partition is a threshold: sort, evaluate the
    within-group sum of squares of every admissible split from prefix sums, keep the
    smallest.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if not 1 <= min_high <= n - 1:
        raise ValueError(f"min_high must lie in [1, {n - 1}], got {min_high}")
    order = np.argsort(-values, kind="stable")
    ordered = values[order]
    s1 = np.concatenate([[0.0], np.cumsum(ordered)])
    s2 = np.concatenate([[0.0], np.cumsum(ordered**2)])
    k = np.arange(min_high, n)  # size of the high group
    ss_high = s2[k] - s1[k] ** 2 / k
    ss_low = (s2[n] - s2[k]) - (s1[n] - s1[k]) ** 2 / (n - k)
    best = int(k[np.argmin(ss_high + ss_low)])
    high = np.zeros(n, dtype=bool)
    high[order[:best]] = True
    split = 0.5 * (s1[best] / best + (s1[n] - s1[best]) / (n - best))
    # a constrained optimum can put the midpoint outside the gap; keep it between the groups
    split = min(max(split, ordered[best]), ordered[best - 1])
    return high, float(split)


@lru_cache(maxsize=None)
def block_candidates(b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``2**b`` patterns: ``(bits (P, b) int64, majority (P,), gamma (P,) float)``.

    Pattern ``p``'s bit ``i`` is bit ``b-1-i`` of ``p`` (MSB first, like the RS bits).
    Cached and read-only: every block of every text shares one table.
    """
    patterns = np.arange(2**b, dtype=np.int64)
    bits = (patterns[:, None] >> np.arange(b - 1, -1, -1)) & 1
    ones = bits.sum(axis=1)
    maj = (2 * ones >= b).astype(np.int64)
    gamma = np.where(maj == 1, ones, b - ones) / b
    for array in (bits, maj, gamma):
        array.setflags(write=False)
    return bits, maj, gamma


def score_block_candidates(counts: ArrayLike, totals: ArrayLike) -> np.ndarray:
    """z-scores of every pattern for every block: ``(2, B, b)`` counts -> ``(B, 2**b)``.

    ``counts[m, j, i]``: tokens of block ``j`` in sublist ``i`` of the family seeded with
    majority ``m``; ``totals[j]``: tokens of block ``j``. One matrix product per family
    scores all patterns: ``hits(c) = sum_i [c_i = m(c)] counts[m(c), j, i]``. Constant
    patterns get ``-inf``; an empty block gets 0 for every other pattern.
    (numpy, not torch: these arrays are tiny and torch's thread pool only adds latency.)
    """
    counts = np.asarray(counts, dtype=float)
    b = counts.shape[-1]
    bits, maj, gamma = block_candidates(b)
    hits_by_maj = np.stack([counts[m] @ (bits == m).T for m in (0, 1)])  # (2, B, P)
    hits = np.where(maj == 1, hits_by_maj[1], hits_by_maj[0])
    t = np.asarray(totals, dtype=float)[:, None]
    var = t * gamma * (1.0 - gamma)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (hits - gamma * t) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return np.where(gamma < 1.0, z, -np.inf)


# -- the scheme ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MajorityWatermark:
    """What MajorMark and MajorMark+ share: the RS-coded, whitened word, the keyed sublists, the
    logits processor, counting and decoding. The two differ in how a word is cut into blocks,
    their dispersion test and how they read the bits back (the methods each overrides).

    ``payload_bits`` (multiple of 8, >= 16) and ``parity_bytes`` fix the RS code and its
    length ``L = payload_bits + 8 * parity_bytes``. ``max_erasures`` bounds the Chase
    decoder's erasure sets (default ``parity_bytes``; lower it to keep some parity for error
    *detection* at the price of fewer recovered payloads). ``soft_decoding`` (default on)
    decodes payloads of at most 16 bits by scoring every codeword; off, or for larger
    payloads, the hard bits go through Chase RS decoding.
    """

    payload_bits: int = 16
    parity_bytes: int = 4
    delta: float | None = None
    context_width: int = 1
    max_erasures: int | None = None
    soft_decoding: bool = True

    name = "majority"
    default_delta = DEFAULT_DELTA

    def __post_init__(self) -> None:
        if self.payload_bits < 16 or self.payload_bits % 8:
            raise ValueError(f"payload_bits must be a multiple of 8 and at least 16, got {self.payload_bits}")
        if self.delta is None:
            object.__setattr__(self, "delta", self.default_delta)
        if self.delta <= 0:
            raise ValueError("delta must be positive")
        if self.context_width < 1:
            raise ValueError("context_width must be at least 1")
        # validates parity_bytes and the GF(2^8) length limit
        ReedSolomonCode(self.payload_bits // 8, self.parity_bytes)
        if self.max_erasures is not None and not 0 <= self.max_erasures <= self.parity_bytes:
            raise ValueError(f"max_erasures must lie in [0, {self.parity_bytes}]")

    # -- shape ------------------------------------------------------------------------------

    @property
    def payload_bytes(self) -> int:
        """Bytes of payload a text carries (the vocabulary image schemes use too)."""
        return self.payload_bits // 8

    @property
    def code(self) -> ReedSolomonCode:
        return ReedSolomonCode(self.payload_bytes, self.parity_bytes)

    @property
    def code_bits(self) -> int:
        return self.payload_bits + 8 * self.parity_bytes

    @property
    def bits_per_block(self) -> int:
        return self.code_bits

    @property
    def n_blocks(self) -> int:
        return self.code_bits // self.bits_per_block

    # -- keyed material -----------------------------------------------------------------------
    def _words(self, key: WatermarkKey) -> list[int]:
        """Hash words, separate per (L, b) layout so MajorMark and MajorMark+ never share partitions."""
        return key_words(key, f"majormark/L{self.code_bits}/b{self.bits_per_block}", 5)

    def whitening_mask(self, key: WatermarkKey) -> np.ndarray:
        """The keyed L-bit mask XOR-ed onto the codeword (payload-independent)."""
        _, rng = key.generator("majormark-whitening", self.code_bits)
        return rng.integers(0, 2, self.code_bits, dtype=np.uint8)

    def embedded_word(self, payload: PayloadInput, key: WatermarkKey) -> np.ndarray:
        """``(L,)`` bits actually embedded: RS codeword of the payload XOR the mask."""
        word = self.code.encode(self._payload_bytes(payload)) ^ self.whitening_mask(key)
        self._check_embeddable(word)
        return word

    def _check_embeddable(self, word: np.ndarray) -> None:
        """Refuse a word this variant cannot embed (a single block needs both bit values)."""
        if word.min() == word.max():
            raise ValueError("the whitened codeword is constant and cannot be embedded; use another key")

    def _payload_bytes(self, payload: PayloadInput) -> bytes:
        if isinstance(payload, str):
            try:
                payload = bytes.fromhex(payload)
            except ValueError:
                raise ValueError(f"payload must be bytes or a hex string, got {payload!r}") from None
        payload = bytes(payload)
        if len(payload) != self.payload_bytes:
            raise ValueError(f"payload must be exactly {self.payload_bytes} bytes, got {len(payload)}")
        return payload

    def context_hash(self, windows: torch.Tensor, words: list[int]) -> torch.Tensor:
        """``(..., width)`` token windows -> ``(...)`` 32-bit context hashes."""
        return window_hash(windows, words[0], words[1])

    def block_of(self, ctx: torch.Tensor, words: list[int]) -> torch.Tensor:
        return mix32(ctx ^ words[4]) % self.n_blocks

    def sublist(self, ctx: torch.Tensor, block: torch.Tensor, maj: torch.Tensor, tokens: torch.Tensor,
                words: list[int]) -> torch.Tensor:
        """Sublist index in ``[0, b)`` of ``tokens`` for (context, block, majority); broadcasts.

        int32 ``tokens`` select the fast bit-pattern hashing (generation's vocabulary-wide path).
        """
        return bucket(fold_top16(self.sublist_inner(ctx, block, maj, words, tokens.dtype), tokens), self.bits_per_block)

    def sublist_inner(self, ctx: torch.Tensor, block: torch.Tensor, maj: torch.Tensor, words: list[int],
                      dtype: torch.dtype = torch.long) -> torch.Tensor:
        """The keyed half of :meth:`sublist` (``fold`` with a token completes it), in ``dtype``'s representation."""
        family = combine(ctx, 2 * block + maj, words[2])
        return keyed(to_bits(family) if dtype == torch.int32 else family, words[3])

    # -- generation -------------------------------------------------------------------------
    def processor(self, key: WatermarkKey, vocab: Any, payload: PayloadInput | list[PayloadInput] | None = None,
                  *, compile: bool = False) -> "MajorMarkLogitsProcessor":
        """A logits processor embedding ``payload`` (bytes or hex), or one payload per batch row.

        ``compile=True`` fuses its vocabulary-wide step (see :mod:`text_wm.kernels`).
        """
        if payload is None:
            raise ValueError(f"{self.name} embeds a message: pass payload= ({self.payload_bytes} bytes or hex)")
        payloads = payload if isinstance(payload, list) else [payload]
        if not payloads:
            raise ValueError("empty payload list")
        words = np.stack([self.embedded_word(p, key) for p in payloads])
        return MajorMarkLogitsProcessor(self, key, vocab_size_of(vocab), torch.from_numpy(words).long(), compile=compile)

    # -- counting -----------------------------------------------------------------------------
    def sublist_counts(self, texts: list[torch.Tensor], key: WatermarkKey, device: str | torch.device | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(counts (N, 2, B, b), totals (N, B))`` over each text's distinct scored (context, token) pairs.

        All texts go through one hashing pass on ``device`` (default: the CPU): their pairs are
        tagged with the text's index, deduplicated together and counted by one ``bincount``.
        """
        h, B, b = self.context_width, self.n_blocks, self.bits_per_block
        target = torch.device(device) if device is not None else torch.device("cpu")
        n = len(texts)
        tagged = [torch.cat([torch.full((len(t) - h, 1), i), context_windows(t, h), t[h:].unsqueeze(1)], dim=1)
                  for i, t in enumerate(texts) if t.numel() > h]
        if not tagged:
            return torch.zeros(n, 2, B, b, dtype=torch.long), torch.zeros(n, B, dtype=torch.long)
        pairs = torch.unique(torch.cat(tagged).to(target), dim=0)
        words = self._words(key)
        ctx = self.context_hash(pairs[:, 1:h + 1], words)
        cell = pairs[:, 0] * B + self.block_of(ctx, words)  # (text, block)
        totals = torch.bincount(cell, minlength=n * B).view(n, B)
        counts = torch.stack([
            torch.bincount(cell * b + self.sublist(ctx, cell % B, torch.full_like(cell, m), pairs[:, h + 1], words),
                           minlength=n * B * b).view(n, B, b)
            for m in (0, 1)], dim=1)
        return counts.cpu(), totals.cpu()

    # -- detection statistic ----------------------------------------------------------------
    def _chi_square(self, counts: torch.Tensor, totals: torch.Tensor, fpr: float) -> dict[str, Any]:
        b = self.bits_per_block
        n = counts.double().numpy()
        t = totals.double().numpy()
        active = t > 0
        expected = np.where(active, t / b, 1.0)[None, :, None]
        x2 = np.where(active[None, :], ((n - expected) ** 2 / expected).sum(axis=-1), 0.0)  # (2, B)
        if not active.any():
            return {"statistic": 0.0, "p_value": 1.0, "threshold": math.inf, "dof": 0, "x2_by_majority": [0.0, 0.0]}
        return {**self._dispersion_test(x2, counts, t, active, fpr), "x2_by_majority": x2.sum(axis=1).tolist()}

    def _dispersion_test(self, x2: np.ndarray, counts: torch.Tensor, t: np.ndarray, active: np.ndarray,
                         fpr: float) -> dict[str, Any]:
        """MajorMark: one block, the larger of the two majority families' Pearson statistics (Sidak),
        with the exact multinomial tail for short texts."""
        b = self.bits_per_block
        dof = b - 1
        total = int(t[0])
        sidak_level = -math.expm1(0.5 * math.log1p(-fpr))  # 1 - sqrt(1 - fpr)
        statistic = float(x2[:, 0].max())
        p_family = sps.chi2.sf(x2[:, 0], dof)
        null_name = f"chi2({dof})"
        if total < EXACT_NULL_MAX_TOKENS:
            collisions = (counts[:, 0, :].long() * (counts[:, 0, :].long() - 1) // 2).sum(dim=1).tolist()
            for m in (0, 1):
                if EXACT_NULL_MIN_P <= p_family[m] <= EXACT_NULL_BELOW_P:
                    p_family[m] = collision_tail(total, b, int(collisions[m]))
            null_name = (f"the exact multinomial tail where chi2 gives {EXACT_NULL_MIN_P:g} <= p <= "
                         f"{EXACT_NULL_BELOW_P:g}, else chi2({dof})")
        p_min = float(p_family.min())
        threshold = float(sps.chi2.isf(sidak_level, dof))
        p_value = p_min * (2.0 - p_min)  # Sidak: 1 - (1 - p_min)^2 for two independent tests
        test = f"Pearson dispersion per majority family vs {null_name}; max of the two (Sidak)"
        return {"statistic": statistic, "p_value": p_value, "threshold": threshold, "dof": dof, "test": test}

    # -- bit inference ------------------------------------------------------------------------
    def _infer_bits(self, counts: torch.Tensor, totals: torch.Tensor) -> tuple[np.ndarray, np.ndarray, dict]:
        """Hard embedded-word bits ``(L,)`` and per-bit confidences in [0, 1]: MajorMark clusters the
        sublist counts of its one block into two means."""
        L = self.code_bits
        n = counts[:, 0, :].double().numpy()  # (2, L)
        total = float(totals[0])
        if total == 0:
            return np.zeros(L, dtype=np.uint8), np.zeros(L), {"majority": None}
        expected = total / L
        dispersion = ((n - expected) ** 2).sum(axis=1) / expected
        m = int(np.argmax(dispersion))
        min_high = math.ceil(L / 2) if m == 1 else L // 2 + 1
        high, split = split_two_means(n[m] / expected, min_high)
        bits = np.where(high, m, 1 - m).astype(np.uint8)
        split_count = split * expected
        z = (n[m] - split_count) / math.sqrt(max(split_count, 1.0))
        confidence = np.array([math.erf(abs(v) / math.sqrt(2.0)) for v in z])
        return bits, confidence, {"majority": m, "split_count": split_count}

    def word_scores(self, words: np.ndarray, counts: torch.Tensor, totals: torch.Tensor) -> np.ndarray:
        """How well each embedded word explains the counts: ``(P, L)`` words -> ``(P,)`` z-scores.

        The pooled hit z-score over blocks, ``(sum_j H_j - sum_j gamma_j T_j) /
        sqrt(sum_j T_j gamma_j (1 - gamma_j))``, with ``H_j`` the block's tokens in the
        word's preferred set (of its majority family); constant blocks are left out.
        """
        B, b = self.n_blocks, self.bits_per_block
        blocks = np.asarray(words).reshape(-1, B, b).astype(np.int64)
        maj = majority_bits(blocks)  # (P, B)
        preferred = blocks == maj[..., None]
        n = counts.numpy().astype(float)  # (2, B, b)
        hits = (n[maj, np.arange(B)] * preferred).sum(axis=-1)  # (P, B)
        gamma = preferred.mean(axis=-1)
        t = totals.numpy().astype(float)
        usable = gamma < 1.0
        excess = ((hits - gamma * t) * usable).sum(axis=1)
        var = (t * gamma * (1.0 - gamma) * usable).sum(axis=1)
        return np.where(var > 0, excess / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)

    def _decode_counts(self, word: np.ndarray, confidence: np.ndarray, key: WatermarkKey,
                       counts: torch.Tensor, totals: torch.Tensor) -> tuple[dict[str, Any] | None, str | None]:
        """Payload from the counts: soft ML over the whole codebook when small, else Chase RS."""
        if self.soft_decoding and self.payload_bits <= SOFT_DECODING_MAX_PAYLOAD_BITS:
            return self._soft_decode(word, key, counts, totals), None
        return self._chase_decode(word, confidence, key, counts, totals)

    def _soft_decode(self, word: np.ndarray, key: WatermarkKey, counts: torch.Tensor,
                     totals: torch.Tensor) -> dict[str, Any]:
        mask = self.whitening_mask(key)
        book = codebook(self.payload_bytes, self.parity_bytes)
        scores = self.word_scores(book ^ mask, counts, totals)
        order = np.argpartition(-scores, 1)[:2]
        best, second = (order if scores[order[0]] >= scores[order[1]] else order[::-1]).tolist()
        payload = best.to_bytes(self.payload_bytes, "big")
        wrong_bytes = np.packbits(word ^ mask) != np.packbits(book[best])
        return {"payload": payload, "decoder": f"soft maximum-likelihood over all {book.shape[0]} codewords",
                "corrected_symbols": int(wrong_bytes.sum()), "erasures": 0,
                "payload_z": float(scores[best]), "payload_margin": float(scores[best] - scores[second])}

    def _chase_decode(self, word: np.ndarray, confidence: np.ndarray, key: WatermarkKey, counts: torch.Tensor,
                      totals: torch.Tensor) -> tuple[dict[str, Any] | None, str | None]:
        code = self.code
        mask = self.whitening_mask(key)
        received = word ^ mask
        max_erasures = self.parity_bytes if self.max_erasures is None else self.max_erasures
        byte_conf = confidence.reshape(code.total_bytes, 8).min(axis=1)
        candidates = sorted(np.argsort(byte_conf, kind="stable")[:CHASE_CANDIDATE_BYTES].tolist())
        decoded: dict[bytes, Any] = {}
        failures = 0
        for size in range(max_erasures + 1):
            for erased in itertools.combinations(candidates, size):
                try:
                    result = code.decode(received, erasures=list(erased))
                except ReedSolomonDecodeError:
                    failures += 1
                    continue
                decoded.setdefault(result.payload, result)
        if not decoded:
            return None, f"Reed-Solomon decoding failed for all {failures} erasure sets (too many symbol errors)"
        results = list(decoded.values())
        scores = self.word_scores(np.stack([code.encode(r.payload) ^ mask for r in results]), counts, totals)
        best = results[int(np.argmax(scores))]
        return {"payload": best.payload, "decoder": f"Chase Reed-Solomon ({len(results)} candidate codewords)",
                "corrected_symbols": best.corrected_symbols, "erasures": best.erasures,
                "payload_z": float(scores.max())}, None

    # -- public detection / decoding ------------------------------------------------------------
    def detect(self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, *, fpr: float = 0.01,
               expected_payload: PayloadInput | None = None, device: str | torch.device | None = None) -> DetectionResult:
        """Chi-square detection, plus the payload when detected (see the module docstring)."""
        return self._analyse([tokens], key, tokenizer, fpr, expected_payload, True, device)[0]

    def detect_batch(self, texts: list[TokenInput], key: WatermarkKey, tokenizer: Any = None, *,
                     fpr: float = 0.01, device: str | torch.device | None = None) -> list[DetectionResult]:
        """``detect`` for each text; the hashing and counting of all texts is one pass on ``device``."""
        return self._analyse(texts, key, tokenizer, fpr, None, True, device)

    def decode(self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, *,
               expected_payload: PayloadInput | None = None, fpr: float = 0.01,
               device: str | torch.device | None = None) -> DetectionResult:
        """Like ``detect`` but always decodes: the payload of an undetected text is in
        ``details["decoded_payload"]`` (``DetectionResult.decoded_payload``), never in ``payload``."""
        return self._analyse([tokens], key, tokenizer, fpr, expected_payload, False, device)[0]

    def decode_batch(self, texts: list[TokenInput], key: WatermarkKey, tokenizer: Any = None, *,
                     expected_payload: PayloadInput | None = None, fpr: float = 0.01,
                     device: str | torch.device | None = None) -> list[DetectionResult]:
        """``decode`` for each text; the hashing and counting of all texts is one pass on ``device``."""
        return self._analyse(texts, key, tokenizer, fpr, expected_payload, False, device)

    def _analyse(self, texts: list[TokenInput], key: WatermarkKey, tokenizer: Any, fpr: float,
                 expected_payload: PayloadInput | None, withhold_undetected: bool,
                 device: str | torch.device | None) -> list[DetectionResult]:
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr must lie strictly between 0 and 1, got {fpr}")
        all_ids = [as_token_ids(text, tokenizer) for text in texts]
        counts, totals = self.sublist_counts(all_ids, key, device)
        return [self._result(ids, c, t, key, fpr, expected_payload, withhold_undetected)
                for ids, c, t in zip(all_ids, counts, totals)]

    def _result(self, ids: torch.Tensor, counts: torch.Tensor, totals: torch.Tensor, key: WatermarkKey, fpr: float,
                expected_payload: PayloadInput | None, withhold_undetected: bool) -> DetectionResult:
        """One text's test, bit inference and payload decoding from its sublist counts."""
        test = self._chi_square(counts, totals, fpr)
        detected = bool(test["p_value"] <= fpr)
        details: dict[str, Any] = {
            "test": test.get("test", "no scored tokens"),
            "dof": test["dof"],
            "x2_by_majority": test["x2_by_majority"],
            "n_tokens": int(ids.numel()),
            "n_scored": int(totals.sum()),
            "tokens_per_block": totals.tolist(),
            "code_bits": self.code_bits,
            "bits_per_block": self.bits_per_block,
            "delta": self.delta,
            "context_width": self.context_width,
        }
        payload_hex: str | None = None
        word, confidence, info = self._infer_bits(counts, totals)
        details.update(info)
        details["bit_confidence"] = [round(float(c), 4) for c in confidence]
        decoded, error = None, None
        if totals.sum() == 0:
            error = "no scored tokens"
        elif withhold_undetected and not detected:
            error = f"watermark not detected at fpr={fpr}; payload not decoded (use decode() to force)"
        else:
            decoded, error = self._decode_counts(word, confidence, key, counts, totals)
        if decoded is not None:
            payload_hex = decoded["payload"].hex()
            details.update({name: value for name, value in decoded.items() if name != "payload"})
        else:
            details["decode_error"] = error
        bit_accuracy = None
        if expected_payload is not None:
            expected = self._payload_bytes(expected_payload)
            expected_bits = np.unpackbits(np.frombuffer(expected, dtype=np.uint8))
            raw = word ^ self.whitening_mask(key)
            details["raw_bit_accuracy"] = float(np.mean(raw == self.code.encode(expected)))
            got = (np.unpackbits(np.frombuffer(decoded["payload"], dtype=np.uint8)) if decoded is not None
                   else raw[: self.payload_bits])
            bit_accuracy = float(np.mean(got == expected_bits))
            details["payload_exact"] = bool(decoded is not None and decoded["payload"] == expected)
        return DetectionResult(
            detected=detected,
            p_value=test["p_value"],
            score=test["statistic"],
            threshold=test["threshold"],
            fpr=fpr,
            scheme=self.name,
            key_id=key.key_id,
            payload=payload_hex,
            bit_accuracy=bit_accuracy,
            details=details,
        )


class MajorMarkLogitsProcessor(LogitsProcessor):
    """Adds ``delta`` to each row's preferred set for its current context and block.

    Per step, each row's context, block and majority bit are hashed here; the vocabulary-wide
    sublist lookup is one kernel (:mod:`text_wm.kernels`).
    """

    def __init__(self, scheme: _MajorityWatermark, key: WatermarkKey, vocab_size: int, words: torch.Tensor, *,
                 compile: bool = False) -> None:
        self.scheme, self.vocab_size = scheme, vocab_size
        B, b = scheme.n_blocks, scheme.bits_per_block
        self.blocks = words.view(-1, B, b)  # (P, B, b) embedded bits per payload row
        self.block_majority = (2 * self.blocks.sum(dim=-1) >= b).long()  # (P, B)
        self.hash_words = scheme._words(key)
        self.settings: dict[str, Any] = {}
        self._bias, self._scratch = kernel(_preferred_bias, compile), scratch(compile)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        h = self.scheme.context_width
        rows = input_ids.shape[0]
        if input_ids.shape[1] < h:
            return scores
        if self.blocks.shape[0] not in (1, rows):
            raise ValueError(f"{self.blocks.shape[0]} payloads given for a batch of {rows} rows")
        device = input_ids.device
        if self.blocks.device != device:  # once, not every step
            self.blocks, self.block_majority = self.blocks.to(device), self.block_majority.to(device)
        blocks = self.blocks.expand(rows, -1, -1)
        majority = self.block_majority.expand(rows, -1)
        ctx = self.scheme.context_hash(input_ids[:, -h:], self.hash_words)  # (R,)
        block = self.scheme.block_of(ctx, self.hash_words)  # (R,)
        row = torch.arange(rows, device=device)
        maj = majority[row, block]  # (R,)
        inner = self.scheme.sublist_inner(ctx, block, maj, self.hash_words, torch.int32).unsqueeze(1)  # (R, 1)
        # the b sublists' biases per row: delta where the sublist's bit is the majority
        sublist_bias = (blocks[row, block] == maj.unsqueeze(1)).to(scores.dtype) * self.scheme.delta  # (R, b)
        buffers = self._scratch.take(scores, hashes=torch.int32, index=torch.long, bias=scores.dtype) if self._scratch is not None else {}
        return self._bias(scores, inner, sublist_bias, self.vocab_size, **buffers)


def _preferred_bias(scores: torch.Tensor, inner: torch.Tensor, sublist_bias: torch.Tensor, vocab_size: int,
                    hashes: torch.Tensor | None = None, index: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """Kernel: each token's sublist ``bucket(fold(inner, token))``, then that sublist's bias.

    ``hashes``, ``index``, ``bias``: scratch (:class:`text_wm.kernels.Scratch`), int32, int64
    and float. The lookup is a ``gather`` from the ``(R, b)`` table: with its int64 index it
    measured twice as fast on a CPU as an ``index_select`` with an int32 one.
    """
    vocab = torch.arange(scores.shape[-1], dtype=torch.int32, device=scores.device)
    sublists = bucket(h := fold_top16(inner, vocab, out=hashes), sublist_bias.shape[1], out=h)
    index = sublists.long() if index is None else index.copy_(sublists)
    return add_bias(scores, torch.gather(sublist_bias, 1, index, out=bias), vocab_size)


@dataclass(frozen=True)
class MajorMark(_MajorityWatermark):
    """MajorMark: the whole ``L``-bit word is one block; bits come back by two-means clustering."""

    name = "majormark"
    default_delta = DEFAULT_DELTA


@dataclass(frozen=True)
class MajorMarkPlus(_MajorityWatermark):
    """MajorMark+: the word is cut into blocks of ``block_bits`` bits (which must divide ``L``), each
    with its own majority; every block pattern is enumerated to read the bits back, and the test
    sums the dispersion of all blocks and both families."""

    block_bits: int = 8

    name = "majormark+"
    default_delta = DEFAULT_DELTA_BLOCKWISE

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.block_bits <= 12:
            raise ValueError("block_bits must lie in [2, 12] (2**block_bits patterns are enumerated)")
        if self.code_bits % self.block_bits:
            raise ValueError(f"block_bits={self.block_bits} must divide the codeword length {self.code_bits}")

    @property
    def bits_per_block(self) -> int:
        return self.block_bits

    def _check_embeddable(self, word: np.ndarray) -> None:
        """Any word embeds: a constant block is one of the enumerated patterns."""

    def _dispersion_test(self, x2: np.ndarray, counts: torch.Tensor, t: np.ndarray, active: np.ndarray,
                         fpr: float) -> dict[str, Any]:
        dof = int(2 * (self.bits_per_block - 1) * active.sum())
        statistic = float(x2.sum())
        return {"statistic": statistic, "p_value": float(sps.chi2.sf(statistic, dof)),
                "threshold": float(sps.chi2.isf(fpr, dof)), "dof": dof,
                "test": "Pearson chi-square dispersion summed over blocks and both majority families"}

    def _infer_bits(self, counts: torch.Tensor, totals: torch.Tensor) -> tuple[np.ndarray, np.ndarray, dict]:
        """Hard bits and confidences: per block, the best of every ``block_bits``-bit pattern."""
        b = self.bits_per_block
        t = totals.numpy()
        z = score_block_candidates(counts.numpy(), t)  # (B, P)
        patterns, _, _ = block_candidates(b)
        best = z.argmax(axis=1)
        bits = patterns[best]  # (B, b)
        # posterior-like weights over patterns: softmax of z^2/2 for z > 0 (constant patterns excluded)
        logw = np.where(np.isfinite(z), 0.5 * np.maximum(z, 0.0) ** 2, -np.inf)
        weights = np.exp(logw - logw.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        p_one = weights @ patterns  # (B, b)
        agree = np.where(bits == 1, p_one, 1.0 - p_one)
        confidence = np.maximum(2.0 * agree - 1.0, 0.0)
        confidence[t == 0] = 0.0
        return (bits.reshape(-1).astype(np.uint8), confidence.reshape(-1),
                {"block_z": z[np.arange(len(best)), best].tolist()})
