"""SynthID-Text (Dathathri et al., Nature 2024) as transformers ships it, with a frequentist test.

transformers generates SynthID text through ``SynthIDTextWatermarkingConfig`` (``ngram_len``,
one integer key per tournament layer, a sampling table of ``sampling_table_size`` random bits
drawn from ``sampling_table_seed``, ``context_history_size``), and its own detector is a
Bayesian model that must be trained for each key set. This module reads the same config and
tests a text against it with no training:

- g-values are recomputed exactly as transformers computes them (``compute_g_values``): each
  n-gram is hashed with transformers' linear congruential accumulator, each layer's key is
  folded into the hash, and the hash modulo the table size picks a bit of the table;
- the positions transformers' detector masks are masked the same way
  (``compute_context_repetition_mask``: a context already among the last
  ``context_history_size`` contexts; ``compute_eos_token_mask``: from the first end-of-sequence
  token on), and any n-gram seen earlier in the text is masked too (past the history window
  transformers would score it again, but an n-gram's g-values are the same every time it
  occurs, so a repeat is no new evidence);
- H0: the text was not made with this config, so each unmasked n-gram's hash is a fresh
  uniform draw (the random-oracle reading of "g-values are fair coin flips"). For a table size
  that is a power of two, the table index of layer ``d`` is ``((u + key_d) M + 1) mod size``
  with ``u`` the hash modulo the size, so a position's score law is computed exactly by
  enumerating every ``u``: it accounts for the table's actual share of ones and for the
  dependence between layers that the shared ``u`` creates. (Other sizes: the layers' bits are
  taken as independent draws from the table.) A text's score is the sum over its unmasked
  positions, whose exact tail is ``provenance.stats.lattice_sum_tail``.
- two scores, as in the SynthID paper: the mean g-value and the weighted mean with layer
  weights falling linearly from 10 to 1 (integers proportional to them, so the law stays on a
  lattice). The p-value is Bonferroni over the two, ``min(1, 2 min(p_mean, p_weighted))``.

The config is the secret: a ``SynthIDKey`` never shows its keys in a repr, a log or a result
(``key_id`` is a hash of the config). transformers draws the sampling table with a generator on
the generating device; a text generated on a GPU needs ``table_device`` set to that device type.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, SynthIDTextWatermarkingConfig

from provenance import stats
from provenance.files import check_new_output, write_text_atomic
from provenance.readers import MAX_KEY_BYTES, InputError, read_json_file
from provenance.result import DetectionResult, UnscoreableInput
from text_wm.base import TokenInput, as_token_ids, vocab_size_of

MULTIPLIER = 6364136223846793005  # transformers' accumulate_hash: h <- (h + x) * MULTIPLIER + 1 in int64
MAX_TABLE_SIZE = 1 << 24  # transformers' own limit
DEFAULT_DEPTH = 30  # the SynthID paper's tournament layers
DEFAULT_NGRAM = 5
_FIELDS = {"ngram_len", "keys", "context_history_size", "sampling_table_seed", "sampling_table_size",
           "skip_first_ngram_calls", "debug_mode", "table_device"}


class SynthIDConfigError(InputError):
    """A SynthID config file is missing, unreadable or malformed (never quotes the keys)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthIDKey:
    """transformers' ``SynthIDTextWatermarkingConfig`` fields; ``keys`` (one per layer) are the secret."""

    keys: tuple[int, ...] = field(repr=False)
    ngram_len: int = DEFAULT_NGRAM
    context_history_size: int = 1024
    sampling_table_seed: int = 0
    sampling_table_size: int = 1 << 16
    skip_first_ngram_calls: bool = False
    table_device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.keys or not all(_is_int(k) and -(1 << 63) <= k < (1 << 63) for k in self.keys):
            raise ValueError("keys must be a non-empty list of 64-bit integers, one per layer")
        if not _is_int(self.ngram_len) or not 1 <= self.ngram_len <= 64:
            raise ValueError("ngram_len must be an integer from 1 to 64")
        if not _is_int(self.context_history_size) or self.context_history_size < 1:
            raise ValueError("context_history_size must be a positive integer")
        if not _is_int(self.sampling_table_size) or not 2 <= self.sampling_table_size <= MAX_TABLE_SIZE:
            raise ValueError(f"sampling_table_size must be an integer from 2 to {MAX_TABLE_SIZE}")
        if not _is_int(self.sampling_table_seed) or not 0 <= self.sampling_table_seed < (1 << 64):
            raise ValueError("sampling_table_seed must be a non-negative 64-bit integer")
        if not isinstance(self.skip_first_ngram_calls, bool):
            raise ValueError("skip_first_ngram_calls must be true or false")
        if self.table_device not in ("cpu", "cuda"):
            raise ValueError("table_device must be cpu or cuda")

    @classmethod
    def generate(cls, depth: int = DEFAULT_DEPTH, ngram_len: int = DEFAULT_NGRAM) -> "SynthIDKey":
        """A fresh config with ``depth`` random layer keys (from ``secrets``)."""
        return cls(keys=tuple(secrets.randbelow(1 << 31) for _ in range(depth)), ngram_len=ngram_len)

    @property
    def depth(self) -> int:
        return len(self.keys)

    @property
    def key_id(self) -> str:
        """A public id: a hash of the whole config, so two configs that watermark differently differ."""
        return hashlib.sha256(b"synthid-config|" + json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def public_settings(self) -> dict[str, Any]:
        """Everything but the keys: what a result or a record may show."""
        return {name: value for name, value in self.to_dict().items() if name != "keys"} | {"depth": self.depth}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keys": list(self.keys)}

    def transformers_config(self) -> SynthIDTextWatermarkingConfig:
        """The config to pass to ``model.generate(watermarking_config=...)``."""
        return SynthIDTextWatermarkingConfig(
            ngram_len=self.ngram_len, keys=list(self.keys), context_history_size=self.context_history_size,
            sampling_table_seed=self.sampling_table_seed, sampling_table_size=self.sampling_table_size,
            skip_first_ngram_calls=self.skip_first_ngram_calls)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """transformers' ``to_json_file`` layout (plus ``table_device``), mode 0600, atomic, never over a file."""
        path = check_new_output(path, overwrite)
        write_text_atomic(path, json.dumps({**self.to_dict(), "debug_mode": False}, indent=2, sort_keys=True) + "\n",
                          mode=0o600)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SynthIDKey":
        """A config as transformers' ``to_json_file`` writes it; every failure a ``SynthIDConfigError``."""
        try:
            data = read_json_file(path, MAX_KEY_BYTES, "SynthID config")
        except InputError as exc:
            raise SynthIDConfigError(exc.source, exc.problem) from None
        if not isinstance(data, dict):
            raise SynthIDConfigError(path, "not a SynthID config (expected a JSON object)")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise SynthIDConfigError(path, f"unknown SynthID config field {unknown[0][:40]!r}")
        if data.get("debug_mode", False) is not False:
            raise SynthIDConfigError(path, "debug_mode replaces the model's logits: not a watermark config")
        values = {name: value for name, value in data.items() if name != "debug_mode"}
        if not isinstance(values.get("keys"), list):
            raise SynthIDConfigError(path, "keys must be a list of integers, one per layer")
        try:
            return cls(**{**values, "keys": tuple(values["keys"])})
        except (TypeError, ValueError) as exc:
            raise SynthIDConfigError(path, str(exc).split(" (")[0]) from None

    def table(self) -> torch.Tensor:
        """The sampling table (int64 bits) exactly as transformers draws it, on the CPU."""
        return _sampling_table(self.sampling_table_seed, self.sampling_table_size, self.table_device)


@functools.lru_cache(maxsize=8)
def _sampling_table(seed: int, size: int, device: str) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, 2, (size,), generator=generator, device=device).cpu()


