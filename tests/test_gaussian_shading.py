"""Tests for image_wm.schemes.gaussian_shading: round trips, exact nulls, undetectability, tracing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from image_wm.schemes import LatentWatermark, get_scheme
from image_wm.schemes.gaussian_shading import GaussianShading, vote_statistic_sf
from provenance.keys import WatermarkKey

KEY = WatermarkKey.from_seed("gaussian-shading-tests")
SHAPE = (64, 4, 16, 16)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def flip(latents: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Imperfect inversion: every sign flips independently with probability ``rate``."""
    return latents * torch.where(torch.rand(latents.shape, generator=generator(seed)) < rate, -1.0, 1.0)


def test_follows_the_protocol_and_checks_payloads() -> None:
    scheme = get_scheme("gaussian-shading")
    assert isinstance(scheme, LatentWatermark) and isinstance(scheme, GaussianShading)
    assert (scheme.name, scheme.payload_bytes, scheme.semantic) == ("gaussian-shading", 2, False)
    for payload in (b"\x01", b"\x01\x02\x03"):
        with pytest.raises(ValueError):
            scheme.initial_latents(SHAPE, KEY, generator(0), payload=payload)
    with pytest.raises(ValueError):
        GaussianShading(payload_bytes=0).initial_latents(SHAPE, KEY, generator(0), payload=b"\x01")
    with pytest.raises(ValueError):  # 16 bits need at least 16 entries
        scheme.initial_latents((1, 1, 3, 3), KEY, generator(0), payload=b"ab")


@pytest.mark.parametrize("shape", [SHAPE, (3, 3, 5, 7)])  # 1024 entries: r = 64; 105 entries: r = 6, 9 filler
def test_payload_round_trip_clean(shape: tuple[int, ...]) -> None:
    scheme = GaussianShading()
    for payload in (b"\x00\x00", b"\xab\xcd", b"\xff\xff"):
        results = scheme.detect(scheme.initial_latents(shape, KEY, generator(1), payload=payload), KEY)
        assert all(r.payload == payload.hex() and r.detected for r in results)
        assert np.all(np.asarray(results[0].details["bit_confidence"]) == 1.0)


def test_payload_round_trip_at_70_percent_sign_agreement() -> None:
    scheme = GaussianShading()
    latents = scheme.initial_latents(SHAPE, KEY, generator(2), payload=b"\x5a\xc3")
    results = scheme.detect(flip(latents, 0.3, seed=3), KEY)
    assert all(r.payload == "5ac3" and r.detected for r in results)
    confidence = np.mean([r.details["bit_confidence"] for r in results])
    assert 0.3 < confidence < 0.5  # |vote fraction - 1/2| * 2 ~ 0.4 at 70% agreement


def test_no_detection_on_noise_or_with_another_key() -> None:
    for scheme in (GaussianShading(), GaussianShading(payload_bytes=0)):
        latents = scheme.initial_latents(SHAPE, KEY, generator(4))
        at_64_percent = [r.detected for r in scheme.detect(flip(latents, 0.36, seed=5), KEY)]  # today's inversion
        assert np.mean(at_64_percent) >= 0.95
        assert not any(r.detected for r in scheme.detect(torch.randn(SHAPE, generator=generator(6)), KEY))
        assert not any(r.detected for r in scheme.detect(latents, WatermarkKey.from_seed("another")))


def test_empirical_fpr_of_both_tests() -> None:
    """At the 1% level, false positives among 2000 N(0, I) latents lie in their 99.9% binomial band."""
    low, high = sps.binom.ppf([0.0005, 0.9995], 2_000, 0.01)
    latents = torch.randn((2_000, 4, 16, 16), generator=generator(7))
    for scheme in (GaussianShading(), GaussianShading(payload_bytes=0)):
        false_positives = sum(r.detected for r in scheme.detect(latents, KEY, fpr=0.01))
        assert low <= false_positives <= high, (scheme.payload_bytes, false_positives)


