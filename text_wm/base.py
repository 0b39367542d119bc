"""The shape every token-level text watermark shares, and the token plumbing they all need.

Why keyless scheme objects: a scheme is configuration (gamma, delta, key length, ...);
the secret arrives per call. One configured scheme can then serve many keys, and the
key never lives longer than the call that needs it.

Every scheme follows ``TokenWatermark``:
- ``processor(key, vocab) -> transformers.LogitsProcessor`` for ``model.generate``
  (schemes that replace sampling, EXP and ITS, return a processor that forces the
  token their sampler picked, so generation still goes through ``generate``); what a
  processor decides per generation (EXP/ITS's key shift) is in its ``settings``;
- ``detect(tokens, key, tokenizer=None, fpr=...)`` and ``detect_batch`` with a real p-value;
- multi-bit schemes (``PayloadTokenWatermark``) carry ``payload_bytes`` and add ``decode``.
The black-box watermark, applied after generation, follows ``PostHocTextWatermark``.

``processor`` also takes ``compile=True`` to fuse the step's vocabulary-wide work
(:mod:`text_wm.kernels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import LogitsProcessor

from provenance.keys import WatermarkKey
from provenance.result import DetectionResult, UnscoreableInput

TokenInput = str | Sequence[int] | torch.Tensor


@runtime_checkable
class TokenWatermark(Protocol):
    """A watermark in the sampler: a logits processor to generate with, a calibrated test to detect.

    ``detect`` tests one text, ``detect_batch`` many (each result equal to ``detect``'s); both take
    the false-positive rate ``fpr`` the decision is made at.
    """

    name: str

    def processor(self, key: WatermarkKey, vocab: Any) -> LogitsProcessor: ...

    def detect(self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, *,
               fpr: float = 0.01) -> DetectionResult: ...

    def detect_batch(self, texts: Sequence[TokenInput], key: WatermarkKey, tokenizer: Any = None, *,
                     fpr: float = 0.01) -> list[DetectionResult]: ...


@runtime_checkable
class PayloadTokenWatermark(TokenWatermark, Protocol):
    """A multi-bit sampler watermark: it embeds ``payload_bytes`` bytes (``processor(..., payload=)``),
    and ``decode`` reads them back whether or not the watermark is detected."""

    @property
    def payload_bytes(self) -> int: ...

    def decode(self, tokens: TokenInput, key: WatermarkKey, tokenizer: Any = None, *,
               fpr: float = 0.01) -> DetectionResult: ...

    def decode_batch(self, texts: Sequence[TokenInput], key: WatermarkKey, tokenizer: Any = None, *,
                     fpr: float = 0.01) -> list[DetectionResult]: ...


@runtime_checkable
class PostHocTextWatermark(Protocol):
    """A watermark applied to finished text from any source (no sampler), and its calibrated test."""

    name: str

    def watermark(self, text: str, key: WatermarkKey) -> Any: ...

    def detect(self, text: str, key: WatermarkKey, tokenizer: Any = None, *, fpr: float = 0.01) -> DetectionResult: ...


def vocab_size_of(vocab: Any) -> int:
    """Accept an int or a tokenizer; the tokenizer's full length covers added special tokens."""
    if isinstance(vocab, int):
        return vocab
    if hasattr(vocab, "__len__"):
        return len(vocab)
    raise TypeError("vocab must be a vocabulary size or a tokenizer")


def as_token_ids(tokens: TokenInput, tokenizer: Any = None) -> torch.Tensor:
    """A 1-D int64 CPU tensor of token ids; text is tokenized without special tokens.

    Raises ``UnscoreableInput`` (a ``ValueError``) for empty input, so a detector never
    returns a p-value for nothing.
    """
    if isinstance(tokens, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to detect a watermark in raw text")
        if not tokens.strip():
            raise UnscoreableInput("cannot detect a watermark in empty text")
        ids = torch.tensor(tokenizer(tokens, add_special_tokens=False)["input_ids"], dtype=torch.long)
    else:
        ids = torch.as_tensor(tokens, dtype=torch.long).detach().cpu()
        if ids.dim() != 1:
            raise ValueError("token ids must be one-dimensional (one text at a time)")
    if ids.numel() == 0:
        raise UnscoreableInput("cannot detect a watermark in an empty token sequence")
    return ids
