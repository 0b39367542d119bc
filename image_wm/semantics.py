"""Caption -> sentence embedding, the semantic input of SEAL.

Why here and not in the scheme: a scheme never loads models (``image_wm.schemes.base``), so
the pipeline captions the image, embeds the caption with this module and hands the unit
vectors to ``SEAL.initial_latents`` / ``SEAL.detect`` (and ``SEAL.generate`` captions through it).

The embedding is the core's (``provenance.embeddings``: all-MiniLM-L6-v2, mean-pooled,
L2-normalised). The paper fine-tunes a paraphrase-mpnet encoder on (caption before, caption
after regeneration) pairs; we use the stock local MiniLM (no network), so caption
instability is absorbed by caption variants at detection instead (``CaptionEmbedder``).
On the reference model that is not enough: its generated images' captions change with the noise
(0 of 72 SEAL images kept their keyed caption) and the top 3 variants rarely contain the keyed
one, which is why ``SEAL.generate`` keeps each image's best-matching keying (figures in
``docs/images.md``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from provenance.embeddings import default_embedder, sentence_embeddings

__all__ = ["sentence_embeddings", "CaptionEmbedder", "VariantCaptioner"]


class VariantCaptioner(Protocol):
    """Anything that gives ``n`` captions per image, the first the plain caption."""

    def caption_variants(self, images: np.ndarray, n: int) -> list[list[str]]: ...


class CaptionEmbedder:
    """Images -> ``V`` caption variants each (``captioner``) -> embeddings ``(B, V, d)``.

    The embedder defaults to the local MiniLM, loaded on first use; the captioner is the model
    provider's (``image_wm.loading``), since it must describe what that model draws.
    """

    def __init__(self, captioner: VariantCaptioner, embedder: tuple[Any, Any] | None = None,
                 device: str | torch.device | None = None):
        self.captioner, self._embedder, self.device = captioner, embedder, device

    @property
    def embedder(self) -> tuple[Any, Any]:
        if self._embedder is None:
            self._embedder = default_embedder(None if self.device is None else str(self.device))
        return self._embedder

    def captions(self, images: np.ndarray, variants: int = 1) -> list[list[str]]:
        """``variants`` captions per image (first: the plain caption)."""
        if variants < 1:
            raise ValueError(f"variants must be at least 1, got {variants}")
        return self.captioner.caption_variants(images, variants)

    def embed(self, images: np.ndarray, variants: int = 1) -> torch.Tensor:
        """Embeddings ``(B, V, d)`` of ``V = variants`` captions of each uint8 ``(B, H, W, 3)`` image.

        An image with fewer distinct captions than asked repeats its last one, so ``V`` is fixed.
        """
        per_image = [c + c[-1:] * (variants - len(c)) for c in self.captions(images, variants)]
        flat = sentence_embeddings([c for caps in per_image for c in caps], self.embedder)
        return flat.reshape(len(per_image), variants, -1)