@pytest.mark.parametrize(("bits", "copies"), [(16, 64), (16, 7), (4, 1)])
def test_exact_null_of_the_vote_statistic_matches_simulation(bits: int, copies: int) -> None:
    t_min, sf = vote_statistic_sf(bits, copies)
    assert sf[0] == pytest.approx(1.0) and np.all(np.diff(sf) <= 0) and t_min + len(sf) - 1 == bits * copies
    votes = np.random.default_rng(8).binomial(copies, 0.5, size=(200_000, bits))
    simulated = np.maximum(votes, copies - votes).sum(axis=1)
    for t in np.quantile(simulated, [0.5, 0.9, 0.99, 0.999]).astype(int):
        expected = sf[t - t_min]
        assert abs(np.mean(simulated >= t) - expected) < 4 * np.sqrt(expected * (1 - expected) / 200_000) + 1e-4


def test_latents_look_gaussian_without_the_key() -> None:
    """One image per key: the values pass a KS test against N(0, 1) and the signs are balanced."""
    scheme = GaussianShading()
    latents = torch.cat([scheme.initial_latents((1, 4, 16, 16), WatermarkKey.from_seed(i), generator(i), b"\x12\x34")
                         for i in range(16)]).flatten().numpy()
    assert sps.kstest(latents, "norm").pvalue > 0.01
    assert sps.binomtest(int(np.sum(latents > 0)), latents.size).pvalue > 0.01


def test_same_inputs_same_latents_and_the_key_reuse_pitfall() -> None:
    scheme = GaussianShading()
    first = scheme.initial_latents(SHAPE, KEY, generator(9), payload=b"\x01\x02")
    assert first.dtype == torch.float32 and torch.equal(first, scheme.initial_latents(SHAPE, KEY, generator(9), b"\x01\x02"))
    other_seed = scheme.initial_latents(SHAPE, KEY, generator(10), payload=b"\x01\x02")
    assert not torch.equal(first, other_seed)
    # the documented pitfall: a fixed key and payload give every image the same sign pattern
    assert torch.equal(torch.sign(first), torch.sign(other_seed)) and torch.equal(torch.sign(first[0]), torch.sign(first[1]))


def test_zero_bit_mode_embeds_the_key_pattern() -> None:
    scheme = GaussianShading()
    results = scheme.detect(scheme.initial_latents((2, 4, 16, 16), KEY, generator(11)), KEY)
    pattern = np.packbits(scheme.key_pattern(KEY, 16)).tobytes().hex()
    assert results[0].payload == pattern and results[0].detected
    zero_bit = GaussianShading(payload_bytes=0)
    result = zero_bit.detect(flip(zero_bit.initial_latents((1, 4, 16, 16), KEY, generator(12)), 0.3, 13), KEY)[0]
    assert result.detected and result.payload is None and 0.65 < result.bit_accuracy < 0.75


def test_bit_threshold_follows_the_paper() -> None:
    # docs/algorithms.md 4b: tau = 166/256 and 183/256 with a strict ">"; here the same rule reads ">= k / L"
    assert GaussianShading(payload_bytes=32).bit_threshold(1e-6) == 167 / 256
    assert GaussianShading(payload_bytes=32).bit_threshold(1e-6, n_users=10**6) == 184 / 256
    assert GaussianShading().bit_threshold(1e-6) > 1.0  # 16 bits cannot certify 1e-6
    with pytest.raises(ValueError):
        GaussianShading(payload_bytes=0).bit_threshold(1e-6)


def test_trace_finds_the_user_among_100_candidates() -> None:
    scheme = GaussianShading()
    users = [bytes(row) for row in np.random.default_rng(14).integers(0, 256, (100, 2), dtype=np.uint8)]
    chosen = [3, 41, 97, 41]
    latents = torch.cat([scheme.initial_latents((1, 4, 16, 16), KEY, generator(15 + i), users[u])
                         for i, u in enumerate(chosen)])
    traced = scheme.trace(flip(latents, 0.3, seed=16), KEY, users, fpr=0.01)
    assert [index for index, _ in traced] == chosen and all(p < 1e-10 for _, p in traced)
    unmarked = scheme.trace(torch.randn((8, 4, 16, 16), generator=generator(17)), KEY, users, fpr=0.01)
    assert all(index is None and p > 1e-4 for index, p in unmarked)


def test_results_never_contain_the_secret() -> None:
    scheme = GaussianShading()
    text = scheme.detect(scheme.initial_latents((1, 4, 16, 16), KEY, generator(18), b"ab"), KEY)[0].to_json()
    assert KEY.secret.hex() not in text and KEY.subkey("gaussian-shading/chacha").hex() not in text
