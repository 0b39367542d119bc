"""Tests for image_wm.schemes.tree_ring: embedding, detection under noise, exact calibration, visibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from image_wm.schemes import LatentWatermark, get_scheme
from image_wm.schemes.tree_ring import TreeRing, ring_index
from image_wm.tree_ring_calibration import strongest_directions
from provenance.stats import cosine_tail
from provenance.keys import WatermarkKey

KEY = WatermarkKey.from_seed("tree-ring-tests")
SHAPE = (200, 4, 16, 16)
N_NULL = 2_000
FPR = 0.01
# A 99.9% two-sided band for the number of false positives among N_NULL draws at rate FPR.
BAND = tuple(int(x) for x in sps.binom.ppf([0.0005, 0.9995], N_NULL, FPR))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noisy(latents: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
    """Imperfect inversion proxy: (z + s * N(0, 1)) / sqrt(1 + s^2)."""
    noise = torch.randn(latents.shape, generator=generator(seed))
    return (latents + strength * noise) / (1.0 + strength**2) ** 0.5


def spectrum(latents: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(latents.double(), norm="ortho"), dim=(-2, -1))


def p_values(scheme: TreeRing, latents: torch.Tensor, key: WatermarkKey = KEY, fpr: float = FPR) -> np.ndarray:
    return np.array([r.p_value for r in scheme.detect(latents, key, fpr=fpr)])


def content_like(n: int, seed: int) -> torch.Tensor:
    """Unwatermarked latents that are far from white, like inverted ones: strong, image-dependent low
    frequencies (a smooth random field three times the white energy), a channel offset, channel mixing."""
    g = generator(seed)
    white = torch.randn((n, 4, 16, 16), generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.randn((n, 4, 20, 20), generator=g), 5, stride=1) * 5.0
    mixed = torch.einsum("dc,bchw->bdhw", torch.tensor([[1.0, 0, 0, 0], [0.3, 1, -0.5, 0], [0, -0.5, 1, 0],
                                                         [0.2, 0, 0.3, 1]]), white + smooth)
    return mixed + 2.0 * torch.randn((n, 4, 1, 1), generator=g)


@pytest.fixture(scope="module")
def marked() -> torch.Tensor:
    return TreeRing().initial_latents(SHAPE, KEY, generator(0))


def test_follows_the_protocol_and_registry() -> None:
    scheme = get_scheme("tree-ring")
    assert isinstance(scheme, LatentWatermark) and isinstance(scheme, TreeRing)
    assert (scheme.name, scheme.payload_bytes, scheme.semantic) == ("tree-ring", 0, False)
    with pytest.raises(ValueError):
        scheme.initial_latents((1, 4, 16, 16), KEY, generator(0), payload=b"\x01")
    with pytest.raises(ValueError):
        TreeRing(channel=4).initial_latents((1, 4, 16, 16), KEY, generator(0))
    for bad in (dict(channel=-2), dict(radius=0), dict(amplitude=0.0)):
        with pytest.raises(ValueError):
            TreeRing(**bad)


def test_pattern_is_real_centred_rings_without_dc_in_every_channel() -> None:
    scheme = TreeRing()
    assert scheme.radius_for(16, 16) == 5 and scheme.radius_for(64, 64) == 10  # floor 5, else the paper's 10/64
    assert TreeRing(radius=3).radius_for(16, 16) == 3
    assert ring_index(16, 16)[8, 8] == 0 and ring_index(16, 16)[8, 9] == 1
    mask, values = scheme.pattern(KEY, 4, 16, 16)
    assert values.shape == (4, 16, 16) and np.isrealobj(values)
    assert mask.sum() == 80 and not mask[8, 8] and mask[8, 9] and mask[8, 13] and not mask[8, 14]
    assert TreeRing(radius=3).rings(16, 16).astype(bool).sum() == 28
    partner = (16 - np.arange(16)) % 16  # centred index of frequency -k
    assert np.array_equal(mask, mask[np.ix_(partner, partner)])
    assert np.array_equal(values, values[:, partner][:, :, partner])  # Hermitian-compatible
    assert np.all(values[:, ~mask] == 0)
    rings = scheme.rings(16, 16)
    for r in range(1, 6):  # constant rings, a different value per channel
        assert np.all(values[:, rings == r] == values[:, rings == r][:, :1])
    ring_values = scheme.ring_values(KEY, 4, 5)
    assert np.isclose(np.sum(ring_values**2), 20.0)  # fixed energy: RMS = amplitude whatever the key
    assert np.isclose(np.sum(TreeRing(amplitude=1.5).ring_values(KEY, 4, 5) ** 2), 20.0 * 1.5**2)
    assert not np.allclose(ring_values, scheme.ring_values(WatermarkKey.from_seed("another"), 4, 5))
    single_mask, single = TreeRing(channel=2).pattern(KEY, 4, 16, 16)
    assert single.shape == (1, 16, 16) and np.array_equal(single_mask, mask)


def test_latents_are_deterministic_float32_and_keep_the_dc(marked: torch.Tensor) -> None:
    again = TreeRing().initial_latents(SHAPE, KEY, generator(0))
    plain = torch.randn(SHAPE, generator=generator(0))
    assert marked.dtype == torch.float32 and torch.equal(marked, again)
    mask, values = TreeRing().pattern(KEY, 4, 16, 16)
    marked_spectrum, plain_spectrum = spectrum(marked), spectrum(plain)
    assert torch.allclose(marked_spectrum[:, :, torch.from_numpy(mask)], torch.from_numpy(values[:, mask]).cdouble(),
                          atol=1e-5)
    assert torch.allclose(marked_spectrum[:, :, 8, 8], plain_spectrum[:, :, 8, 8], atol=1e-5)  # DC untouched
    outside = torch.from_numpy(~mask)
    assert torch.allclose(marked_spectrum[:, :, outside], plain_spectrum[:, :, outside], atol=1e-5)
    one = TreeRing(channel=1).initial_latents(SHAPE, KEY, generator(0))
    assert torch.equal(one[:, [0, 2, 3]], plain[:, [0, 2, 3]]) and not torch.allclose(one[:, 1], plain[:, 1])


def test_detects_own_latents_and_after_noise(marked: torch.Tensor) -> None:
    results = TreeRing().detect(marked[:8], KEY)
    # Exact recovery: the standardised ring means are the key times sqrt(ring size), cosine < 1 but close.
    assert all(r.detected and r.p_value < 1e-6 and r.details["cosine"] > 0.9 for r in results)
    assert results[0].details["l1_distance"] < 1e-3 and results[0].details["ring_values"] == 20
    assert results[0].details["channels"] == [0, 1, 2, 3] and results[0].details["radius"] == 5
    blurred = p_values(TreeRing(), noisy(marked, 0.8, seed=1))
    assert np.mean(blurred <= 0.01) >= 0.95 and np.median(blurred) < 1e-4


def rotate_bilinear(latents: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre by resampling the grid (reflected borders, no black corners)."""
    a = np.radians(degrees)
    theta = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]], dtype=latents.dtype)
    grid = torch.nn.functional.affine_grid(theta.expand(len(latents), 2, 3), latents.shape, align_corners=False)
    return torch.nn.functional.grid_sample(latents, grid, padding_mode="reflection", align_corners=False)


