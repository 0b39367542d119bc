"""EXP and ITS: the distortion-free watermarks of Kuditipudi, Thickstun, Hashimoto and Liang
("Robust distortion-free watermarks", TMLR 2024).

Both replace the sampler by a deterministic function of the next-token distribution and a
secret key sequence of ``n = key_length`` positions; generation ``g`` starts at a random
key position (its *shift*) and step ``i`` uses key position ``j = (shift + i) mod n``:

- EXP (exponential minimum sampling): ``xi ~ U[0,1]^{n x V}``; the token is
  ``argmax_v log(xi[j, v]) / p_v`` (computed as the equivalent Gumbel-max
  ``argmax_v log p_v - log(-log xi[j, v])``, which never picks a token with ``p_v = 0``).
- ITS (inverse transform sampling): a vocabulary permutation ``pi`` and ``u ~ U[0,1]^n``;
  the token is the first one in ``pi``-order whose cumulative probability exceeds ``u[j]``.

Over the key's randomness each token is an exact draw from ``p``, so text quality is
untouched. Detection aligns the text with the key sequence.

Convention (both methods): LOWER cost and LOWER statistic = MORE watermarked.

- EXP cost ``C[i, j] = log(1 - xi[j, y_i])`` (<= 0; a watermarked token has a large ``xi``).
- ITS cost ``C[i, j] = |u[j] - eta(y_i)|`` with ``eta(y) = rank_pi(y) / (V - 1)`` (a
  watermarked token's normalised rank tracks ``u``), as in the authors' reference code.
  The paper's plain ITS statistic is the centred inner product ``(u - 1/2)(eta - 1/2)``;
  inside the edit alignment it was measured far less robust (SmolLM2, 100 tokens, 20%
  insertions+deletions: 15% detected at its best gap cost, against 80% with ``|u - eta|``,
  at equal or better robustness to substitutions), so both ITS statistics use ``|u - eta|``.

Statistics (see :mod:`text_wm.alignment`): *plain* = min over the n cyclic shifts of the
summed costs; *edit-robust* = one alignment of the text against the key as a ring (free
start and end, wrapping as generation does) with gap cost ``gamma`` for insertions and deletions.

p-values: a permutation test against ``T = n_resamples`` resampled keys,
``p = (1 + #{null <= observed}) / (T + 1)``. Under H0 (the text does not depend on the
key) the observed costs and every resampled key's costs are exchangeable, so
``P[p <= a] <= a`` for any text, over the key's randomness. Only the key's entries at the
text's tokens matter: EXP draws ``(T, n_unique_tokens, n)`` i.i.d. uniforms; ITS keeps the
key's ``u`` and draws random distinct ranks for the unique tokens (a fresh permutation),
which makes its test exact given ``u`` too: on random-token texts checked against one
fixed key the p-values were measured uniform, whereas resampling ``u`` as well gave 30%
instead of 49% at ``p <= 0.5`` (the FPR over many texts for one deployed key matters).
The draws come from a generator seeded by the key and the token sequence, so detection is
reproducible.

A permutation p-value can never fall below ``1 / (T + 1)``, so a platform asking for
``fpr=1e-6`` could never flag anything. EXP's plain statistic also has an exact analytic tail
(``_analytic_p_value``: Gamma tails, Bonferroni over the key's shifts) that goes as low as the
text's evidence allows, and EXP's p-value is the weighted Bonferroni combination of the two,
``min(1, p_perm / w, p_analytic / (1 - w))`` with ``w = T / (T + 1)``: valid under H0 for any
dependence between them (``P[reject] <= w a + (1 - w) a = a``), the permutation part keeps its
floor (``1 / T`` instead of ``1 / (T + 1)``, so the default 100 resamples still decide at 1%),
and an unedited watermarked text gets the analytic part's small p-value. Edited texts, which only
the edit-robust statistic finds, stay at the permutation floor. ``details`` keeps both parts
(``p_value_permutation``, ``p_value_analytic``); ``threshold`` is the permutation part's, at
``w * fpr``. ITS has no analytic tail and reports the permutation p-value.

EXP scores each distinct token once, at its first occurrence; a repeat keeps its place in the
alignment with a constant, key-free cost (``neutral_cost``, the cost's mean under H0). Why:
the test above is exact over the key's draw, but one deployed key is fixed, and the columns
it gives the commonest tokens (",", " the", ".") are shared by every text. Scored at every
occurrence, they made the flag rate of one key on one population of texts a matter of
luck: on 100 unwatermarked SmolLM2 generations, 20 keys flagged between 0 and 10 of them at
p <= 0.01 (32 at p <= 0.05 for the worst key), 6.4% of all (text, key) pairs at 0.05.
Scored once, the same 20 keys flagged 0-4 at 0.01 and 1-9 at 0.05, 4.8% at 0.05 overall
(as KGW ignores repeated n-grams, and for the same reason). ITS keeps scoring every
occurrence (``scores_repeats``): scored once, its TPR at p <= 0.01 after 30% random edits of
200-token generations fell from 0.88 to 0.57 (measured together with the ring alignment, the
two not separated), and its per-key spread has not been measured.

Gap cost defaults (``gamma``), chosen by measurement on SmolLM2-135M (20 generations of
100 tokens, random token substitutions up to 75% and insertions+deletions up to 80%):
EXP 2.0, ITS 0.6. Smaller gaps lose power against substitutions, larger ones against
insertions and deletions (the statistic then tends to the plain one). With a free end
``gamma`` must be positive, otherwise the alignment could skip key positions for free and
pick the best key entry for every token.

Generation: ``processor(key, vocab)`` returns a ``transformers.LogitsProcessor`` that sets
every score to ``-inf`` except the token the sampler picked, so greedy and sampling
``generate`` both emit exactly that token. Note: current transformers versions apply
their temperature/top-k/top-p warpers AFTER user processors, so the ``generate`` flags
``temperature``/``top_k``/``top_p`` do not shape the watermark's distribution. To sample
from a warped distribution, put the warpers before the processor in the list you pass,
e.g. ``LogitsProcessorList([TemperatureLogitsWarper(0.7), scheme.processor(key, tok)])``.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats as sps
from tqdm.auto import tqdm
from transformers import LogitsProcessor

from provenance.device import resolve_device
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult
from provenance.stats import empirical_p_value, threshold_for_fpr
from text_wm.alignment import alignment_statistics
from text_wm.base import TokenInput, as_token_ids, vocab_size_of

MAX_BATCH_ELEMENTS = 1 << 24
ITS_BLOCK = 256  # tokens per block of ITS's two-level inverse-CDF search
"""Cost-tensor elements (batch x unique tokens x key length) per DP batch: 64 MiB in float32."""

NULL_DRAW_CHUNK = 128
"""Resampled keys drawn per call to the generator (fixed, so results never depend on batching)."""

WINDOW_TOKENS = 2048
"""Default longest text scored whole; longer texts are tested on windows (see ``_KeySequenceWatermark``)."""
MAX_WINDOWS = 3
"""Default most windows tested per text."""

_CACHE_SIZE = 2
_TABLE_CACHE: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _device_tag(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _tokens_bytes(tokens: torch.Tensor) -> bytes:
    return np.ascontiguousarray(tokens.numpy().astype("<i8")).tobytes()


def _distinct_ranks(generator: torch.Generator, count: int, size: int, population: int) -> torch.Tensor:
    """``(count, size)``: per row, the first ``size`` entries of a uniform random permutation of ``population``.

    Floyd's algorithm draws a uniform ``size``-subset in ``size`` vectorised steps (no
    ``randperm`` of the whole vocabulary per resample, which costs ~3 ms each), then a
    random shuffle gives it a uniform order.
    """
    chosen = torch.empty(count, size, dtype=torch.long)
    for step, top in enumerate(range(population - size, population)):
        draw = (torch.rand(count, generator=generator, dtype=torch.float64) * (top + 1)).long().clamp_max(top)
        taken = (chosen[:, :step] == draw[:, None]).any(dim=1)
        chosen[:, step] = torch.where(taken, torch.full_like(draw, top), draw)
    order = torch.rand(count, size, generator=generator).argsort(dim=1)
    return chosen.gather(1, order)


def _first_occurrences(inverse: torch.Tensor) -> torch.Tensor:
    """``(m,)`` mask of the positions where each distinct token (its ``inverse`` id) first occurs."""
    m = inverse.numel()
    first_position = torch.full((int(inverse.max()) + 1,), m, dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(m), reduce="amin")
    mask = torch.zeros(m, dtype=torch.bool)
    mask[first_position] = True
    return mask


class KeySequenceProcessor(LogitsProcessor):
    """Forces the token EXP or ITS sampling picks; one key shift per batch row.

    ``shifts``: ``None`` draws one shift per row with ``secrets.randbelow(n)`` at the first
    call of each generation; an ``int`` uses that shift for every row; a sequence gives one
    shift per row (a single-element sequence is used for every row). ``processor.shifts``
    holds the shifts in use (store them with the generation record). The prompt length is
    recorded at the first call; a call whose input is not exactly one token longer than the
    previous one starts a new generation (random shifts are then redrawn). A processor reused
    for a prompt exactly one token longer than the last call's input cannot tell; call
    ``reset()`` between generations when reusing one.
    """

    def __init__(
        self,
        scheme: "_KeySequenceWatermark",
        key: WatermarkKey,
        vocab_size: int,
        shifts: int | Sequence[int] | None = None,
    ) -> None:
        self.scheme = scheme
        self.vocab_size = vocab_size
        self.key_length = scheme.key_length
        self._key = key
        # drawn now on the CPU (fails early on a bad vocabulary); moved once to the model's device
        self._tables = scheme.key_tables(key, vocab_size, "cpu")
        if shifts is None:
            self._requested: list[int] | None = None
        else:
            requested = [int(shifts)] if isinstance(shifts, (int, np.integer)) else [int(s) for s in shifts]
            if not requested:
                raise ValueError("shifts must not be empty")
            self._requested = [s % self.key_length for s in requested]
        self.shifts: list[int] | None = None
        self._shift_tensor: torch.Tensor | None = None
        self.prompt_length: int | None = None
        self._last_length: int | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """What a generation record keeps: the key shift of each batch row (None before the first call)."""
        return {"key_shift": None if self.shifts is None else list(self.shifts)}

    def reset(self) -> None:
        """Forget the prompt length (and random shifts) so the next call starts a new generation."""
        self.prompt_length = self._last_length = None
        self.shifts = self._shift_tensor = None

    def _start(self, batch: int, length: int, device: torch.device) -> None:
        self.prompt_length = length
        if self._requested is None:
            shifts = [secrets.randbelow(self.key_length) for _ in range(batch)]
        elif len(self._requested) == 1:
            shifts = self._requested * batch
        elif len(self._requested) == batch:
            shifts = list(self._requested)
        else:
            raise ValueError(f"got {len(self._requested)} shifts for a batch of {batch} rows")
        self.shifts = shifts
        self._shift_tensor = torch.tensor(shifts, dtype=torch.long, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        device = scores.device
        new_generation = (
            self.prompt_length is None
            or length != self._last_length + 1
            or self.shifts is None
            or len(self.shifts) != batch
        )
        if new_generation:
            self._start(batch, length, device)
        self._last_length = length
        if self._shift_tensor.device != device:
            self._shift_tensor = self._shift_tensor.to(device)
        if next(iter(self._tables.values())).device != device:  # the scheme's cache keeps one copy per device
            self._tables = self.scheme.key_tables(self._key, self.vocab_size, device)
        step = length - self.prompt_length
        rows = (self._shift_tensor + step) % self.key_length
        logits = scores.float()
        width, vocab = logits.shape[-1], self.vocab_size
        if width >= vocab:  # padded model vocabularies: ids beyond the key never get chosen
            logits = logits[:, :vocab]
        else:
            logits = torch.cat([logits, logits.new_full((batch, vocab - width), float("-inf"))], dim=-1)
        tokens = self.scheme.choose(self._tables, logits, rows)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, tokens[:, None], 0.0)
        return forced


@dataclass
class _Prepared:
    """One text's unique tokens, row map and null generator, ready for batching."""

    index: int
    tokens: torch.Tensor  # (m,)
    rows: torch.Tensor  # (m,) each position's cost row: its token's first occurrence, or the neutral last row
    observed: torch.Tensor  # (U + 1, n) observed-key costs of the unique tokens and the neutral row
    generator: torch.Generator
    resamples: int  # resampled keys for this unit (a whole text, or one window of a long text)


