"""LexiMark dataset watermark (German et al., 2025): rarer synonyms, verified by membership inference.

Why it works: a model fine-tuned on a document memorises its unusual tokens most, and rare
words are where memorisation shows. Marking swaps the ``k`` rarest eligible words of each
sentence for still rarer synonyms (lowest wordfreq frequency, i.e. highest surprisal),
keeping meaning; the same word gets the same substitute across the whole dataset, so a
marked corpus carries a consistent, unusual vocabulary. Verification asks whether a model
assigns the owner's marked documents (the suspect set, published and possibly trained on)
higher Min-K%++ scores than marked documents the owner kept back (the reference set).

Departures from the reference code (``eyalgerman/LexiMark``): candidates come from
:mod:`text_wm.synonyms` (the local LM's own proposals, vetted by MiniLM similarity and LM
fluency) instead of WordNet + BERT similarity; rarity is wordfreq's Zipf frequency
(lowest Zipf = highest ``-p log p`` for the rare words concerned); sentences are split by
punctuation, not spaCy. Because a rarer word costs log-probability by itself, the default
proposer allows a fluency margin of 4 nats instead of 2.

Null hypothesis of :func:`verify`: the model was not trained on the suspect documents, and
suspect and reference documents were assigned at random from one pool of marked
documents, so their scores are exchangeable and the Mann-Whitney U statistic has its
permutation null. The p-value is one-sided (suspect scores larger).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats as scipy_stats

from provenance import stats
from text_wm.synonyms import SynonymProposer, apply_replacements, match_case, sentence_spans, words

LEXIMARK_FLUENCY_MARGIN = 4.0


def zipf(word: str) -> float:
    """wordfreq Zipf frequency of a word in English (0 for unknown words)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word.lower(), "en")


@dataclass
class LexiMarked:
    """A marked document and the substitutions made in it (``original -> substitute``, lowercase)."""

    text: str
    replacements: dict[str, str]


class LexiMark:
    """Marks documents consistently: one replacement map shared by every call of one instance."""

    def __init__(self, proposer: SynonymProposer | None = None, k: int = 5, candidates: int = 5, rounds: int = 2,
                 replacement_map: dict[str, str] | None = None) -> None:
        if k < 1 or candidates < 1 or rounds < 1:
            raise ValueError("k, candidates and rounds must be at least 1")
        self.proposer = proposer if proposer is not None else SynonymProposer(fluency_margin=LEXIMARK_FLUENCY_MARGIN)
        self.k, self.candidates, self.rounds = k, candidates, rounds
        self.replacement_map: dict[str, str] = dict(replacement_map or {})

    def targets(self, text: str) -> list[int]:
        """Word indices of the ``k`` rarest eligible known words of each sentence (one per distinct word)."""
        word_list = words(text)
        chosen = []
        for start, end in sentence_spans(text):
            seen, ranked = set(), []
            for w in word_list:
                if start <= w.start < end and w.eligible and w.text.lower() not in seen and zipf(w.text) > 0:
                    seen.add(w.text.lower())
                    ranked.append((zipf(w.text), w.index))
            chosen.extend(index for _, index in sorted(ranked)[: self.k])
        return sorted(chosen)

    def mark(self, text: str) -> LexiMarked:
        """Mark one document; words seen before in this instance reuse their substitute."""
        if not text.strip():
            raise ValueError("cannot mark empty text")
        word_list = words(text)
        targets = self.targets(text)
        fixed = {i: match_case(word_list[i].text, self.replacement_map[word_list[i].text.lower()])
                 for i in targets if word_list[i].text.lower() in self.replacement_map}
        fresh = [i for i in targets if i not in fixed]
        options = self.proposer.candidates(
            text, fresh, k=self.candidates, accept=lambda original, candidate: 0 < zipf(candidate) < zipf(original)
        )
        rarest_first = {i: sorted(opts, key=zipf) for i, opts in options.items()}
        chosen = self.proposer.substitute(text, rarest_first, rounds=self.rounds)
        applied: dict[str, str] = {}
        for i, new in sorted(chosen.items()):
            original = word_list[i].text.lower()
            substitute = self.replacement_map.setdefault(original, new.lower())
            fixed[i] = match_case(word_list[i].text, substitute)
        for i, new in fixed.items():
            applied[word_list[i].text.lower()] = new.lower()
        return LexiMarked(apply_replacements(text, fixed, word_list), applied)

    def mark_dataset(self, docs: Sequence[str]) -> list[LexiMarked]:
        return [self.mark(doc) for doc in docs]