def test_rings_survive_grid_symmetries_but_not_off_grid_rotation(marked: torch.Tensor) -> None:
    """Why Tree-Ring fails the rotation attack at 16x16 (docs/robustness.md): 90° turns and flips map
    the rings onto themselves, but a 22.5° resampling moves each one-bin-wide ring's coefficients
    between frequency bins, so even the rotated initial noise fails, before any model."""
    for symmetric in (torch.rot90(marked[:50], 1, dims=(2, 3)), marked[:50].flip(-1)):
        assert np.all(p_values(TreeRing(), symmetric) <= 1e-6)
    assert np.mean(p_values(TreeRing(), rotate_bilinear(marked[:50], 22.5)) <= FPR) <= 0.1


def test_no_detection_on_noise_or_with_another_key(marked: torch.Tensor) -> None:
    assert not any(r.detected for r in TreeRing().detect(torch.randn(SHAPE, generator=generator(2)), KEY))
    assert not any(r.detected for r in TreeRing().detect(marked, WatermarkKey.from_seed("another")))


def test_fixed_key_is_exact_on_white_noise_of_any_scale() -> None:
    latents = torch.randn((N_NULL, 4, 16, 16), generator=generator(3))
    scheme = TreeRing()
    p = p_values(scheme, latents)
    assert BAND[0] <= np.sum(p <= FPR) <= BAND[1], np.sum(p <= FPR)
    assert sps.kstest(p, "uniform").pvalue > 1e-3
    for scale in (0.7, 1.3):  # the cosine is scale-free: any variance gives the same test
        assert np.allclose(p_values(scheme, scale * latents[:200]), p[:200], rtol=1e-6, atol=1e-12)
    offset = latents[:200] + torch.tensor([-3.0, 1.0, 0.5, -2.0]).view(1, 4, 1, 1)  # DC is not marked
    assert np.allclose(p_values(scheme, offset), p[:200], rtol=1e-6, atol=1e-12)


