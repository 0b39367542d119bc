"""Video attacks (attacks.video): temporal index maps on a clip whose frames are their own index,
per-frame distortions through the image registry, determinism and validation."""

from __future__ import annotations

import numpy as np
import pytest

import attacks
from attacks.image import DISTORTIONS
from attacks.video import VIDEOMARK_SWAPS, swap_positions, temporal_map

FRAMES = 16
INDEX_CLIP = np.broadcast_to(np.arange(FRAMES, dtype=np.uint8)[:, None, None, None], (FRAMES, 8, 8, 3)).copy()
TEMPORAL = ("frame-drop", "frame-insert", "frame-duplicate", "frame-swap", "reverse", "clip-crop", "frame-rate")
RNG_CLIP = np.random.default_rng(0).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)


def frame_ids(clip: np.ndarray) -> list[int]:
    return clip[:, 0, 0, 0].tolist()


def test_registered_video_attacks() -> None:
    names = set(attacks.names("video"))
    assert set(TEMPORAL) <= names
    assert {f"frame-{name}" for name in DISTORTIONS} <= names
    assert attacks.get("frame-jpeg").stronger == "down" and attacks.get("frame-jpeg").low == 10


@pytest.mark.parametrize("name", TEMPORAL)
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_clip_follows_its_temporal_map(name: str, fraction: float) -> None:
    attack = attacks.get(name)
    strength = attack.low + (attack.high - attack.low) * fraction
    for seed in (0, 1):
        out = attack(INDEX_CLIP, strength, seed=seed)
        assert out.dtype == np.uint8 and out.shape[1:] == INDEX_CLIP.shape[1:]
        assert frame_ids(out) == temporal_map(name, strength, seed, FRAMES)
        assert np.array_equal(out, attack(INDEX_CLIP, strength, seed=seed))


def test_frame_swap_is_videomarks_at_strength_four() -> None:
    expected = [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15]  # swaps at i = 1, 5, 9, 13
    assert frame_ids(attacks.get("frame-swap")(INDEX_CLIP, VIDEOMARK_SWAPS)) == expected
    assert attacks.get("frame-swap").default == VIDEOMARK_SWAPS
    assert swap_positions(FRAMES).tolist() == [1, 5, 9, 13, 3, 7, 11]
    seven = temporal_map("frame-swap", 7, 0, FRAMES)
    assert sorted(seven) == list(range(FRAMES)) and sum(a != b for a, b in zip(seven, range(FRAMES))) == 14
    with pytest.raises(ValueError, match="at most 1"):
        attacks.get("frame-swap")(INDEX_CLIP[:4], 2)


def test_drop_insert_duplicate_reverse_crop_rate() -> None:
    dropped = temporal_map("frame-drop", 1 / 16, 3, FRAMES)
    assert len(dropped) == 15 and dropped == sorted(set(dropped))
    assert len(temporal_map("frame-drop", 0.5, 3, FRAMES)) == 8
    assert temporal_map("frame-drop", 0.75, 3, 1) == [0]  # at least one frame is kept

    inserted = temporal_map("frame-insert", 2 / 16, 3, FRAMES)
    assert len(inserted) == 18 and set(inserted) == set(range(FRAMES))
    counts = np.bincount(inserted, minlength=FRAMES)
    assert counts.sum() - FRAMES == 2 and counts.min() == 1

    duplicated = temporal_map("frame-duplicate", 3 / 16, 3, FRAMES)
    assert len(duplicated) == 19 and duplicated == sorted(duplicated) and set(duplicated) == set(range(FRAMES))

    assert temporal_map("reverse", 1.0, 0, FRAMES) == list(range(FRAMES))[::-1]
    partly = temporal_map("reverse", 0.5, 2, FRAMES)
    changed = [j for j, i in enumerate(partly) if i != j]
    assert sorted(partly) == list(range(FRAMES)) and changed and max(changed) - min(changed) < 8

    window = temporal_map("clip-crop", 0.25, 5, FRAMES)
    assert len(window) == 12 and window == list(range(window[0], window[0] + 12))

    assert temporal_map("frame-rate", 0.5, 0, FRAMES) == list(range(0, FRAMES, 2))
    assert temporal_map("frame-rate", 2.0, 0, 4) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_per_frame_attacks_use_the_image_attacks_frame_by_frame() -> None:
    jpeg = attacks.get("frame-jpeg")(RNG_CLIP, 30)
    for frame, attacked in zip(RNG_CLIP, jpeg):
        assert np.array_equal(attacked, attacks.get("jpeg")(frame, 30))
    noisy = attacks.get("frame-noise")(RNG_CLIP, 8.0, seed=4)
    assert np.array_equal(noisy, attacks.get("noise")(RNG_CLIP, 8.0, seed=4))
    assert not np.array_equal(noisy[0] - RNG_CLIP[0], noisy[1] - RNG_CLIP[1])  # each frame its own draw
    for name in DISTORTIONS:
        out = attacks.get(f"frame-{name}")(RNG_CLIP, None, seed=1)
        assert out.shape == RNG_CLIP.shape and out.dtype == np.uint8
    assert temporal_map("frame-blur", 2.0, 0, 5) == list(range(5))


def test_validation() -> None:
    with pytest.raises(ValueError, match="outside"):
        attacks.get("frame-drop")(INDEX_CLIP, 0.9)
    with pytest.raises(ValueError, match="outside"):
        temporal_map("frame-rate", 8.0, 0, FRAMES)
    with pytest.raises(ValueError, match="not a video attack"):
        temporal_map("jpeg", 50, 0, FRAMES)
    with pytest.raises(ValueError, match="at least one frame"):
        temporal_map("reverse", 1.0, 0, 0)
    with pytest.raises(ValueError, match="uint8"):
        attacks.get("reverse")(INDEX_CLIP.astype(np.int16), 1.0)
    with pytest.raises(ValueError, match="shaped"):
        attacks.get("frame-noise")(INDEX_CLIP[0], 1.0)
