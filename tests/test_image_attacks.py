"""Image distortions (attacks.image): registry entries, determinism, layouts, validation, monotone damage."""

from __future__ import annotations

import numpy as np
import pytest

import attacks
from attacks.image import COMBINATIONS, DISTORTIONS, at_fraction
from image_wm import scenes

IMAGES = scenes.generate(6, seed=2024)[0]  # (6, 64, 64, 3) uint8 procedural scenes
RANDOMISED = ("crop", "erase", "noise", "combo-geo", "combo-deg", "combo")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_every_distortion_is_a_registered_image_attack() -> None:
    assert set(DISTORTIONS) <= set(attacks.names("image"))
    assert {"jpeg", "crop", "resize", "rotation", "blur", "noise", "brightness", "contrast", "erase",
            "quantize", "combo"} <= set(DISTORTIONS)
    jpeg = attacks.get("jpeg")
    assert (jpeg.modality, jpeg.low, jpeg.high, jpeg.stronger) == ("image", 10.0, 90.0, "down")
    assert all(attacks.get(name).description for name in DISTORTIONS)


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_deterministic_layout_preserving_and_batch_independent(name: str) -> None:
    attack = attacks.get(name)
    strength = attack.strengths(3)[1]
    out = attack(IMAGES, strength, seed=5)
    assert out.shape == IMAGES.shape and out.dtype == np.uint8
    assert np.array_equal(out, attack(IMAGES, strength, seed=5))
    single = attack(IMAGES[0], strength, seed=5)  # (H, W, 3) in, (H, W, 3) out, same as in a batch
    assert single.shape == IMAGES.shape[1:] and np.array_equal(single, out[0])
    assert not np.array_equal(out, IMAGES)


@pytest.mark.parametrize("name", RANDOMISED)
def test_seed_changes_randomised_attacks(name: str) -> None:
    attack = attacks.get(name)
    assert not np.array_equal(attack(IMAGES, None, seed=0), attack(IMAGES, None, seed=1))


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_damage_grows_with_strength(name: str) -> None:
    """MSE to the input (PSNR falling) never decreases from the mildest to the strongest setting."""
    attack = attacks.get(name)
    errors = [mse(attack(IMAGES, s, seed=3), IMAGES) for s in attack.strengths(5)]
    assert all(later >= earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] > errors[0] + 1.0, errors


def test_identity_at_the_mild_end() -> None:
    for name, strength in [("rotation", 0), ("crop", 0), ("erase", 0), ("blur", 0), ("noise", 0),
                           ("brightness", 1), ("contrast", 1), ("quantize", 8), ("resize", 1)]:
        assert np.array_equal(attacks.get(name)(IMAGES, strength), IMAGES), name


def test_known_values() -> None:
    assert attacks.get("brightness")(np.full((4, 4, 3), 200, np.uint8), 1.5).max() == 255
    levels = np.unique(attacks.get("quantize")(IMAGES, 1))
    assert set(levels.tolist()) <= {0, 255}
    erased = attacks.get("erase")(np.full((20, 20, 3), 9, np.uint8), 0.25, seed=4)
    assert (erased == 0).all(axis=-1).sum() == 100  # a 10x10 black square
    assert at_fraction("jpeg", 0.0) == 90 and at_fraction("jpeg", 1.0) == 10
    assert [c.__name__ for c in COMBINATIONS["combo-photo"]] == ["brightness", "contrast"]


def test_bad_strengths_and_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        attacks.get("jpeg")(IMAGES, 5)
    with pytest.raises(ValueError, match="outside"):
        attacks.get("rotation")(IMAGES, 90)
    with pytest.raises(ValueError, match="uint8"):
        attacks.get("noise")(IMAGES.astype(np.float32), 5)
    with pytest.raises(ValueError, match="shaped"):
        attacks.get("blur")(IMAGES[..., 0], 1)
    with pytest.raises(ValueError, match="shaped"):
        attacks.get("blur")(IMAGES[:0], 1)