@torch.no_grad()
def min_k_plus_plus(model: Any, tokenizer: Any, docs: Sequence[str], k_percent: float = 20.0,
                    max_tokens: int = 256, batch_size: int = 4) -> np.ndarray:
    """Min-K%++ membership score of each document (higher: more likely trained on).

    Per token, ``(log p(x_t) - mu_t) / sigma_t`` with ``mu_t``, ``sigma_t`` the mean and
    standard deviation of ``log p(v)`` for ``v ~ p(. | x_<t)``, the model's next-token
    distribution; the score is the mean of the lowest ``k_percent`` % of these (at least
    one token). Documents are truncated to ``max_tokens`` tokens and need at least two.
    """
    if not 0 < k_percent <= 100:
        raise ValueError(f"k_percent must lie in (0, 100], got {k_percent}")
    if not docs:
        raise ValueError("no documents to score")
    device = next(model.parameters()).device
    scores = []
    for s in range(0, len(docs), batch_size):
        encoded = [tokenizer(d, add_special_tokens=False)["input_ids"][:max_tokens] for d in docs[s:s + batch_size]]
        if any(len(e) < 2 for e in encoded):
            raise ValueError("every document needs at least two tokens to score")
        width = max(len(e) for e in encoded)
        ids = torch.zeros((len(encoded), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(encoded):
            ids[r, :len(e)], mask[r, :len(e)] = torch.tensor(e), 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        probs = logp.exp()
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp_min(1e-12).sqrt()
        token_lp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        per_token = ((token_lp - mu) / sigma).cpu()
        valid = mask[:, 1:].bool()
        counts = valid.sum(-1)
        keep = torch.clamp((counts * k_percent / 100.0).floor().long(), min=1)
        ordered = per_token.masked_fill(~valid, math.inf).sort(dim=-1).values
        lowest = torch.arange(ordered.shape[1]).unsqueeze(0) < keep.unsqueeze(1)
        scores.append((ordered.masked_fill(~lowest, 0.0).sum(-1) / keep).numpy())
    return np.concatenate(scores)


@dataclass
class MembershipResult:
    """Outcome of LexiMark verification: do suspect documents score higher than reference ones?"""

    detected: bool
    p_value: float
    auroc: float
    fpr: float
    n_suspect: int
    n_reference: int
    mean_suspect: float
    mean_reference: float
    k_percent: float
    test: str = "one-sided Mann-Whitney U of Min-K%++ scores, H0: suspect and reference scores exchangeable"

    def summary(self) -> str:
        verdict = "TRAINED ON (suspect set)" if self.detected else "no evidence of training"
        return f"{verdict}  p={self.p_value:.3g}  AUROC={self.auroc:.3f}  (n={self.n_suspect} vs {self.n_reference})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(model: Any, tokenizer: Any, suspect_docs: Sequence[str], reference_docs: Sequence[str],
           k_percent: float = 20.0, fpr: float = 0.01, max_tokens: int = 256) -> MembershipResult:
    """Test whether ``model`` was trained on ``suspect_docs`` (null hypothesis in the module docstring).

    Both sets should be LexiMark-marked documents from one pool, split at random before
    publication; the reference set is never published.
    """
    stats.check_fpr(fpr)
    if len(suspect_docs) < 2 or len(reference_docs) < 2:
        raise ValueError("verification needs at least two suspect and two reference documents")
    suspect = min_k_plus_plus(model, tokenizer, suspect_docs, k_percent, max_tokens)
    reference = min_k_plus_plus(model, tokenizer, reference_docs, k_percent, max_tokens)
    test = scipy_stats.mannwhitneyu(suspect, reference, alternative="greater")
    auroc = float(test.statistic) / (len(suspect) * len(reference))
    return MembershipResult(
        detected=bool(test.pvalue <= fpr), p_value=float(test.pvalue), auroc=auroc, fpr=fpr,
        n_suspect=len(suspect), n_reference=len(reference), mean_suspect=float(suspect.mean()),
        mean_reference=float(reference.mean()), k_percent=k_percent,
    )
