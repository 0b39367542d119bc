"""Keyed integer hashing of token contexts, vectorised and identical on every device.

Why not ``torch.Generator`` per context (as the KGW reference does): seeding a generator
and drawing a permutation for every token costs O(|V|) per token and its output differs
between CPU and CUDA. Here a green-list or partition decision for the pair
``(context, token)`` is a keyed integer hash, so detection is a handful of array
operations over all tokens at once, and the same integers come out on any device.

All arithmetic stays in int64 with values below 2**32 and multipliers below 2**31, so no
intermediate overflows and results are exact everywhere. The generation hot path (one hash
per vocabulary entry per step) runs the same functions on int32 bit patterns with
wrap-around multiplication: 8x faster than int64 on a CPU and bit-identical.
"""

from __future__ import annotations

import sys

import torch

from provenance.keys import WatermarkKey

MASK32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # odd, < 2**31: a well-mixing 32-bit integer hash multiplier
_SIGN = -0x80000000  # int32 sign bit: XOR with it maps unsigned order to signed order
_LOW_HALF = 0 if sys.byteorder == "little" else 1  # index of an int32's low 16 bits in its int16 view


def to_bits(x: torch.Tensor) -> torch.Tensor:
    """int64 values below 2**32 -> int32 tensors holding the same 32-bit patterns."""
    return ((x & MASK32) ^ 0x80000000).sub_(0x80000000).to(torch.int32)


def _signed_word(word: int) -> int:
    return word - 2**32 if word >= 2**31 else word


def fill_like(t: torch.Tensor, word: int) -> torch.Tensor:
    """A tensor shaped like ``t`` holding the 32-bit ``word`` in ``t``'s representation."""
    return torch.full_like(t, _signed_word(word) if t.dtype == torch.int32 else word)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit avalanche mix.

    int64 input: non-negative values below 2**32, exact arithmetic. int32 input: 32-bit
    patterns, wrap-around multiplication and masked (logical) shifts; same bits, 8x faster.
    """
    return _mix32(x, final=True)


def _mix32(x: torch.Tensor, final: bool) -> torch.Tensor:
    """:func:`mix32`; ``final=False`` skips the last ``x ^= x >>> 16`` (see :func:`fold_top16`)."""
    if x.dtype == torch.int32:
        return _mix32_bits_(x.clone(memory_format=torch.contiguous_format), final)
    x = x & MASK32
    x = ((x >> 16) ^ x) * _MULT & MASK32
    x = ((x >> 16) ^ x) * _MULT & MASK32
    return (x >> 16) ^ x if final else x


def _xorshift16_(x: torch.Tensor) -> torch.Tensor:
    """``x ^= x >>> 16`` in place on contiguous int32 bit patterns.

    A logical shift by 16 XOR-ed in only changes the low 16-bit half, by the high half: one
    strided int16 pass instead of an arithmetic shift, a mask and an XOR over the whole tensor.
    Under ``torch.compile`` the plain form is used: it fuses into the surrounding loop, which
    the int16 view would break.
    """
    if torch.compiler.is_compiling():
        return x.bitwise_xor_((x >> 16) & 0xFFFF)
    halves = x.view(torch.int16).view(*x.shape, 2)
    halves[..., _LOW_HALF].bitwise_xor_(halves[..., 1 - _LOW_HALF])
    return x


def _mix32_bits_(x: torch.Tensor, final: bool = True) -> torch.Tensor:
    """:func:`mix32` of contiguous int32 bit patterns, in place (for temporaries)."""
    _xorshift16_(x).mul_(_MULT)
    _xorshift16_(x).mul_(_MULT)
    return _xorshift16_(x) if final else x


def key_words(key: WatermarkKey, purpose: str, count: int = 4) -> list[int]:
    """``count`` secret 32-bit words from the key's sub-key for ``purpose``."""
    sub = key.subkey(purpose)
    return [int.from_bytes(sub[4 * i : 4 * i + 4], "big") for i in range(count)]


def combine(acc: torch.Tensor, value: torch.Tensor, word: int) -> torch.Tensor:
    """Fold ``value`` into the running hash ``acc`` under a secret word (order-sensitive).

    Both int64 (exact values) or both int32 (bit patterns, see ``mix32``). It is
    ``fold(keyed(acc, word), value)``; generation calls the halves separately so the keyed,
    per-row half stays out of the vocabulary-wide kernels.
    """
    return fold(keyed(acc, word), value)


