"""Tests for provenance.codes.reed_solomon: round trips, correction capacity and erasures."""

from __future__ import annotations

import numpy as np
import pytest

from provenance.codes.reed_solomon import ReedSolomonCode, ReedSolomonDecodeError


def corrupt_bytes(bits: np.ndarray, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip a non-zero random pattern into each byte at ``positions`` (every one a real symbol error)."""
    symbols = np.packbits(bits)
    symbols[positions] ^= rng.integers(1, 256, len(positions), dtype=np.uint8)
    return np.unpackbits(symbols)


@pytest.mark.parametrize("seed", range(5))
def test_byte_payload_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode(payload_bytes=16, parity_bytes=8)
    payload = rng.bytes(16)
    bits = code.encode(payload)
    assert bits.shape == (code.n_bits,) == (192,) and bits.dtype == np.uint8
    np.testing.assert_array_equal(np.packbits(bits)[:16], np.frombuffer(payload, np.uint8))  # systematic
    result = code.decode(bits)
    assert result.payload == payload
    assert result.corrected_symbols == 0 and result.erasures == 0


@pytest.mark.parametrize("seed", range(5))
def test_bit_payload_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode.for_bits(payload_bits=50, total_bits=256)
    payload_bits = rng.integers(0, 2, 50)
    result = code.decode(code.encode(payload_bits))
    np.testing.assert_array_equal(result.payload_bits, payload_bits)
    assert len(result.payload) == 7 and result.payload[-1] & 0b0011_1111 == 0  # zero padding at the end


def test_bit_order_is_msb_first() -> None:
    code = ReedSolomonCode(1, 2)
    assert code.encode(b"\x80")[:8].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]


def test_for_bits_sizing() -> None:
    code = ReedSolomonCode.for_bits(48, 256)
    assert (code.payload_bytes, code.parity_bytes, code.payload_bits, code.n_bits) == (6, 26, 48, 256)
    assert code.max_errors == 13
    code = ReedSolomonCode.for_bits(50, 100)  # 12 whole bytes: 7 payload + 5 parity, 4 bits left over
    assert (code.payload_bytes, code.parity_bytes, code.n_bits, code.max_errors) == (7, 5, 96, 2)
    with pytest.raises(ValueError, match="parity"):
        ReedSolomonCode.for_bits(64, 72)


def test_invalid_configurations() -> None:
    with pytest.raises(ValueError, match="255"):
        ReedSolomonCode(250, 10)
    with pytest.raises(ValueError):
        ReedSolomonCode(4, 1)
    with pytest.raises(ValueError):
        ReedSolomonCode(2, 4, payload_bits=17)


def test_wrong_payload_lengths_are_rejected() -> None:
    code = ReedSolomonCode(4, 4)
    with pytest.raises(ValueError, match="exactly 4 bytes"):
        code.encode(b"12345")
    with pytest.raises(ValueError, match="exactly 4 bytes"):
        code.encode(b"123")
    with pytest.raises(ValueError, match="32 bits"):
        code.encode(np.zeros(31, dtype=np.uint8))
    with pytest.raises(ValueError, match="0 and 1"):
        code.encode(np.full(32, 2))
    with pytest.raises(ValueError, match="64 bits"):
        code.decode(np.zeros(63, dtype=np.uint8))


@pytest.mark.parametrize("seed", range(5))
def test_corrects_exactly_max_errors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode(16, 8)
    payload = rng.bytes(16)
    positions = rng.choice(code.total_bytes, code.max_errors, replace=False)
    result = code.decode(corrupt_bytes(code.encode(payload), positions, rng))
    assert result.payload == payload
    assert result.corrected_symbols == code.max_errors == 4


@pytest.mark.parametrize("seed", range(5))
def test_one_error_past_capacity_raises(seed: int) -> None:
    # For RS(24, 16) with 5 random symbol errors reedsolo reports failure (no miscorrection) for these seeds.
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode(16, 8)
    positions = rng.choice(code.total_bytes, code.max_errors + 1, replace=False)
    received = corrupt_bytes(code.encode(rng.bytes(16)), positions, rng)
    with pytest.raises(ReedSolomonDecodeError, match="too many symbol errors"):
        code.decode(received)


@pytest.mark.parametrize("seed", range(5))
def test_explicit_erasures_extend_capacity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode(16, 8)
    payload = rng.bytes(16)
    positions = rng.choice(code.total_bytes, 7, replace=False)  # 1 unknown error + 6 erasures: 2*1 + 6 = 8
    received = corrupt_bytes(code.encode(payload), positions, rng)
    with pytest.raises(ReedSolomonDecodeError):
        code.decode(received)
    result = code.decode(received, erasures=positions[1:].tolist())
    assert result.payload == payload
    assert result.erasures == 6 and result.corrected_symbols == 7


def test_erasure_validation() -> None:
    code = ReedSolomonCode(4, 4)
    bits = code.encode(b"abcd")
    with pytest.raises(ValueError, match="byte indices"):
        code.decode(bits, erasures=[8])
    with pytest.raises(ReedSolomonDecodeError, match="too many erasures"):
        code.decode(bits, erasures=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="together"):
        code.decode(bits, bit_confidence=np.ones(code.n_bits))


@pytest.mark.parametrize("seed", range(3))
def test_bit_confidence_erasures_rescue_decoding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = ReedSolomonCode(16, 8)
    payload = rng.bytes(16)
    positions = rng.choice(code.total_bytes, 6, replace=False)
    received = corrupt_bytes(code.encode(payload), positions, rng)
    confidence = np.full(code.n_bits, 0.95)
    confidence[(8 * positions[:, None] + np.arange(8)).ravel()] = rng.uniform(0.0, 0.3, (6, 8)).ravel()
    with pytest.raises(ReedSolomonDecodeError):
        code.decode(received)
    result = code.decode(received, bit_confidence=confidence, erasure_threshold=0.5)
    assert result.payload == payload
    assert result.erasures == 6 and result.corrected_symbols == 6


def test_confidence_erasures_are_capped_at_parity_lowest_first() -> None:
    rng = np.random.default_rng(7)
    code = ReedSolomonCode(16, 8)
    payload = rng.bytes(16)
    bits = code.encode(payload)
    confidence = np.full(code.n_bits, 0.9)
    confidence[::8] = np.linspace(0.0, 0.4, code.total_bytes)  # every byte below threshold, byte 0 least sure
    received = corrupt_bytes(bits, np.arange(8), rng)  # the 8 least confident bytes are wrong
    result = code.decode(received, bit_confidence=confidence, erasure_threshold=0.5)
    assert result.payload == payload and result.erasures == 8
