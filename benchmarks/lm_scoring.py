"""Negative log-likelihood of token continuations under a causal LM, batched (the perplexity figures)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def continuation_nll(model, contexts: Sequence[torch.Tensor], continuations: Sequence[torch.Tensor],
                     batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the summed NLL of the continuation's tokens (each given everything before it) and their count.

    Each context needs at least one token (score a whole text as ``ids[:1]``, ``ids[1:]``).
    Rows are right-padded with an attention mask, so padding never conditions a scored token.
    """
    sums, counts = [], []
    with torch.inference_mode():
        for start in range(0, len(contexts), batch):
            pairs = list(zip(contexts[start : start + batch], continuations[start : start + batch]))
            length = max(len(c) + len(x) for c, x in pairs)
            ids = torch.zeros(len(pairs), length, dtype=torch.long)
            mask = torch.zeros_like(ids)
            scored = torch.zeros(len(pairs), length - 1)
            for row, (context, continuation) in enumerate(pairs):
                end = len(context) + len(continuation)
                ids[row, :end] = torch.cat([context, continuation])
                mask[row, :end] = 1
                scored[row, len(context) - 1 : end - 1] = 1  # logits at t predict token t + 1
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, :-1]
            nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:].to(model.device),
                                                    reduction="none").cpu()
            sums.extend((nll * scored).sum(1).tolist())
            counts.extend(scored.sum(1).tolist())
    return np.array(sums), np.array(counts)