@dataclass(frozen=True)
class _KeySequenceWatermark:
    """Shared configuration and machinery of EXP and ITS; subclasses give the sampler and costs.

    ``gamma=None`` takes the method's measured default; ``device=None`` resolves with
    :func:`provenance.device.resolve_device` (``$PROVENANCE_DEVICE``, then cuda/mps/cpu).

    Long texts (``window_tokens``, ``max_windows``): detection costs grow with the number
    of tokens times the number of keys tested, and faster than linearly once a text has
    thousands of distinct tokens, so a text is never scored whole beyond ``window_tokens``
    tokens. The rule:

    - ``m <= window_tokens`` tokens: the whole text is one window, scored exactly as
      without this rule (same p-value, same details apart from the three keys below).
    - otherwise the text is tested on ``k = min(max_windows, ceil(m / window_tokens))``
      non-overlapping windows: if ``m <= k * window_tokens`` they cut the whole text into
      ``k`` contiguous near-equal parts (every token scored); if it is longer, ``k`` windows
      of ``window_tokens`` tokens are spread evenly from its start to its end (the first
      window starts at token 0, the last ends at token m) and the tokens between them are
      not scored. Spread rather than the first ``k``: a watermarked passage may sit
      anywhere in a long document (pasted in, or appended to a human text), and evenly
      spaced windows sample every region of it at the same cost.
    - each window is detected as if it were a text on its own (its own null draws,
      seeded by its tokens) with ``k * (T + 1) - 1`` resampled keys, ``T`` the requested
      ``n_resamples``; the text's p-value is the Bonferroni-adjusted minimum
      ``min(1, k * min_w p_w)``. Bonferroni holds under any dependence between the
      windows, so the p-value stays valid however long the text is; the extra resamples
      keep its smallest attainable value at ``1 / (T + 1)``, as for a short text
      (otherwise ``k`` windows at 100 resamples could never go below ``k / 101``).
      ``score``, ``threshold`` and the per-text statistics in ``details`` are those of the
      window with the smallest p-value (its threshold at ``fpr / k``, so
      ``detected`` iff ``score < threshold`` still holds); ``p_value_plain`` and
      ``p_value_analytic`` are Bonferroni-adjusted the same way.

    The work is therefore at most ``max_windows ** 2 * window_tokens * (T + 1)`` token-key
    alignments whatever the text's length (the cost of the defaults is measured in
    ``docs/text.md``). ``details`` records ``tokens_total``, ``tokens_scored``, ``windows``,
    and for more than one window ``window_starts``, ``window_lengths``,
    ``window_p_values`` and ``best_window``.
    """

    key_length: int = 256
    gamma: float | None = None
    n_resamples: int = 100
    device: str | None = None
    window_tokens: int = WINDOW_TOKENS
    max_windows: int = MAX_WINDOWS

    name: ClassVar[str]
    default_gamma: ClassVar[float]
    neutral_cost: ClassVar[float]
    """The key-free cost of a repeated token's position: the mean cost under H0."""
    scores_repeats: ClassVar[bool]
    """Whether every occurrence of a token is scored, or only its first (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.key_length < 1:
            raise ValueError("key_length must be positive")
        if self.gamma is not None and not self.gamma > 0:
            raise ValueError("gamma must be positive")
        if self.n_resamples < 1:
            raise ValueError("n_resamples must be positive")
        if self.window_tokens < 1:
            raise ValueError("window_tokens must be positive")
        if self.max_windows < 1:
            raise ValueError("max_windows must be positive")

    def windows(self, n_tokens: int) -> list[tuple[int, int]]:
        """The ``(start, end)`` token ranges scored for a text of ``n_tokens`` tokens (see the class docstring)."""
        size, most = self.window_tokens, self.max_windows
        if n_tokens <= size:
            return [(0, n_tokens)]
        k = min(most, -(-n_tokens // size))
        if n_tokens <= k * size:  # cover the whole text with k near-equal parts
            bounds = [i * n_tokens // k for i in range(k + 1)]
            return list(zip(bounds[:-1], bounds[1:]))
        if k == 1:
            return [(0, size)]
        starts = [i * (n_tokens - size) // (k - 1) for i in range(k)]
        return [(start, start + size) for start in starts]

    @property
    def edit_gamma(self) -> float:
        return float(self.default_gamma if self.gamma is None else self.gamma)

    # -- method-specific parts -----------------------------------------------------------
    def _draw_key(self, generator: torch.Generator, vocab_size: int) -> dict[str, torch.Tensor]:
        """The key tables, drawn from the key's "<name>-key" sub-key generator."""
        raise NotImplementedError

    @staticmethod
    def choose(tables: dict[str, torch.Tensor], logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B,)`` for float32 logits ``(B, V)`` (unnormalised) at key positions ``rows`` ``(B,)``."""
        raise NotImplementedError

    def _key_costs(self, tables: dict[str, torch.Tensor], unique: torch.Tensor) -> torch.Tensor:
        """``(U, n)`` float32 costs of the unique tokens against every key position."""
        raise NotImplementedError

    def _null_costs(
        self, tables: dict[str, torch.Tensor], generator: torch.Generator, count: int, n_unique: int, device: torch.device
    ) -> torch.Tensor:
        """``(count, U, n)`` float32 costs of the unique tokens under ``count`` resampled keys on ``device``.

        Random numbers are drawn on the CPU from ``generator`` (reproducible everywhere).
        """
        raise NotImplementedError

    def _analytic_p_value(self, plain: float, n_tokens: int, n_scored: int) -> float | None:
        return None

    def _with_neutral_row(self, costs: torch.Tensor) -> torch.Tensor:
        """``costs`` ``(..., U, n)`` with the repeats' constant row appended as row ``U`` (if repeats are not scored)."""
        if self.scores_repeats:
            return costs
        neutral = costs.new_full((*costs.shape[:-2], 1, costs.shape[-1]), self.neutral_cost)
        return torch.cat([costs, neutral], dim=-2)

    # -- keys ----------------------------------------------------------------------------
    def key_tables(self, key: WatermarkKey, vocab: Any, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """The key sequence as tensors on ``device`` (drawn on the CPU, cached: LRU of 2 entries)."""
        vocab_size = vocab_size_of(vocab)
        if vocab_size < 2:
            raise ValueError("the vocabulary needs at least two tokens")
        target = resolve_device(device if device is not None else self.device)
        cached = self._cached_tables(key, vocab_size, target)
        if cached is not None:
            return cached
        # another device's copy, if cached, is moved rather than drawn again (the draw is on the CPU)
        cpu = self._cached_tables(key, vocab_size, torch.device("cpu")) if target.type != "cpu" else None
        if cpu is None:
            cpu = self._draw_key(key.generator(f"{self.name}-key", self.key_length, vocab_size)[0], vocab_size)
        tables = {name: t.to(target) for name, t in cpu.items()}
        with _CACHE_LOCK:
            _TABLE_CACHE[self._cache_key(key, vocab_size, target)] = tables
            while len(_TABLE_CACHE) > _CACHE_SIZE:
                _TABLE_CACHE.popitem(last=False)
        return tables

    def _cache_key(self, key: WatermarkKey, vocab_size: int, device: torch.device) -> tuple:
        return self.name, key.key_id, vocab_size, self.key_length, _device_tag(device)

    def _cached_tables(self, key: WatermarkKey, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor] | None:
        cache_key = self._cache_key(key, vocab_size, device)
        with _CACHE_LOCK:
            if cache_key in _TABLE_CACHE:
                _TABLE_CACHE.move_to_end(cache_key)
                return _TABLE_CACHE[cache_key]
        return None

    # -- generation ----------------------------------------------------------------------
    def processor(
        self, key: WatermarkKey, vocab: Any, shifts: int | Sequence[int] | None = None, *, compile: bool = False
    ) -> KeySequenceProcessor:
        """A logits processor for ``model.generate`` (see :class:`KeySequenceProcessor`).

        ``compile`` is accepted for a uniform API and has no effect: the sampler is already a
        couple of passes over the logits, and its compiled form measured no faster (EXP) or
        slower (ITS: scatter-add and softmax lower to scalar loops) on the reference CPU.
        """
        vocab_size = vocab_size_of(vocab)
        return KeySequenceProcessor(self, key, vocab_size, shifts)

    # -- detection -----------------------------------------------------------------------
    def detect(self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, **options: Any) -> DetectionResult:
        """Test whether ``tokens`` (ids, or text with ``tokenizer``) carry this key's watermark.

        ``options`` are :meth:`detect_batch`'s (``vocab``, ``edit_robust``, ``n_resamples``,
        ``fpr``, ``device``, ``progress``). The vocabulary size comes from ``vocab`` (an int or tokenizer),
        else ``tokenizer``. ``score`` is the edit-robust statistic (or the plain one with
        ``edit_robust=False``), lower = more watermarked; ``p_value`` is the permutation
        p-value against ``n_resamples`` fresh keys; ``detected = p_value <= fpr``;
        ``threshold`` is the empirical ``fpr``-quantile of the null statistics in the sense of
        :func:`provenance.stats.threshold_for_fpr` (``detected`` iff ``score < threshold``),
        or ``-inf`` when ``n_resamples`` is too small for ``fpr`` to be attainable.
        """
        return self.detect_batch([tokens], key, tokenizer, **options)[0]

    def detect_batch(
        self,
        texts: Sequence[TokenInput],
        key: WatermarkKey,
        tokenizer: Any = None,
        *,
        vocab: Any = None,
        edit_robust: bool = True,
        n_resamples: int | None = None,
        fpr: float = 0.01,
        device: str | torch.device | None = None,
        progress: bool = False,
    ) -> list[DetectionResult]:
        """:meth:`detect` for many texts; observed and resampled keys of several texts share DP batches.

        Each result equals what :meth:`detect` gives for that text alone. Texts longer than
        ``window_tokens`` are tested on windows (see the class docstring). ``progress=True``
        shows a progress bar over the DP batches on stderr (only on a terminal, and only
        once detection has run for a second).
        """
        fpr = float(fpr)
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr must lie strictly between 0 and 1, got {fpr}")
        resamples = int(self.n_resamples if n_resamples is None else n_resamples)
        if resamples < 1:
            raise ValueError("n_resamples must be positive")
        if vocab is None and tokenizer is None:
            raise ValueError("pass the vocabulary size (vocab=) or the tokenizer to detect")
        vocab_size = vocab_size_of(vocab if vocab is not None else tokenizer)
        target = resolve_device(device if device is not None else self.device)
        tables = self.key_tables(key, vocab_size, target)
        n, gamma = self.key_length, self.edit_gamma

        # Units: a whole text, or one window of a long text, each tested as a text on its own.
        prepared: list[_Prepared] = []
        layouts: list[tuple[int, list[tuple[int, int]], list[int]]] = []  # (n_tokens, windows, unit indices)
        for text in texts:
            ids = as_token_ids(text, tokenizer)
            if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
                raise ValueError(f"token ids must lie in [0, {vocab_size})")
            spans = self.windows(ids.numel())
            unit_resamples = len(spans) * (resamples + 1) - 1  # == resamples for one window
            units = []
            for lo, hi in spans:
                units.append(len(prepared))
                unit = self._prepare(ids[lo:hi], len(prepared), key, tables, vocab_size, target, unit_resamples)
                prepared.append(unit)
            layouts.append((ids.numel(), spans, units))

        # Blocks of (unit, key costs): the observed key first, then fixed-size null chunks.
        def chunk_of(unit: _Prepared) -> int:
            return max(1, min(NULL_DRAW_CHUNK, MAX_BATCH_ELEMENTS // (unit.observed.shape[0] * n)))

        def blocks():
            for unit in prepared:
                yield unit, unit.observed[None]
                n_unique = unit.observed.shape[0] - (0 if self.scores_repeats else 1)
                chunk = chunk_of(unit)
                for start in range(0, unit.resamples, chunk):
                    count = min(chunk, unit.resamples - start)
                    yield unit, self._with_neutral_row(self._null_costs(tables, unit.generator, count, n_unique, target))

        plain = [[] for _ in prepared]
        shifts = [[] for _ in prepared]
        edit = [[] for _ in prepared]
        pack: list[tuple[_Prepared, torch.Tensor]] = []

        def flush() -> None:
            if not pack:
                return
            m_max = max(unit.tokens.numel() for unit, _ in pack)
            u_max = max(costs.shape[1] for _, costs in pack)
            pieces, row_maps, lengths, owners = [], [], [], []
            for unit, costs in pack:
                count, n_unique, m = costs.shape[0], costs.shape[1], unit.tokens.numel()
                if n_unique < u_max:
                    costs = torch.cat([costs, costs.new_zeros(count, u_max - n_unique, n)], dim=1)
                row_map = unit.rows
                if m < m_max:
                    row_map = torch.cat([row_map, row_map.new_zeros(m_max - m)])
                pieces.append(costs)
                row_maps.append(row_map.expand(count, -1))
                lengths.append(torch.full((count,), m, dtype=torch.long))
                owners.append((unit.index, count))
            stats = alignment_statistics(
                torch.cat(pieces),
                gamma if edit_robust else None,
                torch.cat(row_maps),
                torch.cat(lengths).to(target),
            )
            start = 0
            for index, count in owners:
                plain[index].append(stats.plain[start : start + count].cpu())
                shifts[index].append(stats.best_shift[start : start + count].cpu())
                if edit_robust:
                    edit[index].append(stats.edit[start : start + count].cpu())
                start += count
            pack.clear()

        n_blocks = sum(1 + -(-unit.resamples // chunk_of(unit)) for unit in prepared)
        bar = tqdm(total=n_blocks, desc=f"{self.name} detection", unit="block", file=sys.stderr,
                   disable=None if progress else True, delay=1.0, leave=False)
        elements = 0
        try:
            for unit, costs in blocks():
                size = costs.numel()
                if pack and elements + size > MAX_BATCH_ELEMENTS:
                    done = len(pack)
                    flush()
                    bar.update(done)
                    elements = 0
                pack.append((unit, costs))
                elements += size
            flush()
        finally:
            bar.close()

        def unit_result(unit: _Prepared, level: float) -> tuple[float, float, float, dict[str, Any]]:
            """``(p_value, score, threshold at level, details)`` of one unit."""
            m = unit.tokens.numel()
            n_scored = m if self.scores_repeats else unit.observed.shape[0] - 1
            plain_all = torch.cat(plain[unit.index]).double().numpy()
            plain_p = float(empirical_p_value(plain_all[0], plain_all[1:], larger_is_extreme=False))
            if edit_robust:
                values = torch.cat(edit[unit.index]).double().numpy()
                permutation_p = float(empirical_p_value(values[0], values[1:], larger_is_extreme=False))
            else:
                values, permutation_p = plain_all, plain_p
            analytic = self._analytic_p_value(float(plain_all[0]), m, n_scored)
            share = 1.0 if analytic is None else unit.resamples / (unit.resamples + 1)
            p_value = permutation_p if analytic is None else min(1.0, permutation_p / share, analytic / (1.0 - share))
            observed, null = float(values[0]), values[1:]
            try:
                threshold = threshold_for_fpr(null, level * share, larger_is_extreme=False)
            except ValueError:  # too few resamples: no score can reach p <= level
                threshold = float("-inf")
            details = {
                "n_tokens": m,
                "n_scored": n_scored,
                "statistic": "edit" if edit_robust else "plain",
                "n_resamples": unit.resamples,
                "gamma": gamma if edit_robust else None,
                "key_length": n,
                "vocab_size": vocab_size,
                "plain_statistic": float(plain_all[0]),
                "best_shift": int(torch.cat(shifts[unit.index])[0]),
                "p_value_plain": plain_p,
                "p_value_permutation": permutation_p,
                "p_value_analytic": analytic,
            }
            return p_value, observed, threshold, details

        results = []
        for n_tokens, spans, units in layouts:
            k = len(spans)
            per_window = [unit_result(prepared[u], fpr / k) for u in units]
            window_p = [r[0] for r in per_window]
            best = int(np.argmin(window_p))
            p_value, observed, threshold, details = per_window[best]
            details["tokens_total"] = n_tokens
            details["tokens_scored"] = sum(hi - lo for lo, hi in spans)
            details["windows"] = k
            if k > 1:
                p_value = min(1.0, k * p_value)
                details["p_value_plain"] = min(1.0, k * min(r[3]["p_value_plain"] for r in per_window))
                analytic = [r[3]["p_value_analytic"] for r in per_window]
                details["p_value_analytic"] = None if None in analytic else min(1.0, k * min(analytic))
                details["window_starts"] = [lo for lo, _ in spans]
                details["window_lengths"] = [hi - lo for lo, hi in spans]
                details["window_p_values"] = window_p
                details["best_window"] = best
            results.append(
                DetectionResult(
                    detected=bool(p_value <= fpr),
                    p_value=p_value,
                    score=observed,
                    threshold=threshold,
                    fpr=fpr,
                    scheme=self.name,
                    key_id=key.key_id,
                    details=details,
                )
            )
        return results

    def _prepare(
        self, ids: torch.Tensor, index: int, key: WatermarkKey, tables: dict[str, torch.Tensor], vocab_size: int,
        target: torch.device, resamples: int,
    ) -> _Prepared:
        """One unit's unique tokens, row map, observed costs and null generator (seeded by its tokens)."""
        n = self.key_length
        unique, inverse = torch.unique(ids, return_inverse=True)
        generator, _ = key.generator(f"{self.name}-null", n, vocab_size, _tokens_bytes(ids))
        observed = self._with_neutral_row(self._key_costs(tables, unique.to(target)))
        rows = inverse if self.scores_repeats else torch.where(_first_occurrences(inverse), inverse, len(unique))
        return _Prepared(index, ids, rows.to(target), observed, generator, resamples)


@dataclass(frozen=True)
class EXP(_KeySequenceWatermark):
    """Exponential minimum sampling; cost ``log(1 - xi[j, y])``; edit gap cost default 2.0."""

    name: ClassVar[str] = "exp"
    default_gamma: ClassVar[float] = 2.0
    neutral_cost: ClassVar[float] = -1.0  # E[log(1 - U)]
    scores_repeats: ClassVar[bool] = False

    def _draw_key(self, generator: torch.Generator, vocab_size: int) -> dict[str, torch.Tensor]:
        """The key as Gumbel noise ``g = -log(-log xi)``: generation then costs one add and an argmax.

        Detection needs ``log(1 - xi)`` only at the text's tokens and gets it back from ``g``
        as ``log(-expm1(-exp(-g)))``, which is also more precise than float32 ``xi`` near 1.
        """
        xi = torch.rand(self.key_length, vocab_size, generator=generator)
        return {"gumbel": xi.log_().neg_().log_().neg_()}

    @staticmethod
    def choose(tables: dict[str, torch.Tensor], logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # argmax log(xi)/p == argmax log p + g (Gumbel-max); the softmax normaliser is a constant
        # per row, and p = 0 (logit -inf) is never chosen.
        return tables["gumbel"].index_select(0, rows).add_(logits).argmax(dim=-1)

    def _key_costs(self, tables: dict[str, torch.Tensor], unique: torch.Tensor) -> torch.Tensor:
        g = tables["gumbel"].index_select(1, unique).T.double()
        return g.neg().exp().neg().expm1().neg().log().float()

    def _null_costs(
        self, tables: dict[str, torch.Tensor], generator: torch.Generator, count: int, n_unique: int, device: torch.device
    ) -> torch.Tensor:
        """A fresh key's entries at the text's tokens are i.i.d. uniforms."""
        uniforms = torch.rand(count, n_unique, self.key_length, generator=generator).to(device)
        return uniforms.neg_().log1p_()

    def _analytic_p_value(self, plain: float, n_tokens: int, n_scored: int) -> float | None:
        """Bonferroni over shifts of ``P[Gamma(k, 1) >= -(scored costs)]``, ``k`` distinct tokens.

        Valid for any length: under one shift the scored tokens are distinct, so each is paired
        with its own key entry ``xi[j, y]`` (a distinct vocabulary column, whichever key row),
        and under H0 the k scored costs are independent ``-Exp(1)``; the repeats add the
        constant ``-1`` each.
        """
        scored = plain - self.neutral_cost * (n_tokens - n_scored)
        return float(min(1.0, self.key_length * sps.gamma.sf(-scored, n_scored)))


@dataclass(frozen=True)
class ITS(_KeySequenceWatermark):
    """Inverse transform sampling; cost ``|u_j - eta(y)|``; edit gap cost default 0.6."""

    name: ClassVar[str] = "its"
    default_gamma: ClassVar[float] = 0.6
    neutral_cost: ClassVar[float] = 1.0 / 3.0  # E|U - V| for independent uniforms (unused while scores_repeats)
    scores_repeats: ClassVar[bool] = True

    def _draw_key(self, generator: torch.Generator, vocab_size: int) -> dict[str, torch.Tensor]:
        order = torch.randperm(vocab_size, generator=generator)  # order[r] = token of rank r
        u = torch.rand(self.key_length, generator=generator, dtype=torch.float64)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(vocab_size)
        return {"order": order, "rank": rank, "block": rank // ITS_BLOCK, "u": u}

    @staticmethod
    def choose(tables: dict[str, torch.Tensor], logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The first token, in permutation order, whose cumulative probability exceeds ``u``.

        Why two levels: a float64 cumsum over the whole vocabulary was most of the
        processor's cost (it is not vectorised on CPU). Block masses (sums of the
        probabilities of ``ITS_BLOCK`` consecutive ranks, added straight from token order
        by ``scatter_add``, so the vocabulary is never permuted) locate the block holding
        ``u``, and only that block's tokens are gathered for a float64 cumsum. Float32 block
        masses move a block boundary by about 1e-7 of the mass: a different choice only
        when ``u`` falls that close to it.
        """
        order, block_of = tables["order"], tables["block"]
        vocab, batch = order.numel(), logits.shape[0]
        n_blocks = -(-vocab // ITS_BLOCK)
        probs = torch.softmax(logits, dim=-1)  # token order
        masses = probs.new_zeros(batch, n_blocks).scatter_add_(1, block_of.expand(batch, -1), probs)
        block_cdf = masses.double().cumsum(dim=-1)  # (B, blocks)
        target = tables["u"].index_select(0, rows) * block_cdf[:, -1]  # u times the total mass
        block = torch.searchsorted(block_cdf, target[:, None], right=True).squeeze(1).clamp_max(n_blocks - 1)
        before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp_min(0)[:, None]).squeeze(1), 0.0)
        ranks = block[:, None] * ITS_BLOCK + torch.arange(ITS_BLOCK, device=probs.device)  # (B, ITS_BLOCK)
        members = order[ranks.clamp_max(vocab - 1)]
        inside = probs.gather(1, members).masked_fill(ranks >= vocab, 0.0)  # the last block may be partial
        cdf = inside.double().cumsum(dim=-1) + before[:, None]
        position = torch.searchsorted(cdf, target[:, None], right=True).squeeze(1)
        # rounding can leave target past the block's last token: take its last token with p > 0
        last_positive = ITS_BLOCK - 1 - (inside > 0).flip(-1).int().argmax(dim=-1)
        return members.gather(1, torch.minimum(position, last_positive)[:, None]).squeeze(1)

    @staticmethod
    def _cost(u: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        return (u - eta).abs().float()

    def _key_costs(self, tables: dict[str, torch.Tensor], unique: torch.Tensor) -> torch.Tensor:
        vocab_size = tables["rank"].numel()
        eta = tables["rank"][unique].double() / (vocab_size - 1)
        return self._cost(tables["u"][None, :], eta[:, None])

    def _null_costs(
        self, tables: dict[str, torch.Tensor], generator: torch.Generator, count: int, n_unique: int, device: torch.device
    ) -> torch.Tensor:
        """Resample the permutation only, keeping the key's ``u``.

        Under H0 the text is independent of ``(pi, u)``, so given ``u`` and the text the
        unique tokens' normalised ranks are uniformly random distinct ranks: the observed
        costs are exchangeable with these even for one fixed ``u``. Resampling ``u`` too
        would be valid only on average over keys: for one deployed key, p-values on random
        texts were measured far from uniform (30% instead of 49% at p <= 0.5).
        """
        vocab_size = tables["rank"].numel()
        eta = _distinct_ranks(generator, count, n_unique, vocab_size).to(device).double() / (vocab_size - 1)
        return self._cost(tables["u"][None, None, :], eta[:, :, None])
