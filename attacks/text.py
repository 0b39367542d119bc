"""Text attacks: random token edits, word deletion, Unicode tricks, LLM paraphrase and copy-paste dilution.

Why these: token edits are the corruption model under which token watermarks state their
robustness (Kuditipudi et al.); word deletion is the cheapest human edit; a prompted rewrite
by a language model is the paraphrase attack every text watermark paper reports; copy-paste
dilution (a watermarked span inside human text) is how watermarked text is actually reused;
homoglyphs, zero-width spaces and emoji cost an attacker nothing and change the tokens a detector
sees (``text_wm.canonical`` undoes them).

Every attack is ``fn(text, strength, seed, **models) -> str`` and deterministic under ``seed``.
Models: token edits use ``tokenizer=`` (default: the SmolLM2 tokenizer), the paraphrase uses
``model=`` and ``tokenizer=`` (default: SmolLM2-135M-Instruct); defaults load on first use and are
cached per process. Keywords an attack does not use are ignored, so an audit can hand the same
models to every text attack.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.registry import register
from attacks.text_edits import random_token_edits
from provenance.models import model_and_tokenizer
from text_wm.canonical import lookalikes

HUMAN_TEXT = Path(__file__).with_name("data") / "human_passages.jsonl"
PARAPHRASE_PROMPT = (
    "Rewrite the following sentence in different words, keeping its meaning. "
    "Reply with the rewritten sentence only.\n\n{sentence}"
)
PARAPHRASE_TEMPERATURE = 0.7
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD_WITH_SPACE = re.compile(r"\S+\s*")
_LABEL = re.compile(r"^[A-Za-z ]{1,40}:\s+")
ZERO_WIDTH_SPACE = "\u200b"
EMOJI = ("\U0001F600", "\U0001F44D", "\U0001F525", "\u2728", "\U0001F389", "\U0001F680", "\u2764\ufe0f", "\U0001F914")


@functools.lru_cache(maxsize=1)
def _default_tokenizer() -> Any:
    from provenance.models import load_tokenizer

    return load_tokenizer()


@functools.lru_cache(maxsize=1)
def default_human_text() -> tuple[str, ...]:
    """The 20 public-domain human passages shipped in ``attacks/data`` (see its README)."""
    lines = HUMAN_TEXT.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("cannot attack an empty text")
    return text


def _token_edits(text: str, rate: float, seed: int, kinds: str, tokenizer: Any) -> str:
    tokenizer = tokenizer or _default_tokenizer()
    ids = torch.tensor(tokenizer(_check_text(text), add_special_tokens=False)["input_ids"], dtype=torch.long)
    edited = random_token_edits(ids, rate, len(tokenizer), torch.Generator().manual_seed(seed), kinds)
    return tokenizer.decode(edited.tolist(), skip_special_tokens=True)


@register("token-substitution", "text", 0.0, 1.0, 0.1, unit="fraction of tokens")
def token_substitution(text: str, strength: float, seed: int, tokenizer: Any = None, **_: Any) -> str:
    """Replace each token with probability ``strength`` by a uniformly random token."""
    return _token_edits(text, strength, seed, "s", tokenizer)


@register("token-insertion", "text", 0.0, 1.0, 0.1, unit="fraction of tokens")
def token_insertion(text: str, strength: float, seed: int, tokenizer: Any = None, **_: Any) -> str:
    """Insert a uniformly random token before each token with probability ``strength``."""
    return _token_edits(text, strength, seed, "i", tokenizer)


@register("token-deletion", "text", 0.0, 1.0, 0.1, unit="fraction of tokens")
def token_deletion(text: str, strength: float, seed: int, tokenizer: Any = None, **_: Any) -> str:
    """Delete each token with probability ``strength``."""
    return _token_edits(text, strength, seed, "d", tokenizer)


@register("homoglyph", "text", 0.0, 1.0, 0.2, unit="fraction of letters that have a look-alike")
def homoglyph(text: str, strength: float, seed: int, **_: Any) -> str:
    """Swap each Latin letter that has a Cyrillic or Greek look-alike for one, with probability ``strength``."""
    rng = np.random.default_rng(seed)
    options = lookalikes()
    return "".join(options[c][rng.integers(len(options[c]))] if c in options and rng.random() < strength else c
                   for c in _check_text(text))


@register("zero-width", "text", 0.0, 1.0, 0.3, unit="fraction of words")
def zero_width(text: str, strength: float, seed: int, **_: Any) -> str:
    """Hide a zero-width space inside each word of two or more characters with probability ``strength``."""
    rng = np.random.default_rng(seed)

    def hide(word: str) -> str:
        core = word.rstrip()
        if len(core) < 2 or rng.random() >= strength:
            return word
        cut = int(rng.integers(1, len(core)))
        return core[:cut] + ZERO_WIDTH_SPACE + word[cut:]

    return "".join(hide(word) for word in _WORD_WITH_SPACE.findall(_check_text(text)))


@register("emoji", "text", 0.0, 1.0, 0.1, unit="fraction of words followed by an emoji")
def emoji(text: str, strength: float, seed: int, **_: Any) -> str:
    """Put a space and an emoji after each word with probability ``strength``."""
    rng = np.random.default_rng(seed)
    words = _WORD_WITH_SPACE.findall(_check_text(text))
    return "".join(word.rstrip() + f" {EMOJI[rng.integers(len(EMOJI))]}" + word[len(word.rstrip()):]
                   if rng.random() < strength else word for word in words)


@register("word-deletion", "text", 0.0, 1.0, 0.1, unit="fraction of words")
def word_deletion(text: str, strength: float, seed: int, **_: Any) -> str:
    """Delete each whitespace-separated word with probability ``strength`` (line breaks kept)."""
    leading = text[: len(text) - len(_check_text(text).lstrip())]
    words = _WORD_WITH_SPACE.findall(text)
    keep = np.random.default_rng(seed).random(len(words)) >= strength
    return leading + "".join(word for word, kept in zip(words, keep) if kept)


@functools.lru_cache(maxsize=1)
def _default_proposer() -> Any:
    from text_wm.synonyms import SynonymProposer

    return SynonymProposer()


@register("synonym-substitution", "text", 0.0, 1.0, 0.3, unit="fraction of eligible words")
def synonym_substitution(text: str, strength: float, seed: int, model: Any = None, tokenizer: Any = None,
                         **_: Any) -> str:
    """Replace a seeded ``strength`` fraction of eligible words by context-fitting synonyms (``text_wm.synonyms``)."""
    from text_wm.synonyms import SynonymProposer

    proposer = _default_proposer() if model is None else SynonymProposer(model, tokenizer)
    eligible = [w.index for w in proposer.words(_check_text(text)) if w.eligible]
    count = round(strength * len(eligible))
    if count == 0:
        return text
    chosen = sorted(np.random.default_rng(seed).choice(eligible, count, replace=False).tolist())
    return proposer.apply(text, proposer.substitute(text, proposer.candidates(text, chosen, k=3)))


@register("copy-paste", "text", 0.05, 1.0, 0.25, stronger="down", unit="fraction of words watermarked")
def copy_paste(text: str, strength: float, seed: int, human_text: str | Sequence[str] | None = None,
               **_: Any) -> str:
    """Embed the text, whole, at a random word boundary of human text so it makes up ``strength`` of the words.

    ``human_text``: a string or a list of passages (default: ``default_human_text()``), taken in a
    seeded order and cycled when more words are needed than it holds.
    """
    span_words = len(_check_text(text).split())
    needed = round(span_words / strength) - span_words
    if needed <= 0:
        return text
    passages = [human_text] if isinstance(human_text, str) else list(human_text or default_human_text())
    if not any(p.split() for p in passages):
        raise ValueError("copy-paste needs non-empty human text")
    rng = np.random.default_rng(seed)
    words: list[str] = []
    for index in itertools.cycle(rng.permutation(len(passages)).tolist()):
        words.extend(passages[index].split())
        if len(words) >= needed:
            break
    words = words[:needed]
    cut = int(rng.integers(0, needed + 1))
    return " ".join([*words[:cut], text.strip(), *words[cut:]])


@register("paraphrase", "text", 0.0, 1.0, 1.0, unit="fraction of sentences rewritten")
def paraphrase(text: str, strength: float, seed: int, model: Any = None, tokenizer: Any = None, **_: Any) -> str:
    """Rewrite ``round(strength * sentences)`` seeded-chosen sentences with the LLM (prompted, sampled)."""
    return paraphrase_texts([text], strength, seed, model=model, tokenizer=tokenizer)[0]


def paraphrase_texts(texts: Sequence[str], fraction: float, seed: int = 0, *, model: Any = None,
                     tokenizer: Any = None, temperature: float = PARAPHRASE_TEMPERATURE) -> list[str]:
    """Paraphrase many texts at once: every chosen sentence of every text in one ``generate`` call.

    Sentence by sentence because a small model rewrites one sentence faithfully but drifts
    over a paragraph; ``fraction`` then gives a graded attack (1.0 rewrites every sentence).
    Each sentence is sent through the model's chat template with ``PARAPHRASE_PROMPT`` and
    sampled at ``temperature`` under ``seed``; a rewrite that comes back empty keeps the original.
    """
    from text_wm.generate import generate_watermarked

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"paraphrase fraction must lie in [0, 1], got {fraction}")
    model, tokenizer = model_and_tokenizer(model, tokenizer)
    rng = np.random.default_rng(seed)
    sentences = [_SENTENCE_END.split(_check_text(t).strip()) for t in texts]
    jobs = [(i, int(j)) for i, parts in enumerate(sentences)
            for j in sorted(rng.choice(len(parts), round(fraction * len(parts)), replace=False))]
    if jobs:
        originals = [sentences[i][j] for i, j in jobs]
        longest = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in originals)
        records = generate_watermarked(
            model, tokenizer, [PARAPHRASE_PROMPT.format(sentence=s) for s in originals], None, None, chat=True,
            seed=seed, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
            max_new_tokens=int(1.3 * longest) + 8,
        )
        for (i, j), record in zip(jobs, records):
            sentences[i][j] = _first_line(record.text) or sentences[i][j]
    return [" ".join(parts) for parts in sentences]


def _first_line(reply: str) -> str:
    """The rewrite itself: the reply's first non-empty line, without a short label ("The sentence is:") or quotes."""
    line = next((line.strip() for line in reply.splitlines() if line.strip()), "")
    line = _LABEL.sub("", line) or line
    return line.strip("\"'\u201c\u201d").strip()
