"""Copyright traps (Meeus et al., ICML 2024; fuzzy traps: Shilov, Meeus and de Montjoye, 2024).

A trap is a synthetic token sequence, unlikely to occur anywhere else, that a data owner inserts
many times into their documents. A model trained on the documents memorises it; whether a
suspect model did is then a membership-inference test on the traps against held-out traps from
the same generator that were never published.

``make_traps`` samples candidate sequences of a fixed token length from a causal LM at several
temperatures (so the traps span perplexities: the paper finds only high-perplexity, long, often
repeated traps are memorised by a 1.3B model), drops near-duplicates (token-set Jaccard), sorts
them into perplexity buckets and gives each a keyed id; every draw comes from the key, so the
same key and settings make the same traps. Half of each bucket is kept back as non-members.
``fuzzy_copies`` makes the fuzzy variants: ``R`` positions of a trap replaced by tokens the LM
finds plausible there (its top candidates other than the original), a different variant per
repetition. ``inject`` inserts each member trap ``n`` times at keyed random whitespace positions
of the user's documents and returns new documents and a manifest of what went where.
``verify_traps`` tests a suspect model: member traps against held-out ones, by the Ratio score.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from provenance.keys import WatermarkKey

TEMPERATURES = (0.7, 1.0, 1.3)
MAX_JACCARD = 0.5  # candidates sharing more of their token set with a kept trap are dropped
ALTERNATIVES = 5  # a fuzzy position takes one of the LM's top candidates other than the original
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Trap:
    """One trap sequence: ``trap_id`` is keyed (HMAC of its tokens), ``member`` says whether it is to be injected."""

    trap_id: str
    text: str
    token_ids: tuple[int, ...]
    perplexity: float
    temperature: float
    bucket: int
    member: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "token_ids": list(self.token_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trap":
        return cls(**{**data, "token_ids": tuple(data["token_ids"])})


def token_nll(model: Any, sequences: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Negative log-likelihood ``(B, L - 1)`` of every token but the first of each row of ``sequences`` (B, L)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch):
            rows = sequences[start:start + batch].to(model.device)
            logits = model(input_ids=rows).logits[:, :-1].float()
            out.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none").cpu())
    return torch.cat(out)


def sequence_nll(model: Any, sequences: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per token of each row of ``sequences`` (B, L), every token but the first."""
    return token_nll(model, sequences).mean(dim=1)


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / max(1, len(a | b))


def make_traps(model: Any, tokenizer: Any, key: WatermarkKey, count: int, length: int, *,
               temperatures: Sequence[float] = TEMPERATURES, buckets: int = 3, batch: int = 16) -> list[Trap]:
    """``count`` member traps and ``count`` held-out non-members of ``length`` tokens, reproducible from ``key``.

    Candidates are sampled from the beginning-of-text token at each temperature in turn until
    ``2 * count`` survive deduplication; each perplexity bucket is split evenly (within one), by a
    keyed shuffle, into members and non-members.
    """
    if count < 1 or length < 2:
        raise ValueError("traps need count >= 1 and length >= 2")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    kept: list[tuple[tuple[int, ...], float]] = []
    seen: list[set[int]] = []
    for round_index in range(64):
        if len(kept) >= 2 * count:
            break
        temperature = float(temperatures[round_index % len(temperatures)])
        torch.manual_seed(key.seed("traps/sample", length, round_index))
        prompt = torch.full((batch, 1), start, dtype=torch.long, device=model.device)
        with torch.inference_mode():
            out = model.generate(prompt, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=length, min_new_tokens=length, pad_token_id=tokenizer.eos_token_id)
        rows = out[:, 1:1 + length].cpu()
        for row in rows:
            tokens = tuple(int(t) for t in row)
            members = set(tokens)
            if len(kept) < 2 * count and all(_jaccard(members, other) <= MAX_JACCARD for other in seen):
                kept.append((tokens, temperature))
                seen.append(members)
    if len(kept) < 2 * count:
        raise ValueError(f"only {len(kept)} distinct traps of {length} tokens could be sampled")
    nll = sequence_nll(model, torch.tensor([tokens for tokens, _ in kept]))
    order = np.argsort(nll.numpy(), kind="stable")
    rng = np.random.default_rng(key.seed("traps/split", length, count))
    traps: list[Trap] = []
    rank = 0  # members alternate over the buckets in turn: exactly ``count`` of them, each bucket split evenly
    for bucket, indices in enumerate(np.array_split(order, buckets)):
        for index in rng.permutation(indices):
            tokens, temperature = kept[int(index)]
            trap_id = hmac.new(key.subkey("traps/id"), np.asarray(tokens, "<i8").tobytes(), "sha256").hexdigest()[:16]
            traps.append(Trap(trap_id, tokenizer.decode(list(tokens)), tokens, math.exp(float(nll[int(index)])),
                              temperature, bucket, member=rank % 2 == 0))
            rank += 1
    return traps


