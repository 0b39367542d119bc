"""A canonical form of text, and detection on both the text as received and that form.

Why: Unicode tricks cost an attacker nothing. A Cyrillic "а" for a Latin "a", a zero-width space
between letters or an emoji between words changes the tokens a detector sees, and with them every
token watermark's evidence at those positions; multi-bit schemes, which need most positions right,
suffer most. The canonical form undoes what such edits add:

- NFKC (full-width letters, ligatures, mathematical alphabets to their plain forms);
- confusable homoglyphs folded to the ASCII letter or digit they imitate (Unicode's confusables table as
  the ``confusable-homoglyphs`` package ships it);
- invisible format characters removed (zero-width spaces and joiners, soft hyphens, bidi controls,
  byte-order marks) and control characters other than tab and line breaks;
- emoji and other pictographic symbols removed, with their variation selectors and modifiers;
- exotic spaces made plain spaces, runs of spaces one space and spaces before a line break or
  the end dropped (what a removed emoji leaves behind), line and paragraph separators newlines (line breaks are kept as they are: a
  tokenizer reads "\\n\\n" differently from " ").

A generator may have emitted some of these itself (an emoji, a Greek letter), so the text as
received is tested too: ``detect_forms`` tests the raw text and, when it differs, the canonical
form, and reports ``min(1, p_canonical / w, p_raw / (1 - w))``, a weighted Bonferroni with
``w = CANONICAL_SHARE`` of the level for the canonical form, the form that matched, and both
p-values. Why not an even split: a permutation test (ITS, EXP's edit statistic) cannot go below
``1 / (T + 1)``, and doubling that floor put every changed text out of reach at 1% with the
default 100 resamples (measured: ITS lost every emoji-attacked text it had found). With 99.5% of
the level, the canonical form keeps a floor just below 0.01; the raw form needs strong evidence
(a p-value 200 times smaller), which sampler watermarks with exact tails have when the text is
theirs as generated.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Callable, Sequence

from confusable_homoglyphs import utils as confusable_data

from provenance.result import DetectionResult

_ASCII = set(string.ascii_letters + string.digits + string.punctuation)
_LETTERS_AND_DIGITS = set(string.ascii_letters + string.digits)
_VARIATION_SELECTORS = {*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}
_DROPPED_CATEGORIES = {"So", "Sk", "Cf", "Co", "Cs", "Cn"}  # pictographs, modifiers, format, private, unassigned
_KEPT_CONTROLS = {"\t", "\n"}
CANONICAL_SHARE = 0.995  # of the level, for the canonical form (the rest for the text as received)
_SPACE_RUNS = re.compile(r" {2,}")
_LINE_END_SPACES = re.compile(r" +(?=\n|$)")


@functools.lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """Each non-ASCII character that Unicode lists as confusable with an ASCII letter or digit -> that character
    (look-alike punctuation such as curly quotes is left alone: generators emit it)."""
    table: dict[int, str] = {}
    for character, homoglyphs in confusable_data.load("confusables.json").items():
        if len(character) != 1 or character in _ASCII:
            continue
        for glyph in homoglyphs:
            if len(glyph["c"]) == 1 and glyph["c"] in _LETTERS_AND_DIGITS:
                table[ord(character)] = glyph["c"]
                break
    return table


@functools.lru_cache(maxsize=1)
def lookalikes() -> dict[str, tuple[str, ...]]:
    """ASCII letter -> the Cyrillic and Greek letters the fold table maps back to it (what a homoglyph
    attack substitutes; ``attacks.text``)."""
    found: dict[str, list[str]] = {}
    for code, target in _fold_table().items():
        name = unicodedata.name(chr(code), "")
        if (target.isalpha() and name.startswith(("CYRILLIC", "GREEK")) and unicodedata.category(chr(code)).startswith("L")
                and unicodedata.normalize("NFKC", chr(code)) == chr(code)):
            found.setdefault(target, []).append(chr(code))
    return {letter: tuple(sorted(options)) for letter, options in found.items()}


def _canonical_character(character: str) -> str:
    code = ord(character)
    if code < 128:
        return character if character.isprintable() or character in _KEPT_CONTROLS else ""
    if code in _VARIATION_SELECTORS:
        return ""
    folded = _fold_table().get(code)
    if folded is not None:  # before the categories: a symbol drawn like a letter becomes the letter
        return folded
    category = unicodedata.category(character)
    if category in ("Zl", "Zp"):
        return "\n"
    if category == "Zs":
        return " "
    return "" if category in _DROPPED_CATEGORIES or category == "Cc" else character


def canonical(text: str) -> str:
    """The canonical form of ``text`` (module docstring); ASCII text without controls comes back unchanged."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    changes = {ord(c): _canonical_character(c) for c in set(text) if not (c.isascii() and c.isprintable())}
    return _LINE_END_SPACES.sub("", _SPACE_RUNS.sub(" ", text.translate(changes)))


def detect_forms(detect: Callable[[Sequence[str], float], list[DetectionResult]], texts: Sequence[str],
                 fpr: float) -> list[DetectionResult]:
    """Each text tested as received and, where its canonical form differs (and is not blank), in that form
    too: ``detect(texts, level)`` runs a detector on a batch at ``level``. A text tested twice gets the
    weighted Bonferroni p-value of the module docstring; ``details["form"]`` names the form that matched."""
    forms = [canonical(text) for text in texts]
    twice = [i for i, (text, form) in enumerate(zip(texts, forms)) if form != text and form.strip()]
    tested_twice = set(twice)
    once = [i for i in range(len(texts)) if i not in tested_twice]
    results: list[DetectionResult | None] = [None] * len(texts)
    for i, result in zip(once, detect([texts[i] for i in once], fpr) if once else []):
        result.details.update(form="raw", forms_tested=1)
        results[i] = result
    if twice:
        share = CANONICAL_SHARE
        raw = detect([texts[i] for i in twice], fpr * (1.0 - share))
        folded = detect([forms[i] for i in twice], fpr * share)
        for i, as_received, as_canonical in zip(twice, raw, folded):
            adjusted_raw, adjusted_canonical = as_received.p_value / (1.0 - share), as_canonical.p_value / share
            best, form = (as_received, "raw") if adjusted_raw < adjusted_canonical else (as_canonical, "canonical")
            p_value = min(1.0, adjusted_raw, adjusted_canonical)
            results[i] = DetectionResult(
                detected=p_value <= fpr, p_value=p_value, score=best.score, threshold=best.threshold, fpr=fpr,
                scheme=best.scheme, key_id=best.key_id, payload=best.decoded_payload, bit_accuracy=best.bit_accuracy,
                details={**best.details, "form": form, "forms_tested": 2, "p_value_raw": as_received.p_value,
                         "p_value_canonical": as_canonical.p_value,
                         "correction": f"weighted Bonferroni: {share} of the level to the canonical form"})
    return [result for result in results if result is not None]
