"""Context-appropriate single-word substitutions, proposed and vetted by local models.

Why a language model and not a thesaurus: no WordNet data is available offline, and a
thesaurus is not context-aware anyway ("bank" of a river is not a "lender"). So the
candidates for a word are the language model's own predictions (SmolLM2-135M by default)
when it re-reads the text: the prompt is the text, a "same text in other words" header,
and the text again; at each word of the second copy the model has seen the whole sentence,
right context included, and its runners-up after the word itself are words that fit the
same slot (``_propose``). Plain next-token predictions from the left context alone were
tried first and proposed mostly unrelated words ("culture" -> "created"). A candidate must
be a known English word (wordfreq), eligible itself, not an inflection of the original,
and survive two checks:

(a) **meaning holds**: the MiniLM cosine similarity between a window of
    ``context_words`` words either side of the word (clipped to its sentence) and the
    same window with the substitute is at least ``similarity`` (default 0.85);
(b) **the LM finds it fluent**: with all chosen substitutes applied together, the summed
    log-probability of the substitute's tokens and the next ``right_tokens`` tokens
    (default 4) may trail the original's (same span, original text) by at most
    ``fluency_margin`` nats (default 2.0, about a factor 7 in probability). Including the
    right context catches words that fit what comes before but not what follows.

Cost: one forward pass over (text + header + text) proposes for every position at once;
one batched MiniLM pass checks the meaning of every (position, candidate) pair; one
forward pass of the substituted text per round of :meth:`SynonymProposer.substitute`
checks the fluency of all substitutes together. Long texts go in chunks of about
``chunk_tokens`` tokens, batched into the same passes.

Which words may change (:func:`words`): alphabetic words of at least ``MIN_LENGTH``
letters that are not stop words, not names (capitalised away from a sentence start, or
with capitals inside), not glued to digits, apostrophes, hyphens or path/URL characters,
and not inside backticks, code fences or quotation marks. This rule needs no model, so a
detector can apply exactly the same rule to a text it receives. A word is proposed for
only when it is preceded by a single space (so its tokens start a new pre-token) and is
not the first word of the text (the LM needs a left context).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from provenance.embeddings import default_embedder, sentence_embeddings

MIN_LENGTH = 3

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren as at be because been before
    being below between both but by can cannot could couldn did didn do does doesn doing don down during
    each either else ever every few for from further had hadn has hasn have haven having he her here hers
    herself him himself his how however i if in into is isn it its itself just let like may me might
    mine more most much must mustn my myself neither no nor not now of off often on once one only or
    other otherwise ought our ours ourselves out over own per quite rather same shall shan she should
    shouldn since so some such than that the their theirs them themselves then there therefore these
    they this those though through thus to too under until up upon us very via was wasn we were weren
    what whatever when whenever where whereas wherever whether which while who whoever whom whose why
    will with within without won would wouldn yes yet you your yours yourself yourselves""".split()
)

# A run of letters, possibly joined to more letters by an apostrophe or hyphen (one token
# for "don't" or "e-mail"), or a number. Everything between matches is kept verbatim.
_TOKEN = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*|\d+(?:[.,]\d+)*")
# Regions whose words are never touched: code fences, inline code, quotations.
_PROTECTED = re.compile(
    r"```.*?```|`[^`\n]*`|\"[^\"\n]*\"|\u201c[^\u201d]*\u201d|\u2018[^\u2019\n]*\u2019", re.DOTALL
)
_GLUE = set("_/@\\#$%&*=+<>|~^0123456789")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


@dataclass(frozen=True)
class Word:
    """One word of a text: its character span and whether the rules allow changing it."""

    index: int
    start: int
    end: int
    text: str
    eligible: bool
    sentence_start: bool


