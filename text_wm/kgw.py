"""KGW green-list watermark (Kirchenbauer et al., ICML 2023) with vectorised detection.

Generation adds ``delta`` to the logits of "green" tokens; a token is green for its
context when a keyed hash of (context, token) falls below ``gamma``. Detection counts
green tokens among the distinct scored n-grams and tests against Binomial(T, gamma).

Where this departs from the reference, and why:
- Green membership is a keyed integer hash of (context, token) instead of a
  ``torch.randperm`` seeded per context. Each token is green with probability exactly
  ``gamma`` independently over the key, so the null distribution is exact, detection is
  a few array operations over all tokens of all texts at once, and the lists are the
  same on CPU and GPU (the reference's differ by device).
- ``selfhash`` (anchored min-hash over the window and the candidate itself) is computed
  for the whole vocabulary each step, so no top-40 rejection loop is needed: every
  candidate's green status is exact.
- The p-value is the exact binomial tail; the z-score is reported as the score (and its
  normal-approximation p-value in ``details``).

Null hypothesis of ``detect``: the text was written without knowledge of the key, so each
distinct (seed, token) pair among the scored positions is green independently with
probability gamma. Counting distinct pairs rather than distinct n-grams matters for
``selfhash``: its min-hash seed is often shared by different n-grams (the reason it
survives reordering), and counting those twice would inflate the z-score.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import LogitsProcessor

from provenance import stats
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult, UnscoreableInput
from text_wm.base import TokenInput, as_token_ids, vocab_size_of
from text_wm.hashing import (
    below, below_, combine, context_windows, fill_like, fold, key_words, keyed, to_bits, unsigned_min, window_hash, word_bits,
)
from text_wm.kernels import add_bias, kernel, scratch

Seeding = Literal["lefthash", "selfhash"]


@dataclass(frozen=True)
class KGW:
    """Configuration of a KGW watermark; the key is passed to each call."""

    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1
    seeding: Seeding = "lefthash"
    ignore_repeated_ngrams: bool = True
    name: str = "kgw"

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie strictly between 0 and 1")
        if self.context_width < 1:
            raise ValueError("context_width must be at least 1")
        if self.seeding not in ("lefthash", "selfhash"):
            raise ValueError(f"unknown seeding scheme {self.seeding!r} (use lefthash or selfhash)")

    # -- the keyed green test ---------------------------------------------------------
    def prf_seed(self, key: WatermarkKey, windows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The 32-bit seed that decides a target's colour for its context.

        ``windows``: (..., width) token ids; ``targets``: (...) token ids. ``lefthash``
        seeds depend on the window alone and keep its shape (they broadcast against
        ``targets``; not expanding them keeps generation at one hash per context); ``selfhash``
        seeds have the broadcast shape of both. A token's colour
        is a hash of (seed, token), so two scored positions with equal (seed, token) are
        one draw, not two: detection counts each such pair once.
        """
        w = key_words(key, f"kgw-{self.seeding}")
        if self.seeding == "lefthash":
            acc = window_hash(windows, w[0], w[1])
            return to_bits(acc) if windows.dtype == torch.int32 else acc
        # selfhash: anchored min-hash over the window and the candidate itself, anchored on the candidate.
        # Each member's own hash depends on the member alone: hash before broadcasting.
        member_hash = [combine(fill_like(t, w[0]), t, w[1]) for t in (windows, targets.unsqueeze(-1))]
        hashes = torch.cat(torch.broadcast_tensors(*member_hash), dim=-1)
        return unsigned_min(combine(hashes, targets.unsqueeze(-1), w[2]), dim=-1)

    def green_hash(self, seed: torch.Tensor, targets: torch.Tensor, key: WatermarkKey) -> torch.Tensor:
        return combine(seed, targets, key_words(key, "kgw-colour")[0])

    def _threshold(self) -> int:
        return int(self.gamma * 2**32)

    def green_mask(self, key: WatermarkKey, windows: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(B, width) context windows -> (B, V) boolean green mask: the detector's hashing, vocabulary-wide.

        The reference the generation kernels are tested against (they must equal it bit for bit).
        """
        vocab = torch.arange(vocab_size, dtype=torch.int32, device=windows.device).unsqueeze(0)
        seed = self.prf_seed(key, windows.to(torch.int32).unsqueeze(1), vocab)
        return below(self.green_hash(seed, vocab, key), self._threshold())

    # -- generation -------------------------------------------------------------------
    def processor(self, key: WatermarkKey, vocab: Any, *, compile: bool = False) -> "KGWLogitsProcessor":
        """A logits processor for ``model.generate``; ``compile=True`` fuses it (see ``text_wm.kernels``)."""
        return KGWLogitsProcessor(self, key, vocab_size_of(vocab), compile=compile)

    # -- detection --------------------------------------------------------------------
    def detect(
        self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, *, fpr: float = 0.01
    ) -> DetectionResult:
        return self.detect_batch([tokens], key, tokenizer, fpr=fpr)[0]

    def detect_batch(
        self, texts: list[TokenInput], key: WatermarkKey, tokenizer: Any = None, *, fpr: float = 0.01,
        device: str | torch.device | None = None,
    ) -> list[DetectionResult]:
        """Score many texts in one vectorised pass (all n-grams of all texts hashed together)."""
        id_lists = [as_token_ids(t, tokenizer) for t in texts]
        h = self.context_width
        for ids in id_lists:
            if ids.numel() <= h:
                raise UnscoreableInput(f"text too short to score: needs more than {h} token(s)")
        device = torch.device(device) if device is not None else torch.device("cpu")
        windows = torch.cat([context_windows(ids, h) for ids in id_lists]).to(device)
        targets = torch.cat([ids[h:] for ids in id_lists]).to(device)
        owner = torch.repeat_interleave(
            torch.arange(len(id_lists), device=device),
            torch.tensor([ids.numel() - h for ids in id_lists], device=device),
        )
        seed = self.prf_seed(key, windows, targets)
        green = below(self.green_hash(seed, targets, key), self._threshold())
        keep = (
            _first_occurrences(owner, seed, targets)
            if self.ignore_repeated_ngrams
            else torch.ones_like(green)
        )
        n_texts = len(id_lists)
        scored = torch.bincount(owner[keep], minlength=n_texts).cpu().numpy()
        greens = torch.bincount(owner[keep & green], minlength=n_texts).cpu().numpy()
        z, p_normal = stats.z_test(greens, scored, self.gamma)
        p_values = stats.binomial_tail(greens, scored, self.gamma)
        return [
            self._result(int(g), int(t), float(zz), float(pn), float(p), key, fpr)
            for g, t, zz, pn, p in zip(greens, scored, np.atleast_1d(z), np.atleast_1d(p_normal), np.atleast_1d(p_values))
        ]

    def _result(
        self, green: int, scored: int, z: float, p_normal: float, p_value: float, key: WatermarkKey, fpr: float
    ) -> DetectionResult:
        threshold = _binomial_threshold(scored, fpr, self.gamma)
        z_threshold = (threshold - self.gamma * scored) / math.sqrt(max(scored * self.gamma * (1 - self.gamma), 1e-12))
        return DetectionResult(
            detected=bool(p_value <= fpr),
            p_value=p_value,
            score=z,
            threshold=float(z_threshold),
            fpr=fpr,
            scheme=self.name,
            key_id=key.key_id,
            details={
                "n_scored": scored,
                "n_green": green,
                "green_fraction": green / scored if scored else 0.0,
                "p_value_normal": p_normal,
                "test": "exact binomial tail of green (seed, token) pairs, H0: Bin(n_scored, gamma)",
                "gamma": self.gamma,
                "seeding": self.seeding,
                "context_width": self.context_width,
            },
        )


@functools.lru_cache(maxsize=4096)
def _binomial_threshold(scored: int, fpr: float, gamma: float) -> int:
    """Green count at which a text of ``scored`` pairs is flagged (cached: texts share lengths)."""
    return stats.binomial_threshold(scored, fpr, gamma)


def _first_occurrences(owner: torch.Tensor, seed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mask of the first occurrence of each distinct (text, seed, target) triple.

    (seed, target) packs exactly into one int64 (seed < 2**32, target < 2**31); stable
    sorts then group equal triples per text without hashing or a Python loop.
    """
    ident = (seed << 31) | targets
    order = torch.argsort(ident, stable=True)
    if owner.numel() and bool(owner[-1] != owner[0]):
        order = order[torch.argsort(owner[order], stable=True)]
    sorted_owner, sorted_ident = owner[order], ident[order]
    new = torch.ones_like(sorted_owner, dtype=torch.bool)
    new[1:] = (sorted_owner[1:] != sorted_owner[:-1]) | (sorted_ident[1:] != sorted_ident[:-1])
    keep = torch.empty_like(new)
    keep[order] = new
    return keep


class KGWLogitsProcessor(LogitsProcessor):
    """Adds ``delta`` to the green tokens of each row's current context.

    Per step, the key-dependent hashing of each row's context runs here on ``(rows, width)``
    ids; the vocabulary-wide rest is one kernel (:mod:`text_wm.kernels`). The output equals
    ``scheme.green_mask``, the detector's own hashing, bit for bit.
    """

    def __init__(self, scheme: KGW, key: WatermarkKey, vocab_size: int, *, compile: bool = False) -> None:
        self.scheme, self.vocab_size = scheme, vocab_size
        self.settings: dict[str, Any] = {}
        seed_words = key_words(key, f"kgw-{scheme.seeding}")
        colour = key_words(key, "kgw-colour")[0]
        self._threshold = scheme._threshold()
        if scheme.seeding == "lefthash":
            self._seed_words, self._colour = seed_words, colour
            self._bias, self._scratch = kernel(_lefthash_bias, compile), scratch(compile)
        else:
            # combine(combine(w0, m, w1), t, w2) == fold(keyed(fold(c1, m), w2), t) with c1 = keyed(w0, w1)
            c1 = keyed(torch.tensor(seed_words[0], dtype=torch.long), seed_words[1])
            self._seed_words = seed_words
            self._words = word_bits([int(c1), seed_words[2], colour])
            self._bias = kernel(_selfhash_bias, compile)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        h = self.scheme.context_width
        if input_ids.shape[1] < h:
            return scores
        windows = input_ids[:, -h:]
        if self.scheme.seeding == "lefthash":
            seed = window_hash(windows, self._seed_words[0], self._seed_words[1])
            inner = keyed(to_bits(seed), self._colour).unsqueeze(1)  # (R, 1)
            buffers = self._scratch.take(scores, hashes=torch.int32, bias=scores.dtype) if self._scratch is not None else {}
            return self._bias(scores, inner, self.vocab_size, self._threshold, self.scheme.delta, **buffers)
        w = self._seed_words
        members = combine(torch.full_like(windows, w[0]), windows, w[1])  # each window member's own hash
        member_inner = keyed(to_bits(members), w[2])  # (R, h)
        if self._words.device != scores.device:  # moved once, not copied every step
            self._words = self._words.to(scores.device)
        return self._bias(scores, member_inner, self._words, self.vocab_size, self._threshold, self.scheme.delta)


def _green_biased(scores: torch.Tensor, colour: torch.Tensor, threshold: int, vocab_size: int, delta: float,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """``scores + delta`` where green: the colour hash (an int32 temporary, consumed) is below the threshold."""
    green = below_(colour, threshold)
    return add_bias(scores, (green.to(scores.dtype) if bias is None else bias.copy_(green)).mul_(delta), vocab_size)


def _lefthash_bias(scores: torch.Tensor, inner: torch.Tensor, vocab_size: int, threshold: int, delta: float,
                   hashes: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Kernel: a token is green when ``fold(inner, token)`` (its colour hash) is below the threshold.

    ``hashes`` (int32) and ``bias`` (float): scratch (:class:`text_wm.kernels.Scratch`).
    """
    vocab = torch.arange(scores.shape[-1], dtype=torch.int32, device=scores.device)
    return _green_biased(scores, fold(inner, vocab, out=hashes), threshold, vocab_size, delta, bias)


def _selfhash_bias(scores: torch.Tensor, member_inner: torch.Tensor, words: torch.Tensor, vocab_size: int,
                   threshold: int, delta: float) -> torch.Tensor:
    """Kernel: the anchored min-hash seed of (window, candidate) for every candidate, then its colour.

    ``member_inner`` ``(R, h)``: each window member's hash keyed for the anchor; ``words``:
    the bit patterns of ``keyed(w0, w1)``, ``w2`` and the colour word.
    """
    vocab = torch.arange(scores.shape[-1], dtype=torch.int32, device=scores.device)
    own = fold(keyed(fold(words[0], vocab), words[1]), vocab)  # the candidate as its own window member
    anchored = fold(member_inner.unsqueeze(-1), vocab)  # (R, h, V)
    seed = unsigned_min(torch.cat([anchored, own.expand(anchored.shape[0], 1, -1)], dim=1), dim=1)
    return _green_biased(scores, fold(keyed(seed, words[2]), vocab), threshold, vocab_size, delta)