def fuzzy_copies(model: Any, tokenizer: Any, trap: Trap, copies: int, replaced: int, key: WatermarkKey) -> list[str]:
    """``copies`` variants of ``trap``, each with ``replaced`` keyed positions swapped for one of the LM's
    top ``ALTERNATIVES`` candidates there (other than the original token); ``replaced = 0``: exact copies."""
    if replaced == 0:
        return [trap.text] * copies
    tokens = torch.tensor(trap.token_ids)
    with torch.inference_mode():
        logits = model(input_ids=tokens[None].to(model.device)).logits[0, :-1].float().cpu()
    logits = logits.clone()  # out of inference mode: edited in place below
    logits[torch.arange(len(tokens) - 1), tokens[1:]] = -math.inf  # never the original
    candidates = logits.topk(ALTERNATIVES, dim=-1).indices  # (L - 1, ALTERNATIVES): for positions 1..L-1
    rng = np.random.default_rng(key.seed("traps/fuzzy", trap.trap_id, copies, replaced))
    variants = []
    for _ in range(copies):
        variant = tokens.clone()
        positions = rng.choice(np.arange(1, len(tokens)), size=min(replaced, len(tokens) - 1), replace=False)
        variant[positions] = candidates[positions - 1, rng.integers(ALTERNATIVES, size=len(positions))]
        variants.append(tokenizer.decode(variant.tolist()))
    return variants


@dataclass(frozen=True)
class Placement:
    """One inserted copy: ``document`` index, character ``offset`` in the new document, ``trap_id``, ``copy``."""

    document: int
    offset: int
    trap_id: str
    copy: int


def inject(documents: Sequence[str], copies: dict[str, list[str]], key: WatermarkKey) -> tuple[list[str], list[Placement]]:
    """New documents with every copy of every trap (``copies[trap_id]``) inserted at a keyed random
    whitespace position of a keyed random document, and where each went."""
    if not documents:
        raise ValueError("no documents to insert traps into")
    rng = np.random.default_rng(key.seed("traps/inject", len(documents), ",".join(sorted(copies))))
    inserts: list[list[tuple[int, str, str, int]]] = [[] for _ in documents]
    for trap_id in sorted(copies):
        for index, text in enumerate(copies[trap_id]):
            target = int(rng.integers(len(documents)))
            gaps = [m.end() for m in _WHITESPACE.finditer(documents[target])] or [len(documents[target])]
            inserts[target].append((gaps[int(rng.integers(len(gaps)))], trap_id, text, index))
    out, placements = [], []
    for number, (document, items) in enumerate(zip(documents, inserts)):
        pieces, last, shift = [], 0, 0
        for position, trap_id, text, index in sorted(items, key=lambda item: (item[0], item[1], item[3])):
            pieces.append(document[last:position])
            placements.append(Placement(number, position + shift, trap_id, index))
            pieces.append(text.strip() + " ")
            shift += len(text.strip()) + 1
            last = position
        pieces.append(document[last:])
        out.append("".join(pieces))
    return out, placements


@dataclass(frozen=True)
class TrapVerdict:
    """Was a suspect model trained on the trapped documents? One rank test decides; the AUCs describe."""

    detected: bool
    p_value: float
    fpr: float
    auc_ratio: float
    auc_loss: float
    auc_min_k: float
    members: int
    non_members: int
    test: str = ("one-sided Mann-Whitney U of the Ratio score (log-perplexity under the suspect minus under the "
                 "reference) of member traps against held-out ones; H0: the suspect never saw either set, so the "
                 "two sets' scores are exchangeable")

    def summary(self) -> str:
        verdict = "TRAINED ON the trapped documents" if self.detected else "no evidence of training"
        return (f"{verdict}  p={self.p_value:.3g}  AUC ratio={self.auc_ratio:.3f} loss={self.auc_loss:.3f} "
                f"min-k={self.auc_min_k:.3f}  ({self.members} members vs {self.non_members} held out)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_traps(suspect: Any, reference: Any, traps: Sequence[Trap], *, fpr: float = 0.01,
                 k_percent: float = 20.0) -> TrapVerdict:
    """Membership inference of the member traps against the held-out ones (same generator, never published).

    Scores per trap (lower: more likely trained on): Ratio = mean token NLL under ``suspect`` minus under
    ``reference`` (the paper's test; the reference, e.g. the suspect's base model, cancels how
    predictable the sequence is anyway), LOSS = mean NLL under the suspect, Min-K% = mean NLL of its
    ``k_percent`` % least likely tokens under the suspect. The p-value is the Ratio's rank test.
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie strictly between 0 and 1, got {fpr}")
    members = [t for t in traps if t.member]
    held_out = [t for t in traps if not t.member]
    if len(members) < 2 or len(held_out) < 2:
        raise ValueError("verification needs at least two member and two held-out traps")
    if len({len(t.token_ids) for t in traps}) != 1:
        raise ValueError("the traps of one verification must share a length")
    ids = torch.tensor([t.token_ids for t in [*members, *held_out]])
    suspect_nll = token_nll(suspect, ids)
    loss = suspect_nll.mean(dim=1).numpy()
    ratio = loss - token_nll(reference, ids).mean(dim=1).numpy()
    keep = max(1, int(suspect_nll.shape[1] * k_percent / 100))
    min_k = suspect_nll.sort(dim=1, descending=True).values[:, :keep].mean(dim=1).numpy()
    split = len(members)

    def auc(score: np.ndarray) -> float:
        return float(stats.mannwhitneyu(score[split:], score[:split], alternative="greater").statistic
                     / (split * (len(score) - split)))

    test = stats.mannwhitneyu(ratio[split:], ratio[:split], alternative="greater")
    return TrapVerdict(detected=bool(test.pvalue <= fpr), p_value=float(test.pvalue), fpr=fpr, auc_ratio=auc(ratio),
                       auc_loss=auc(loss), auc_min_k=auc(min_k), members=split, non_members=len(held_out))