def words(text: str) -> list[Word]:
    """Every word-like token of ``text`` with its span; see the module docstring for eligibility.

    Pure string rules (no model), so marking and detection agree on which words count.
    """
    protected = np.zeros(len(text) + 1, dtype=np.int32)
    for match in _PROTECTED.finditer(text):
        protected[match.start()] += 1
        protected[match.end()] -= 1
    inside = np.cumsum(protected) > 0
    out, previous_end = [], None
    for index, match in enumerate(_TOKEN.finditer(text)):
        start, end, token = match.start(), match.end(), match.group()
        gap = text[previous_end or 0:start]
        closing = gap.rstrip().rstrip("\"')]\u201d\u2019")
        sentence_start = previous_end is None or closing.endswith((".", "!", "?")) or "\n\n" in gap
        previous_end = end
        glued = _glued(text, start, end)
        eligible = (
            token.isascii() and token.isalpha() and len(token) >= MIN_LENGTH
            and token.lower() not in STOP_WORDS
            and token[1:].islower()
            and (token[0].islower() or sentence_start)
            and not glued and not inside[start]
        )
        out.append(Word(index, start, end, token, bool(eligible), sentence_start))
    return out


def _glued(text: str, start: int, end: int) -> bool:
    """A word touching digits, paths, identifiers or a dotted name ("file.txt") is not prose."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    dotted_before = before == "." and start > 1 and text[start - 2].isalnum()
    dotted_after = after == "." and end + 1 < len(text) and text[end + 1].isalnum()
    return before in _GLUE or after in _GLUE or dotted_before or dotted_after


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (split after . ! ? followed by space, or at blank lines)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def match_case(template: str, word: str) -> str:
    """``word`` with ``template``'s capitalisation pattern (lower or capitalised)."""
    return word.capitalize() if template[:1].isupper() else word.lower()


def apply_replacements(text: str, replacements: Mapping[int, str], word_list: list[Word] | None = None) -> str:
    """``text`` with word ``index -> new word`` substituted; every other character unchanged."""
    word_list = word_list if word_list is not None else words(text)
    parts, cursor = [], 0
    for index in sorted(replacements):
        if not 0 <= index < len(word_list):
            raise ValueError(f"word index {index} is outside the text ({len(word_list)} words)")
        word = word_list[index]
        parts.extend((text[cursor:word.start], replacements[index]))
        cursor = word.end
    parts.append(text[cursor:])
    return "".join(parts)


def similar_stems(a: str, b: str) -> bool:
    """True for inflections of one stem ("compute"/"computing"): not a synonym, usually a grammar error."""
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a) or (min(len(a), len(b)) >= 5 and a[:5] == b[:5])


