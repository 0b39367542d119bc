"""Reed-Solomon protection for watermark payloads, over bits.

Why Reed-Solomon: watermark channels (image crops, JPEG, paraphrases) corrupt extracted
bits in bursts, and RS corrects whole byte symbols, so up to 8 wrong bits in one byte cost
a single symbol. Detectors also know which bits they are unsure of; marking those bytes as
erasures doubles what the parity can repair (``2 * errors + erasures <= parity_bytes``).

Symbols are bytes of GF(2^8) (via ``reedsolo``), so a codeword has at most 255 bytes. Bits
are packed MSB-first within each byte (``np.packbits`` / ``np.unpackbits`` order).

Limit inherent to any bounded-distance decoder: with more errors than the code can
correct, the received word may lie within ``max_errors`` symbols of a *different*
codeword, and decoding then "succeeds" with a wrong payload. Decoding rejects every
result that is not a valid codeword within the correction radius, but cannot detect that
case; callers that must not accept a wrong payload should add a check (a CRC, or the
detector's own p-value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from reedsolo import ReedSolomonError, RSCodec

MAX_CODEWORD_BYTES = 255
"""Longest RS codeword over GF(2^8) (one ``reedsolo`` chunk)."""


class ReedSolomonDecodeError(ValueError):
    """The received bits are too corrupted to recover the payload."""


@dataclass(frozen=True)
class RSDecodeResult:
    """A recovered payload and how much repair it needed.

    ``corrected_symbols`` counts byte positions where the received word differs from the
    corrected codeword (erased bytes that happened to be right are not counted);
    ``erasures`` is how many byte positions were treated as erased.
    """

    payload: bytes
    payload_bits: np.ndarray
    corrected_symbols: int
    erasures: int


@lru_cache(maxsize=None)
def _codec(parity_bytes: int) -> RSCodec:
    """One shared codec per parity size: building the generator polynomial is not free."""
    return RSCodec(parity_bytes)


def _as_bits(bits: ArrayLike, length: int, name: str) -> np.ndarray:
    """Validate a 1-d array of exactly ``length`` hard bits (0/1) and return it as uint8."""
    array = np.asarray(bits)
    if array.shape != (length,):
        raise ValueError(f"{name} must be a 1-d array of {length} bits, got shape {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return array.astype(np.uint8)


@dataclass(frozen=True)
class ReedSolomonCode:
    """A shortened RS code with ``payload_bytes`` data and ``parity_bytes`` check bytes.

    ``payload_bits`` (default ``8 * payload_bytes``) is how many leading bits of the data
    bytes carry payload; a bit payload shorter than whole bytes is zero-padded at the end.
    The code corrects up to ``max_errors`` unknown byte errors, or any mix with
    ``2 * errors + erasures <= parity_bytes``.
    """

    payload_bytes: int
    parity_bytes: int
    payload_bits: int | None = None

    def __post_init__(self) -> None:
        if self.payload_bytes < 1:
            raise ValueError(f"payload_bytes must be at least 1, got {self.payload_bytes}")
        if self.parity_bytes < 2:
            raise ValueError(f"parity_bytes must be at least 2 to correct any error, got {self.parity_bytes}")
        if self.payload_bytes + self.parity_bytes > MAX_CODEWORD_BYTES:
            raise ValueError(
                f"payload_bytes + parity_bytes = {self.payload_bytes + self.parity_bytes} "
                f"exceeds the GF(2^8) codeword limit of {MAX_CODEWORD_BYTES} bytes"
            )
        if self.payload_bits is None:
            object.__setattr__(self, "payload_bits", 8 * self.payload_bytes)
        elif not 8 * (self.payload_bytes - 1) < self.payload_bits <= 8 * self.payload_bytes:
            raise ValueError(f"payload_bits={self.payload_bits} does not need exactly {self.payload_bytes} bytes")

    @classmethod
    def for_bits(cls, payload_bits: int, total_bits: int) -> ReedSolomonCode:
        """The strongest code carrying ``payload_bits`` within a budget of ``total_bits`` bits.

        Uses ``ceil(payload_bits / 8)`` payload bytes and every further whole byte of the
        budget as parity. ``encode`` returns exactly ``n_bits`` bits, so the
        ``total_bits - n_bits`` (< 8) trailing bits of the budget are left to the caller.
        """
        if payload_bits < 1:
            raise ValueError(f"payload_bits must be at least 1, got {payload_bits}")
        payload_bytes = math.ceil(payload_bits / 8)
        parity_bytes = total_bits // 8 - payload_bytes
        if parity_bytes < 2:
            raise ValueError(
                f"total_bits={total_bits} leaves {max(parity_bytes, 0)} parity bytes after "
                f"{payload_bytes} payload bytes; at least 2 are needed to correct an error"
            )
        return cls(payload_bytes, parity_bytes, payload_bits)

    @property
    def total_bytes(self) -> int:
        return self.payload_bytes + self.parity_bytes

    @property
    def n_bits(self) -> int:
        """Length of an encoded codeword in bits."""
        return 8 * self.total_bytes

    @property
    def max_errors(self) -> int:
        """Unknown byte errors correctable when no erasures are marked."""
        return self.parity_bytes // 2

    def encode(self, payload: bytes | np.ndarray) -> np.ndarray:
        """Codeword bits (uint8 0/1, shape ``(n_bits,)``, MSB-first per byte) for a payload.

        ``payload`` is either exactly ``payload_bytes`` bytes, or an array of exactly
        ``payload_bits`` bits. Lengths are never padded silently: a wrong-length payload
        raises ``ValueError``.
        """
        if isinstance(payload, (bytes, bytearray)):
            if len(payload) != self.payload_bytes:
                raise ValueError(f"payload must be exactly {self.payload_bytes} bytes, got {len(payload)}")
            message = bytes(payload)
        else:
            message = np.packbits(_as_bits(payload, 8 * self.payload_bytes if self.payload_bits is None
                                           else self.payload_bits, "payload")).tobytes()
        codeword = bytes(_codec(self.parity_bytes).encode(message))
        return np.unpackbits(np.frombuffer(codeword, dtype=np.uint8))

    def decode(
        self,
        bits: ArrayLike,
        erasures: Sequence[int] | None = None,
        bit_confidence: ArrayLike | None = None,
        erasure_threshold: float | None = None,
    ) -> RSDecodeResult:
        """Recover the payload from ``n_bits`` hard bits (0/1), correcting errors and erasures.

        ``erasures`` are byte (symbol) indices known to be unreliable. With
        ``bit_confidence`` (per-bit confidence in [0, 1]) and ``erasure_threshold`` (both or
        neither), a byte whose least confident bit is below the threshold is erased too,
        least confident first, until ``parity_bytes`` bytes are erased in total. Each
        erasure costs half an error's worth of parity, so erasing truly unreliable bytes
        widens what can be repaired; with all ``parity_bytes`` erased, though, nothing is
        left to detect a wrong byte elsewhere.

        Raises ``ReedSolomonDecodeError`` when the errors exceed what the parity can correct
        (see the module docstring for the undetectable miscorrection case).
        """
        received = np.packbits(_as_bits(bits, self.n_bits, "received bits"))
        erased = self._erasure_positions(erasures, bit_confidence, erasure_threshold)
        codec = _codec(self.parity_bytes)
        try:
            message, codeword, _ = codec.decode(bytearray(received.tobytes()), erase_pos=erased.tolist())
        except ReedSolomonError as exc:
            raise ReedSolomonDecodeError(self._capacity_message(erased.size)) from exc
        corrected = np.frombuffer(bytes(codeword), dtype=np.uint8)
        differs = corrected != received
        errors = int(np.count_nonzero(differs)) - int(np.count_nonzero(differs[erased]))
        if 2 * errors + erased.size > self.parity_bytes or bytes(codec.encode(message)) != bytes(codeword):
            raise ReedSolomonDecodeError(self._capacity_message(erased.size))
        payload = bytes(message)
        return RSDecodeResult(
            payload=payload,
            payload_bits=np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: self.payload_bits],
            corrected_symbols=int(np.count_nonzero(differs)),
            erasures=int(erased.size),
        )

    def _erasure_positions(
        self,
        erasures: Sequence[int] | None,
        bit_confidence: ArrayLike | None,
        erasure_threshold: float | None,
    ) -> np.ndarray:
        """Sorted unique erased byte indices: the explicit ones plus low-confidence bytes."""
        explicit = np.unique(np.asarray([] if erasures is None else erasures, dtype=np.int64))
        if explicit.size and (explicit[0] < 0 or explicit[-1] >= self.total_bytes):
            raise ValueError(f"erasure positions must be byte indices in [0, {self.total_bytes})")
        if explicit.size > self.parity_bytes:
            raise ReedSolomonDecodeError(
                f"too many erasures to correct: {explicit.size} given, at most {self.parity_bytes} can be corrected"
            )
        if (bit_confidence is None) != (erasure_threshold is None):
            raise ValueError("bit_confidence and erasure_threshold must be given together")
        if bit_confidence is None:
            return explicit
        confidence = np.asarray(bit_confidence, dtype=float)
        if confidence.shape != (self.n_bits,):
            raise ValueError(f"bit_confidence must have shape ({self.n_bits},), got {confidence.shape}")
        byte_confidence = confidence.reshape(self.total_bytes, 8).min(axis=1)
        byte_confidence[explicit] = np.inf  # already erased
        order = np.argsort(byte_confidence, kind="stable")
        candidates = order[byte_confidence[order] < erasure_threshold]
        return np.union1d(explicit, candidates[: self.parity_bytes - explicit.size])

    def _capacity_message(self, erasures: int) -> str:
        """Why decoding failed, in terms of the code's correction budget."""
        return (
            f"too many symbol errors to correct: with {erasures} erasures at most "
            f"{(self.parity_bytes - erasures) // 2} byte errors can be corrected "
            f"(2*errors + erasures <= {self.parity_bytes} parity bytes)"
        )


@lru_cache(maxsize=4)
def codebook(payload_bytes: int, parity_bytes: int) -> np.ndarray:
    """Every RS codeword, ``(2**(8 payload_bytes), L)`` uint8, row ``p`` encoding payload ``p``.

    RS encoding is linear over GF(2^8), whose addition is XOR, so it is linear over GF(2)
    on bits: the codeword of any payload is the XOR of its set bits' basis codewords.
    """
    code = ReedSolomonCode(payload_bytes, parity_bytes)
    k = 8 * payload_bytes
    basis = np.stack([code.encode(row) for row in np.eye(k, dtype=np.uint8)]).astype(np.int32)
    payload_bits = ((np.arange(2**k)[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.int32)
    book = ((payload_bits @ basis) & 1).astype(np.uint8)
    book.setflags(write=False)
    return book
