"""The PRC image scheme on synthetic latents: payload round trip, noisy inversion, calibrated FPR, undetectability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from image_wm.schemes import get_scheme
from provenance.keys import WatermarkKey

SHAPE = (1, 4, 16, 16)  # the reference model's latent
PAYLOAD = b"\xab\xcd"


@pytest.fixture(scope="module")
def scheme():
    return get_scheme("prc")


KEY = WatermarkKey.from_seed("prc-scheme")


def latents(scheme, batch: int, seed: int = 0, payload: bytes | None = PAYLOAD) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([scheme.initial_latents(SHAPE, KEY, g, payload=payload) for _ in range(batch)])


def flip_signs(z: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Imperfect inversion: each sign wrong with probability ``rate``, magnitudes kept."""
    g = torch.Generator().manual_seed(seed)
    return z * torch.where(torch.rand(z.shape, generator=g) < rate, -1.0, 1.0)


def test_payload_round_trip_clean_and_at_80_percent_sign_agreement(scheme):
    z = latents(scheme, 6)
    for observed in (z, flip_signs(z, 0.2, seed=1)):
        results = scheme.detect(observed, KEY)
        assert all(r.detected and r.payload == PAYLOAD.hex() for r in results)
        assert all(r.p_value < 1e-8 for r in results)


def test_wrong_key_and_plain_noise_are_not_detected(scheme):
    z = latents(scheme, 4)
    assert not any(r.detected for r in scheme.detect(z, WatermarkKey.from_seed("other")))
    noise = torch.randn(4, *SHAPE[1:], generator=torch.Generator().manual_seed(11))
    assert not any(r.detected or r.payload for r in scheme.detect(noise, KEY))


def test_empirical_fpr_matches_nominal_on_unwatermarked_latents(scheme):
    fpr, n = 0.02, 800
    noise = torch.randn(n, *SHAPE[1:], generator=torch.Generator().manual_seed(3))
    hits = sum(r.detected for r in scheme.detect(noise, KEY, fpr=fpr))
    low, high = sps.binom.ppf([0.0005, 0.9995], n, fpr)
    assert hits <= high  # Bonferroni over two tests: at most nominal, possibly below
    assert hits >= min(low, 3)  # but the zero-bit test is exact, so not wildly conservative


def test_latents_are_distributed_like_standard_normal_without_the_key(scheme):
    z = latents(scheme, 16).numpy().ravel()
    assert sps.kstest(z, "norm").pvalue > 0.01
    assert abs((z > 0).mean() - 0.5) < 3 * 0.5 / np.sqrt(z.size)


def test_images_differ_but_reproduce_from_the_same_seed(scheme):
    a, b = latents(scheme, 2, seed=5), latents(scheme, 2, seed=5)
    assert torch.equal(a, b)
    assert ((a[0] > 0) != (a[1] > 0)).float().mean() > 0.3  # fresh code randomness per image


def test_payload_length_is_checked(scheme):
    with pytest.raises(ValueError, match="exactly 2 payload bytes"):
        scheme.initial_latents(SHAPE, KEY, torch.Generator(), payload=b"\x01")