@lru_cache(maxsize=1 << 16)
def is_known_word(word: str) -> bool:
    """A word wordfreq has seen in English (filters sub-word fragments the LM proposes)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") > 0.0


Accept = Callable[[str, str], bool]

REWRITE_HEADER = "\n\nThe same text in other words:\n"


@dataclass
class _Layout:
    """A text cut into pieces so each proposable word is a piece of its own (" word").

    Tokenizing piece by piece gives the same ids as the whole text for byte-level BPE
    (a space + letters is one pre-token), and lets a substitute replace exactly the
    original word's tokens, so original and substituted token sequences align by piece.
    """

    pieces: list[str]
    piece_of: dict[int, int]  # word index -> piece index


class SynonymProposer:
    """Proposes, vets and applies context-appropriate substitutes for words of a text.

    ``model``/``tokenizer``: a local causal LM (default SmolLM2-135M); ``embedder``:
    ``(model, tokenizer)`` of a sentence encoder (default MiniLM). Both load on first use.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        embedder: tuple[Any, Any] | None = None,
        similarity: float = 0.85,
        fluency_margin: float = 2.0,
        proposals: int = 50,
        context_words: int = 10,
        right_tokens: int = 4,
        chunk_tokens: int = 512,
    ) -> None:
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model and tokenizer, or neither")
        if not -1.0 <= similarity <= 1.0:
            raise ValueError(f"similarity must lie in [-1, 1], got {similarity}")
        if fluency_margin < 0 or proposals < 1 or context_words < 1 or right_tokens < 0 or chunk_tokens < 16:
            raise ValueError("fluency_margin >= 0, proposals >= 1, context_words >= 1, right_tokens >= 0, chunk_tokens >= 16")
        self._model, self._tokenizer, self._embedder = model, tokenizer, embedder
        self.similarity, self.fluency_margin = similarity, fluency_margin
        self.proposals, self.context_words, self.right_tokens = proposals, context_words, right_tokens
        self.chunk_tokens = chunk_tokens
        self._decoded: list[str] | None = None

    # -- models, loaded lazily ------------------------------------------------------
    def _load_lm(self) -> None:
        if self._model is None:
            from provenance.models import load_text_model

            self._model, self._tokenizer = load_text_model()

    @property
    def model(self) -> Any:
        self._load_lm()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._load_lm()
        return self._tokenizer

    @property
    def _vocab_strings(self) -> list[str]:
        """Every token id decoded on its own (" word" for a word-initial token), computed once."""
        if self._decoded is None:
            self._decoded = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return self._decoded

    @property
    def embedder(self) -> tuple[Any, Any]:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    # -- public API -----------------------------------------------------------------
    @staticmethod
    def words(text: str) -> list[Word]:
        return words(text)

    def candidates(
        self, text: str, positions: Iterable[int] | None = None, k: int = 5, accept: Accept | None = None
    ) -> dict[int, list[str]]:
        """Up to ``k`` vetted substitutes per word index, most probable first.

        ``positions``: word indices to propose for (default: every eligible word);
        ineligible ones are skipped. ``accept(original, candidate)`` is the caller's
        pre-filter (a watermark bit, a rarity rule), applied before the costly check.
        This applies check (a), meaning; check (b), fluency, is :meth:`substitute`'s,
        because it depends on which substitutes end up applied together. Positions
        without any surviving candidate are left out.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        word_list = words(text)
        layout = self._layout(text, word_list)
        wanted = sorted(i for i in (range(len(word_list)) if positions is None else positions) if i in layout.piece_of)
        if not wanted:
            return {}
        proposed: dict[int, list[str]] = {}
        for i, token_ids in zip(wanted, self._propose(layout, wanted)):
            original, kept = word_list[i].text, []
            for token_id in token_ids:
                word = self._vocab_strings[token_id]
                if not word.startswith(" "):
                    continue
                candidate = match_case(original, word[1:])
                if self._usable(original, candidate) and candidate not in kept and (
                    accept is None or accept(original, candidate)
                ):
                    kept.append(candidate)
                if len(kept) == k:
                    break
            if kept:
                proposed[i] = kept
        return self._keep_meaning(text, word_list, proposed)

    def substitute(self, text: str, options: Mapping[int, list[str]], rounds: int = 2) -> dict[int, str]:
        """Choose one substitute per word index from ``options`` (in preference order).

        Round ``r`` applies every undecided position's next option at once, scores the
        substituted text in one forward pass, and keeps each substitute whose tokens plus
        the following ``right_tokens`` tokens lose at most ``fluency_margin`` nats of
        log-probability against the original text. Positions still failing after
        ``rounds`` rounds keep their original word. Returns ``index -> substitute``.
        """
        word_list = words(text)
        layout = self._layout(text, word_list)
        pending = {i: list(opts) for i, opts in options.items() if opts and i in layout.piece_of}
        if not pending:
            return {}
        ids, bounds = self._piece_ids(layout.pieces)
        base_cum = np.concatenate([[0.0], np.cumsum(self._token_logprobs(ids))])
        chosen: dict[int, str] = {}
        for _ in range(rounds):
            trial = {i: opts.pop(0) for i, opts in pending.items() if opts}
            if not trial:
                break
            current = {**chosen, **trial}
            pieces = list(layout.pieces)
            for i, new in current.items():
                pieces[layout.piece_of[i]] = " " + new
            new_ids, new_bounds = self._piece_ids(pieces)
            new_cum = np.concatenate([[0.0], np.cumsum(self._token_logprobs(new_ids))])
            for i, new in trial.items():
                piece = layout.piece_of[i]
                if _span_logprob(new_cum, new_bounds, piece, self.right_tokens) >= (
                    _span_logprob(base_cum, bounds, piece, self.right_tokens) - self.fluency_margin
                ):
                    chosen[i] = new
                    del pending[i]
        return chosen

    def apply(self, text: str, replacements: Mapping[int, str]) -> str:
        return apply_replacements(text, replacements)

    def similarity_between(self, first: str, second: str, chunk_words: int = 120) -> float:
        """MiniLM cosine similarity of two texts, averaged over aligned chunks of ``chunk_words`` words.

        Chunked because MiniLM truncates long inputs; the chunks of both texts cut at the
        same word indices, which align when one text is a word-substituted copy of the other.
        """
        chunks = []
        for source in (first, second):
            word_list = words(source)
            cuts = [0] + [word_list[j].start for j in range(chunk_words, len(word_list), chunk_words)] + [len(source)]
            chunks.append([source[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
        if len(chunks[0]) != len(chunks[1]):
            raise ValueError("the two texts do not have the same number of words")
        emb = self._embed(chunks[0] + chunks[1])
        n = len(chunks[0])
        return float((emb[:n] * emb[n:]).sum(-1).mean())

    # -- internals ------------------------------------------------------------------
    def _usable(self, original: str, candidate: str) -> bool:
        """A candidate must itself be an eligible, known English word and not an inflection of the original."""
        return (
            candidate.isascii() and candidate.isalpha() and len(candidate) >= MIN_LENGTH
            and candidate.lower() not in STOP_WORDS and not similar_stems(original, candidate)
            and is_known_word(candidate.lower())
        )

    def _layout(self, text: str, word_list: list[Word]) -> _Layout:
        pieces, piece_of, cursor = [], {}, 0
        for word in word_list:
            if word.eligible and word.index > 0 and word.start >= 1 and text[word.start - 1] == " " and (
                word.start < 2 or not text[word.start - 2].isspace()
            ):
                pieces.append(text[cursor:word.start - 1])
                piece_of[word.index] = len(pieces)
                pieces.append(text[word.start - 1:word.end])
                cursor = word.end
        pieces.append(text[cursor:])
        return _Layout(pieces, piece_of)

    def _piece_ids(self, pieces: list[str]) -> tuple[list[int], np.ndarray]:
        """Concatenated token ids of the pieces and the token offset where each piece starts (plus the end)."""
        encoded = self.tokenizer(pieces, add_special_tokens=False)["input_ids"]
        bounds = np.concatenate([[0], np.cumsum([len(e) for e in encoded])])
        return [t for e in encoded for t in e], bounds

    @torch.no_grad()
    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits ``(B, W, V)`` (float32, CPU) of right-padded rows in one forward pass."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            batch[r, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[r, :len(row)] = 1
        device = next(self.model.parameters()).device
        return self.model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits.float().cpu()

    def _token_logprobs(self, ids: list[int]) -> np.ndarray:
        """log p(ids[t] | ids[:t]) for every t (0 for t = 0).

        Long inputs are cut into ``chunk_tokens`` chunks, each with up to a quarter chunk of
        preceding context, and all chunks go through the model as one padded batch.
        """
        n, size = len(ids), self.chunk_tokens
        context = size // 4
        starts = list(range(0, n, size))
        rows = [ids[max(0, s - context): s + size] for s in starts]
        logits = self._logits(rows)[:, :-1]
        targets = torch.zeros(logits.shape[:2], dtype=torch.long)
        for r, row in enumerate(rows):
            targets[r, :len(row) - 1] = torch.tensor(row[1:], dtype=torch.long)
        token_lp = (logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)).numpy()
        out = np.zeros(n)
        for r, s in enumerate(starts):
            offset = max(0, s - context)
            first, last = max(s, 1), min(s + size, n)
            out[first:last] = token_lp[r, first - offset - 1:last - offset - 1]
        return out

    def _propose(self, layout: _Layout, wanted: list[int]) -> list[np.ndarray]:
        """Token ids the LM expects at each wanted word when it re-writes the text, best first.

        The "copy" prompt: the model reads a segment, then ``REWRITE_HEADER``, then the same
        segment again. At each word of the second copy it has seen the whole sentence,
        right context included, and the word itself; its top prediction is the word, and
        the next ones are words that could stand in the same place with the same meaning
        ("hit" -> "struck", "devastated"; "conditions" -> "circumstances", "factors").
        One forward pass proposes for every word of a segment at once; segments of about
        ``chunk_tokens`` tokens are batched together.
        """
        encoded = self.tokenizer(layout.pieces, add_special_tokens=False)["input_ids"]
        header = self.tokenizer(REWRITE_HEADER, add_special_tokens=False)["input_ids"]
        segments, current, size = [], [], 0
        for p, piece_ids in enumerate(encoded):
            if current and size + len(piece_ids) > self.chunk_tokens:
                segments.append(current)
                current, size = [], 0
            current.append(p)
            size += len(piece_ids)
        segments.append(current)
        piece_to_word = {layout.piece_of[i]: i for i in wanted}
        rows, where = [], {}
        for segment in segments:
            ids = [t for p in segment for t in encoded[p]]
            offset = len(ids) + len(header)
            for p in segment:
                if p in piece_to_word:
                    where[piece_to_word[p]] = (len(rows), offset - 1)
                offset += len(encoded[p])
            rows.append(ids + header + ids)
        logits = self._logits(rows)
        picked = torch.stack([logits[r, c] for r, c in (where[i] for i in wanted)])
        return list(picked.topk(self.proposals, dim=-1).indices.numpy())

    def _keep_meaning(self, text: str, word_list: list[Word], proposed: dict[int, list[str]]) -> dict[int, list[str]]:
        """Check (a): MiniLM similarity of each position's window with and without the substitute."""
        if not proposed:
            return {}
        sentences = sentence_spans(text)
        windows, rows = [], []
        for i, options in proposed.items():
            word = word_list[i]
            s_start, s_end = next(((a, b) for a, b in sentences if a <= word.start < b), (0, len(text)))
            lo = max(word_list[max(0, i - self.context_words)].start, s_start)
            hi = min(word_list[min(len(word_list) - 1, i + self.context_words)].end, s_end)
            lo, hi = min(lo, word.start), max(hi, word.end)
            left, right = text[lo:word.start], text[word.end:hi]
            windows.append(left + word.text + right)
            rows.append((i, len(windows) - 1, [(c, len(windows) + j) for j, c in enumerate(options)]))
            windows.extend(left + c + right for c in options)
        emb = self._embed(windows)
        kept = {}
        for i, original_row, options in rows:
            good = [c for c, row in options if float(emb[row] @ emb[original_row]) >= self.similarity]
            if good:
                kept[i] = good
        return kept

    def _embed(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        return torch.cat([sentence_embeddings(texts[s:s + batch_size], self.embedder) for s in range(0, len(texts), batch_size)])


def _span_logprob(cumulative: np.ndarray, bounds: np.ndarray, piece: int, right_tokens: int) -> float:
    """Summed log-prob of a word piece's tokens and up to ``right_tokens`` tokens of the next piece."""
    end = min(bounds[piece + 1] + right_tokens, bounds[piece + 2] if piece + 2 < len(bounds) else bounds[-1])
    return float(cumulative[end] - cumulative[bounds[piece]])
