"""Sentence embeddings, a core service both modalities use: SEAL embeds image captions with them,
the black-box text watermark vets synonyms with them, and audits measure text similarity.

The recipe is sentence-transformers' for all-MiniLM-L6-v2: the encoder's last token states,
mean-pooled over the attention mask, L2-normalised. The default encoder is the local MiniLM
(``provenance.models.load_embedder``, no network), loaded once per device.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from provenance.models import load_embedder


@lru_cache(maxsize=4)
def default_embedder(device: str | None = None) -> tuple[Any, Any]:
    """The local MiniLM ``(model, tokenizer)``, loaded once per device (``None``: the default device)."""
    return load_embedder(device=device)


@torch.no_grad()
def sentence_embeddings(texts: list[str], embedder: tuple[Any, Any] | None = None) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(N, d)`` (float32, CPU); ``embedder`` = ``(model, tokenizer)``."""
    model, tokenizer = embedder if embedder is not None else default_embedder(None)
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    device = next(model.parameters()).device
    batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(device)
    states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).float().cpu()