def keyed(acc: torch.Tensor, word: int | torch.Tensor) -> torch.Tensor:
    """The first half of :func:`combine`: ``mix32(acc ^ word)``.

    ``word`` may be a tensor already in ``acc``'s representation (:func:`word_bits`): compiled
    kernels take key words as tensors, so a new key does not recompile them.
    """
    if acc.dtype == torch.int32:
        bits = word if isinstance(word, torch.Tensor) else _signed_word(word)
        return _mix32_bits_((acc ^ bits).contiguous())
    return mix32(acc ^ word)


def word_bits(words: list[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Secret 32-bit words as an int32 tensor of their bit patterns."""
    return torch.tensor([_signed_word(w) for w in words], dtype=torch.int32, device=device)


def fold(inner: torch.Tensor, value: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The second half of :func:`combine`: ``mix32(inner + value)``, with no key material.

    ``out``: an int32 tensor of the broadcast shape to compute in (generation's scratch).
    """
    return _fold(inner, value, final=True, out=out)


def fold_top16(inner: torch.Tensor, value: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fold` exact in its top 16 bits, all that :func:`bucket` reads.

    Why: mix32's last step ``x ^= x >>> 16`` changes only the low half, so
    ``bucket(fold_top16(a, v)) == bucket(fold(a, v))`` and one pass over the batch x
    vocabulary array per generation step is saved.
    """
    return _fold(inner, value, final=False, out=out)


def _fold(inner: torch.Tensor, value: torch.Tensor, final: bool, out: torch.Tensor | None) -> torch.Tensor:
    if inner.dtype == torch.int32:
        return _mix32_bits_(torch.add(inner, value, out=out).contiguous(), final)
    if out is not None:
        raise ValueError("out= is for int32 bit patterns only")
    return _mix32(inner + (value & MASK32), final)


def window_hash(windows: torch.Tensor, start: int, word: int) -> torch.Tensor:
    """``(..., width)`` token windows -> ``(...)`` int64 hashes: the ids folded in order from ``start``."""
    acc = torch.full(windows.shape[:-1], start, dtype=torch.long, device=windows.device)
    for position in range(windows.shape[-1]):
        acc = combine(acc, windows[..., position].long(), word)
    return acc


def below(h: torch.Tensor, threshold: int) -> torch.Tensor:
    """``h < threshold`` for hashes as unsigned 32-bit numbers (int64 values or int32 bits)."""
    if h.dtype != torch.int32:
        return h < threshold
    if threshold >= 2**32:
        return torch.ones_like(h, dtype=torch.bool)
    return (h ^ _SIGN) < threshold + _SIGN


def below_(h: torch.Tensor, threshold: int) -> torch.Tensor:
    """:func:`below` in place on int32 hash bits the caller no longer needs: int32 0/1.

    For the generation kernels: no new tensor, and int32 converts to float faster than bool.
    """
    if threshold >= 2**32:
        return h.fill_(1)
    return h.bitwise_xor_(_SIGN).lt_(threshold + _SIGN)


def bucket(h: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Map 32-bit hashes (int64 values or int32 bits) to ``[0, n)`` by their top 16 bits.

    Multiply-shift range reduction ``floor(h_hi * n / 2**16)``: no integer division (which
    is not vectorised on a CPU and cost a third of a vocabulary-wide generation step), the
    same integers on both representations, and every bucket gets ``floor`` or ``ceil`` of
    ``2**16 / n`` of the top-16-bit values, a relative deviation from uniform of at most
    ``n / 2**16``. Needs ``n <= 2**15`` so int32 products do not overflow. ``out`` may be
    ``h`` itself (in place, for temporaries).
    """
    if not 0 < n <= 2**15:
        raise ValueError(f"bucket count must lie in [1, 32768], got {n}")
    # one fresh tensor (or out), then in place: each avoided temporary is a large allocation per step
    return torch.bitwise_right_shift(h, 16, out=out).bitwise_and_(0xFFFF).mul_(n).bitwise_right_shift_(16)


def unsigned_min(h: torch.Tensor, dim: int) -> torch.Tensor:
    """Minimum over ``dim`` of hashes as unsigned 32-bit numbers (int64 values or int32 bits)."""
    if h.dtype != torch.int32:
        return h.min(dim=dim).values
    return (h ^ _SIGN).min(dim=dim).values ^ _SIGN


def context_windows(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """``(..., T) -> (..., T - width, width)``: the ``width`` tokens before each scored position."""
    return tokens.unfold(-1, width, 1)[..., :-1, :]
