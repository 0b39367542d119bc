"""Post-hoc synonym watermark for text from any source (Yang et al., arXiv 2305.08883).

Why post-hoc: a user of a black-box API cannot touch the sampler, but can edit the text it
returns. A keyed hash gives every word a bit; marking replaces eligible bit-0 words by
context-appropriate synonyms whose bit is 1 (:mod:`text_wm.synonyms` proposes and vets
them), which raises the share of bit-1 words far above the 1/2 of unmarked text. Detection
needs only the key and the text: no model, just one keyed hash per distinct word.

Choices, and why:
- ``bit(w)`` is the low bit of ``HMAC-SHA256(key sub-key, "blackbox-bit" | lowercase w)``,
  of the word alone, not of (previous word, word). A word's bit then does not depend on its
  neighbours, so all positions can be marked at once (one batched pass) and an edit to one
  word never flips the bits of the words around it. The price: the mapping word -> bit is
  the same in every text of one key, so someone holding many marked texts of a key could
  learn which words it favours. Use one key per deployment and rotate keys.
- Only words eligible under :func:`text_wm.synonyms.words` count (no stop words, names,
  numbers, code or quotations), the same rule that chose which words to mark.
- Each distinct (lowercased) eligible word counts once. A repeated word carries no fresh
  randomness (its bit is fixed by the key), so counting it twice would let repetition
  inflate the statistic; counting distinct words keeps the null exact.

Null hypothesis of :meth:`BlackBoxWatermark.detect`: the text was written without
knowledge of the key. The set of distinct eligible words then does not depend on the key,
and the keyed hash (a PRF) gives each of them an independent Bernoulli(1/2) bit, so the
number of bit-1 words is exactly Binomial(n, 1/2). The p-value is the exact binomial
upper tail; the z-score of the one-proportion z-test is reported as the score.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from provenance import stats
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult, UnscoreableInput
from text_wm.synonyms import SynonymProposer, apply_replacements, words


def word_bit(key: WatermarkKey, word: str) -> int:
    """The keyed bit of a word (case-insensitive)."""
    return key.subkey("blackbox-bit", word.lower())[0] & 1


@dataclass
class MarkedText:
    """A watermarked text and what marking did to it (never the key)."""

    text: str
    n_words: int
    n_changed: int
    fraction_changed: float
    similarity: float
    replacements: list[tuple[str, str]] = field(default_factory=list)
    key_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "n_words": self.n_words, "n_changed": self.n_changed,
            "fraction_changed": self.fraction_changed, "similarity": self.similarity,
            "replacements": [list(r) for r in self.replacements], "key_id": self.key_id,
        }


def markable_words(text: str) -> list:
    """The words of ``text`` the watermark may change; ``ValueError`` (one line) when there are none,
    so a command can refuse such a text before any model loads."""
    if not text.strip():
        raise ValueError("cannot watermark empty text")
    word_list = words(text)
    eligible = [w for w in word_list if w.eligible]
    if not eligible:
        raise ValueError(
            f"no word in the text is eligible for the black-box watermark ({len(word_list)} words, none "
            "eligible: stop words, names, numbers, code and quotations are never marked); nothing was marked"
        )
    return eligible


@dataclass
class BlackBoxWatermark:
    """Configuration of the black-box synonym watermark; the key is passed to each call.

    ``proposer`` holds the models that marking needs (loaded on first use); detection
    never touches it. ``candidates`` bit-1 substitutes are vetted per bit-0 word, tried
    in ``rounds`` rounds of the in-context fluency check.
    """

    proposer: SynonymProposer | None = None
    candidates: int = 3
    rounds: int = 2
    name: str = "blackbox"

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.rounds < 1:
            raise ValueError("candidates and rounds must be at least 1")

    def _proposer(self) -> SynonymProposer:
        if self.proposer is None:
            self.proposer = SynonymProposer()
        return self.proposer

    # -- marking ----------------------------------------------------------------------
    def watermark(self, text: str, key: WatermarkKey) -> MarkedText:
        """Replace eligible bit-0 words by vetted bit-1 synonyms; report how much changed.

        Raises ``ValueError`` (one line) rather than return a text that carries no mark:
        when no word is eligible (:meth:`detect` would refuse the result), when bit-0 words
        exist but none got an accepted bit-1 synonym (nothing was marked), or when the
        marked text has no eligible word left. A text whose eligible words all carry bit 1
        already is returned unchanged: it reads as marked.
        """
        word_list = words(text)
        eligible = markable_words(text)  # checked before the proposer loads its models
        proposer = self._proposer()
        zeros = [w.index for w in eligible if word_bit(key, w.text) == 0]
        options = proposer.candidates(
            text, zeros, k=self.candidates, accept=lambda _original, candidate: word_bit(key, candidate) == 1
        )
        chosen = proposer.substitute(text, options, rounds=self.rounds)
        if zeros and not chosen:
            raise ValueError(
                f"no word of the text could be marked ({len(eligible)} eligible words, {len(zeros)} of them to "
                "change, none with an accepted synonym candidate); nothing was marked"
            )
        marked = apply_replacements(text, chosen, word_list)
        if not any(w.eligible for w in words(marked)):  # what detect() requires of the result
            raise ValueError("the marked text has no eligible word left for detection; nothing was marked")
        return MarkedText(
            text=marked,
            n_words=len(word_list),
            n_changed=len(chosen),
            fraction_changed=len(chosen) / max(len(word_list), 1),
            similarity=proposer.similarity_between(text, marked) if chosen else 1.0,
            replacements=[(word_list[i].text, new) for i, new in sorted(chosen.items())],
            key_id=key.key_id,
        )

    # -- detection --------------------------------------------------------------------
    def detect(self, text: str, key: WatermarkKey, tokenizer: Any = None, *, fpr: float = 0.01) -> DetectionResult:
        """Exact binomial test on the bit-1 share of distinct eligible words (null in the module docstring).

        ``tokenizer`` is accepted for the common detector signature and ignored: words,
        not model tokens, carry this watermark.
        """
        stats.check_fpr(fpr)
        if not isinstance(text, str) or not text.strip():
            raise UnscoreableInput("cannot detect a watermark in empty text")
        distinct = sorted({w.text.lower() for w in words(text) if w.eligible})
        n = len(distinct)
        if n == 0:
            raise UnscoreableInput("text has no eligible words to test (too short, or only stop words, names and quotes)")
        ones = sum(word_bit(key, w) for w in distinct)
        z, p_normal = stats.z_test(ones, n, 0.5)
        p_value = stats.binomial_tail(ones, n, 0.5)
        threshold = _threshold(n, fpr)
        return DetectionResult(
            detected=bool(p_value <= fpr),
            p_value=float(p_value),
            score=float(z),
            threshold=float((threshold - n / 2) / math.sqrt(n / 4)),
            fpr=fpr,
            scheme=self.name,
            key_id=key.key_id,
            details={
                "n_scored": n,
                "n_ones": ones,
                "one_fraction": ones / n,
                "p_value_normal": float(p_normal),
                "test": "exact binomial tail of bit-1 distinct eligible words, H0: Bin(n_scored, 1/2)",
            },
        )


@functools.lru_cache(maxsize=4096)
def _threshold(n: int, fpr: float) -> int:
    """Bit-1 count at which a text of ``n`` distinct eligible words is flagged (cached: texts share sizes)."""
    return stats.binomial_threshold(n, fpr, 0.5)