def test_random_key_null_is_exact_on_non_white_latents() -> None:
    """The randomisation null: a key independent of the image gives uniform p-values whatever the latent."""
    latents = content_like(N_NULL, seed=9)
    scheme = TreeRing()
    p = np.array([scheme.detect(latents[i:i + 1], WatermarkKey.from_seed(f"null-{i}"), fpr=FPR)[0].p_value
                  for i in range(N_NULL)])
    assert BAND[0] <= np.sum(p <= FPR) <= BAND[1], np.sum(p <= FPR)
    assert sps.kstest(p, "uniform").pvalue > 1e-3


def test_ring_statistics_are_what_detect_correlates_with_the_key(marked: torch.Tensor) -> None:
    """The public ring statistic (used to score many keys at once) is exactly the detector's."""
    scheme = TreeRing()
    w = scheme.ring_statistics(marked[:8])
    key_values = scheme.ring_values(KEY, 4, scheme.radius_for(16, 16)).ravel()
    cosine = w @ key_values / np.linalg.norm(w, axis=1) / np.linalg.norm(key_values)
    assert w.shape == (8, key_values.size)
    assert np.allclose([r.details["cosine"] for r in scheme.detect(marked[:8], KEY)], cosine, atol=1e-12)


def black_corners() -> torch.Tensor:
    """A latent-space stand-in for what rotation paints: the same dark corners in every channel."""
    pattern = torch.zeros((1, 4, 16, 16))
    for rows, cols in ((slice(0, 5), slice(0, 5)), (slice(0, 5), slice(11, 16)),
                       (slice(11, 16), slice(0, 5)), (slice(11, 16), slice(11, 16))):
        pattern[..., rows, cols] = -0.4
    return pattern


def with_shared_shift(latents: torch.Tensor, seed: int) -> torch.Tensor:
    """Every latent moved along the same pattern by a random positive amount, as an edit does."""
    amount = 1.0 + 2.0 * torch.rand((len(latents), 1, 1, 1), generator=generator(seed))
    return latents + amount * black_corners()


def keys_by_alignment(scheme: TreeRing, direction: np.ndarray, n: int = 300) -> list[WatermarkKey]:
    """Seeded keys sorted from most aligned with ``direction`` to most opposed."""
    keys = [WatermarkKey.from_seed(f"align-{i}") for i in range(n)]
    values = np.stack([scheme.ring_values(k, 4, scheme.radius_for(16, 16)).ravel() for k in keys])
    return [keys[i] for i in np.argsort(-(values @ direction))]


def test_projecting_out_a_shared_shift_restores_the_fixed_key_rate_and_the_detection() -> None:
    """One fixed key aligned with a shift every edited image shares flags most of them; projecting the
    shift's direction (fitted on separate probe latents, as a pipeline's calibration does) out of ``w``
    and the key gives the nominal rate again, and the opposed key finds its watermark again."""
    raw = TreeRing()
    probe = with_shared_shift(torch.randn((300, 4, 16, 16), generator=generator(20)), seed=21)
    nuisance = strongest_directions(raw.ring_statistics(probe), count=1)
    projected = TreeRing(nuisance=nuisance)
    ordered = keys_by_alignment(raw, raw.ring_statistics(black_corners())[0])
    aligned, opposed = ordered[0], ordered[-1]

    null = with_shared_shift(torch.randn((N_NULL, 4, 16, 16), generator=generator(22)), seed=23)
    assert np.mean(p_values(raw, null, aligned) <= FPR) > 0.3  # 0.64; the real worst keys flag 0.26-0.74
    p = p_values(projected, null, aligned)
    assert BAND[0] <= np.sum(p <= FPR) <= BAND[1], np.sum(p <= FPR)
    assert sps.kstest(p, "uniform").pvalue > 1e-3
    detail = projected.detect(null[:1], aligned)[0].details
    assert (detail["ring_values"], detail["nuisance_projected"], detail["degrees_of_freedom"]) == (20, True, 19)

    marked = with_shared_shift(noisy(raw.initial_latents((100, 4, 16, 16), opposed, generator(24)), 1.5, 25), 26)
    assert np.mean(p_values(raw, marked, opposed) <= FPR) < 0.5  # 0.14
    # 0.90: the watermark cancels part of the shift in a few images, which then keep the full test
    assert np.mean(p_values(projected, marked, opposed) <= FPR) > 0.8


def test_projection_keeps_the_random_key_null_exact_on_non_white_latents() -> None:
    latents = content_like(N_NULL, seed=27)
    scheme = TreeRing(nuisance=strongest_directions(TreeRing().ring_statistics(content_like(200, seed=28)), 4))
    p = np.array([scheme.detect(latents[i:i + 1], WatermarkKey.from_seed(f"null-{i}"), fpr=FPR)[0].p_value
                  for i in range(N_NULL)])
    assert BAND[0] <= np.sum(p <= FPR) <= BAND[1], np.sum(p <= FPR)
    assert sps.kstest(p, "uniform").pvalue > 1e-3