def _accumulate(hashes: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """transformers' ``accumulate_hash``: fold the last axis of ``data`` into int64 ``hashes`` (wrapping)."""
    for i in range(data.shape[-1]):
        hashes = (hashes + data[..., i]) * MULTIPLIER + 1
    return hashes


def layer_weights(depth: int) -> np.ndarray:
    """Integer weights proportional to the paper's ``linspace(10, 1, depth)`` (all ones for one layer)."""
    if depth == 1:
        return np.ones(1, dtype=np.int64)
    weights = 10 * (depth - 1) - 9 * np.arange(depth, dtype=np.int64)
    return weights // np.gcd.reduce(weights)


@dataclass(frozen=True)
class GValues:
    """One text's g-values ``(positions, depth)`` and the mask of positions that count."""

    g: np.ndarray
    mask: np.ndarray
    masked_context: int  # positions transformers masks (repeated context or end-of-sequence)
    masked_ngram: int  # further positions whose whole n-gram occurred earlier


def _ngram_hashes(ids: torch.Tensor, n: int) -> torch.Tensor:
    """transformers' hash of each n-gram of 1-D token ids (``len - n + 1`` of them)."""
    ngrams = ids.long().unfold(0, n, 1)
    return _accumulate(torch.ones(len(ngrams), dtype=torch.long), ngrams)


def g_values(ids: torch.Tensor, key: SynthIDKey) -> torch.Tensor:
    """``(len - ngram_len + 1, depth)`` g-values of 1-D token ids, as transformers' ``compute_g_values``."""
    return _table_bits(_ngram_hashes(ids, key.ngram_len), key)


def _table_bits(hashes: torch.Tensor, key: SynthIDKey) -> torch.Tensor:
    """Each layer's key folded into each n-gram hash, the table bit at the result modulo the table size."""
    layer_keys = torch.tensor(key.keys, dtype=torch.long)
    indices = torch.remainder((hashes[:, None] + layer_keys[None, :]) * MULTIPLIER + 1, key.sampling_table_size)
    return key.table()[indices]


def _seen_before(values: torch.Tensor, window: int | None) -> torch.Tensor:
    """Bool per position: the same value occurred at one of the ``window`` positions before (any, if None)."""
    order = torch.sort(values, stable=True).indices
    ranked = values[order]
    same = torch.zeros(len(values), dtype=torch.bool)
    previous = torch.full((len(values),), -1, dtype=torch.long)
    if len(values) > 1:
        same[1:] = ranked[1:] == ranked[:-1]
        previous[1:] = torch.where(same[1:], order[:-1], -1)
    last = torch.full((len(values),), -1, dtype=torch.long)
    last[order] = previous
    seen = last >= 0
    if window is not None:
        seen &= last >= torch.arange(len(values)) - window
    return seen


def scored_g_values(ids: torch.Tensor, key: SynthIDKey, eos_token_id: int | None = None) -> GValues:
    """g-values and the mask transformers' detector uses, plus repeated n-grams masked (module docstring)."""
    n = key.ngram_len
    if ids.numel() < n:
        raise UnscoreableInput(f"SynthID needs at least {n} tokens (one {n}-gram), got {ids.numel()}")
    ngram_hashes = _ngram_hashes(ids, n)
    g = _table_bits(ngram_hashes, key)
    positions = len(g)
    contexts = _accumulate(torch.ones(positions, dtype=torch.long), ids[:-1].unfold(0, n - 1, 1)) if n > 1 \
        else torch.ones(positions, dtype=torch.long)
    repeated = _seen_before(contexts, key.context_history_size)
    repeated |= (contexts == 0) & (torch.arange(positions) < key.context_history_size)  # transformers' zero-filled history
    if eos_token_id is not None:
        hits = torch.nonzero(ids == eos_token_id)
        if len(hits):
            repeated |= torch.arange(positions) + n - 1 >= int(hits[0, 0])
    again = _seen_before(ngram_hashes, None) & ~repeated
    mask = ~(repeated | again)
    return GValues(g.numpy(), mask.numpy(), int(repeated.sum()), int(again.sum()))


@functools.lru_cache(maxsize=16)
def _position_laws(key: SynthIDKey) -> tuple[np.ndarray, np.ndarray]:
    """Exact laws of one position's plain and weighted g-value sums under H0 (module docstring)."""
    table = key.table().numpy().astype(np.int64)
    size, weights = key.sampling_table_size, layer_weights(key.depth)
    laws = []
    for w in (np.ones(key.depth, dtype=np.int64), weights):
        if size & (size - 1) == 0:
            u = np.arange(size, dtype=np.uint64)
            totals = np.zeros(size, dtype=np.int64)
            for d, layer_key in enumerate(key.keys):
                index = ((u + np.uint64(layer_key % (1 << 64))) * np.uint64(MULTIPLIER) + np.uint64(1)) % np.uint64(size)
                totals += w[d] * table[index.astype(np.int64)]
            law = np.bincount(totals, minlength=int(w.sum()) + 1) / size
        else:
            law = np.ones(1)
            share = table.mean()
            for weight in w:
                bit = np.zeros(int(weight) + 1)
                bit[0], bit[-1] = 1 - share, share
                law = np.convolve(law, bit)
        laws.append(law)
    return laws[0], laws[1]


@dataclass(frozen=True)
class SynthIDText:
    """The SynthID-Text scheme: generation through transformers' config, detection with exact p-values.

    Keyless like every scheme here: the ``SynthIDKey`` (the config) arrives per call.
    """

    name: str = "synthid"

    def generate_options(self, key: SynthIDKey) -> dict[str, Any]:
        """What ``model.generate`` takes to watermark through transformers' own code path."""
        return {"watermarking_config": key.transformers_config()}

    def processor(self, key: SynthIDKey, vocab: Any, device: str | torch.device = "cpu") -> LogitsProcessor:
        """transformers' own logits processor for ``key`` (for a processor list of your own)."""
        return key.transformers_config().construct_processor(vocab_size=vocab_size_of(vocab), device=torch.device(device))

    def detect(self, tokens: TokenInput, key: SynthIDKey, tokenizer: Any = None, *,
               fpr: float = 0.01) -> DetectionResult:
        return self.detect_batch([tokens], key, tokenizer, fpr=fpr)[0]

    def detect_batch(self, texts: Sequence[TokenInput], key: SynthIDKey, tokenizer: Any = None, *,
                     fpr: float = 0.01) -> list[DetectionResult]:
        """Test each text (ids, or text with the generating ``tokenizer``) against ``key``'s config."""
        fpr = stats.check_fpr(fpr)
        plain_law, weighted_law = _position_laws(key)
        weights = layer_weights(key.depth)
        eos = getattr(tokenizer, "eos_token_id", None)
        results = []
        for text in texts:
            values = scored_g_values(as_token_ids(text, tokenizer), key, eos)
            scored = values.g[values.mask]
            count = len(scored)
            if count == 0:
                raise UnscoreableInput("every n-gram of the text repeats an earlier context: nothing to score")
            plain, weighted = int(scored.sum()), int((scored * weights).sum())
            p_mean = stats.lattice_sum_tail(plain_law, count, plain)
            p_weighted = stats.lattice_sum_tail(weighted_law, count, weighted)
            p_value = min(1.0, 2.0 * min(p_mean, p_weighted))
            results.append(DetectionResult(
                detected=p_value <= fpr, p_value=p_value, score=-math.log10(max(p_value, 1e-300)),
                threshold=-math.log10(fpr), fpr=fpr, scheme=self.name, key_id=key.key_id,
                details={"null": "unmasked n-gram hashes are fresh uniform draws (g-values are the table's coin flips)",
                         "test": "exact tails of the mean and weighted-mean g-value sums, Bonferroni over the two",
                         "mean_score": plain / (count * key.depth), "weighted_mean_score": weighted / (count * weights.sum()),
                         "p_value_mean": p_mean, "p_value_weighted": p_weighted, "scored_positions": count,
                         "masked_repeated_context": values.masked_context, "masked_repeated_ngram": values.masked_ngram,
                         **key.public_settings()}))
        return results
