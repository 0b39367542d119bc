"""Keyed integer hashing of token contexts, vectorised and identical on every device.

Why not ``torch.Generator`` per context (as the KGW reference does): seeding a generator
and drawing a permutation for every token costs O(|V|) per token and its output differs
between CPU and CUDA. Here a green-list or partition decision for the pair
``(context, token)`` is a keyed integer hash, so detection is a handful of array
operations over all tokens at once, and the same integers come out on any device.

All arithmetic stays in int64 with values below 2**32 and multipliers below 2**31, so no
intermediate overflows and results are exact everywhere.
"""

from __future__ import annotations

import torch

from provenance.keys import WatermarkKey

MASK32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # odd, < 2**31: a well-mixing 32-bit integer hash multiplier


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit avalanche mix of non-negative int64 values below 2**32."""
    x = x & MASK32
    x = ((x >> 16) ^ x) * _MULT & MASK32
    x = ((x >> 16) ^ x) * _MULT & MASK32
    return (x >> 16) ^ x


def key_words(key: WatermarkKey, purpose: str, count: int = 4) -> list[int]:
    """``count`` secret 32-bit words from the key's sub-key for ``purpose``."""
    sub = key.subkey(purpose)
    return [int.from_bytes(sub[4 * i : 4 * i + 4], "big") for i in range(count)]


def combine(acc: torch.Tensor, value: torch.Tensor, word: int) -> torch.Tensor:
    """Fold ``value`` into the running hash ``acc`` under a secret word (order-sensitive)."""
    return mix32(mix32(acc ^ word) + (value & MASK32))


def uniform_from_hash(h: torch.Tensor) -> torch.Tensor:
    """Map 32-bit hashes to floats in [0, 1)."""
    return h.to(torch.float64) / 2.0**32


def context_windows(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """``(..., T) -> (..., T - width, width)``: the ``width`` tokens before each scored position."""
    return tokens.unfold(-1, width, 1)[..., :-1, :]