def test_unedited_latents_keep_the_full_test_and_fixed_keys_stay_calibrated_on_white_noise() -> None:
    """Only images with a nuisance shift are projected: white latents switch with probability
    P(F(6, 14) > 3) = 0.04 and otherwise get exactly the unprojected p-value; a fixed key's rate
    stays nominal, aligned with the nuisance directions or not."""
    nuisance = np.linalg.qr(np.random.default_rng(29).standard_normal((20, 6)))[0].T
    scheme, raw = TreeRing(nuisance=nuisance), TreeRing()
    latents = torch.randn((N_NULL, 4, 16, 16), generator=generator(30))
    results = scheme.detect(latents, KEY, fpr=FPR)
    moved = np.array([r.details["nuisance_projected"] for r in results])
    assert 0.02 < moved.mean() < 0.07, moved.mean()
    p = np.array([r.p_value for r in results])
    assert np.allclose(p[~moved], p_values(raw, latents[torch.from_numpy(~moved)]), rtol=1e-9, atol=0)
    for key in (KEY, keys_by_alignment(raw, nuisance[0])[0]):
        p = p_values(scheme, latents, key)
        assert BAND[0] <= np.sum(p <= FPR) <= BAND[1], np.sum(p <= FPR)
        assert sps.kstest(p, "uniform").pvalue > 1e-3


def test_nuisance_directions_must_fit_the_ring_values() -> None:
    with pytest.raises(ValueError):
        TreeRing(nuisance=np.ones(20))
    for bad in (np.eye(20)[:4, :12], np.eye(20)[:19]):
        with pytest.raises(ValueError, match="do not fit"):
            TreeRing(nuisance=bad).detect(torch.zeros(1, 4, 16, 16), KEY)
    off = TreeRing(nuisance=np.zeros((0, 20)))  # an empty array: no projection, and no pipeline calibration
    assert off.kept_basis(20) is None and off.calibrated_for(pipeline=None) is off


def test_cosine_tail_matches_simulation() -> None:
    rng = np.random.default_rng(4)
    for dim in (3, 12, 28):
        u = rng.standard_normal((200_000, dim))
        c = u[:, 0] / np.linalg.norm(u, axis=1)
        points = np.quantile(c, [0.5, 0.9, 0.99])
        assert np.allclose(cosine_tail(points, dim), [0.5, 0.1, 0.01], rtol=0.05, atol=1e-3)
    assert np.isclose(cosine_tail(0.0, 12), 0.5) and cosine_tail(1.0, 12) == 0.0 and cosine_tail(-1.0, 12) == 1.0


def test_watermarked_latents_are_not_gaussian(marked: torch.Tensor) -> None:
    """The masked coefficients are constants shared by every image: a KS test sees it at once."""

    def coefficient(latents: torch.Tensor) -> np.ndarray:
        # frequency (0, 1) of the last channel: sqrt(2) Re and sqrt(2) Im are iid N(0, 1) for white noise
        value = torch.fft.fft2(latents[:, -1].double(), norm="ortho")[:, 0, 1].numpy()
        return np.sqrt(2.0) * np.concatenate([value.real, value.imag])

    assert sps.kstest(coefficient(marked), "norm").pvalue < 1e-3
    assert sps.kstest(coefficient(torch.randn(SHAPE, generator=generator(5))), "norm").pvalue > 0.01


def test_other_shapes_and_channels() -> None:
    big = TreeRing().initial_latents((2, 4, 64, 64), KEY, generator(6))  # SD's latent: the paper's radius 10
    assert all(r.detected and r.details["radius"] == 10 for r in TreeRing().detect(noisy(big, 0.8, 7), KEY))
    odd = TreeRing(radius=4)
    latents = odd.initial_latents((3, 3, 9, 12), KEY, generator(8))
    assert all(r.detected and r.details["ring_values"] == 12 for r in odd.detect(latents, KEY, fpr=1e-3))
    # One channel: only K = radius ring values, so even exact latents reach modest p-values (see module).
    single = TreeRing(radius=4, channel=0)
    results = single.detect(single.initial_latents((3, 3, 9, 12), KEY, generator(8)), KEY, fpr=0.05)
    assert all(r.detected and r.details["channels"] == [0] and r.details["ring_values"] == 4 for r in results)
    with pytest.raises(ValueError):
        TreeRing().detect(torch.zeros(1, 4, 1, 1), KEY)


def test_results_never_contain_the_secret(marked: torch.Tensor) -> None:
    text = TreeRing().detect(marked[:1], KEY)[0].to_json()
    assert KEY.secret.hex() not in text and KEY.key_id in text
