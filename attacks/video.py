"""Attacks on video clips: temporal edits (VideoMark's frame drop, insert and swap, and more) and
every image distortion applied frame by frame.

Why temporal attacks are index maps: dropping, inserting, duplicating, swapping, reversing,
cropping the clip in time and changing its frame rate all only reorder, repeat or remove whole
frames. Each is therefore a pure function ``(n_frames, strength, generator) -> order`` and the
attacked clip is ``clip[order]``. ``temporal_map`` returns that order (output frame j is input
frame ``order[j]``), so a video detector can be scored on frame-order recovery (VideoMark's
temporal matching) against the truth.

Clips are uint8 RGB ``(F, H, W, 3)``. Temporal attacks keep H, W and dtype and change F as
documented per attack; per-frame attacks (``frame-jpeg``, ``frame-noise``, ...) keep the shape
and call the image attack of the same name through the registry, so each frame is treated as
one image of a batch: it draws its own random parameters (crop position, noise) from
``SeedSequence([seed, frame])``. Randomness comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from attacks.image import DISTORTIONS
from attacks.registry import get, register

Order = Callable[[int, float, np.random.Generator], np.ndarray]

VIDEOMARK_SWAPS = 4
"""frame-swap's strength for VideoMark's ``temporal_tamper.py`` setting: swaps at i = 1, 5, 9, 13."""


def check_video(clip: np.ndarray) -> np.ndarray:
    """``clip`` as a uint8 array ``(F, H, W, 3)`` with at least one frame."""
    clip = np.asarray(clip)
    if clip.dtype != np.uint8:
        raise ValueError(f"a video clip must be uint8 RGB, got {clip.dtype}")
    if clip.ndim != 4 or clip.shape[-1] != 3 or min(clip.shape[:-1]) < 1:
        raise ValueError(f"a video clip must be shaped (frames, H, W, 3), got {clip.shape}")
    return clip


def _count(fraction: float, n_frames: int) -> int:
    return int(round(fraction * n_frames))


def _seeded_start(length: int, n_frames: int, rng: np.random.Generator) -> int:
    """Start of a window of ``length`` frames at a uniform position inside the clip."""
    return int(rng.integers(0, n_frames - length + 1))


# -- the temporal index maps -----------------------------------------------------------------------

def _drop(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    dropped = rng.choice(n_frames, size=min(n_frames - 1, _count(fraction, n_frames)), replace=False)
    return np.delete(np.arange(n_frames), dropped)


def _insert(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    count = _count(fraction, n_frames)
    copies = rng.integers(0, n_frames, size=count)
    positions = rng.integers(0, n_frames + 1, size=count)
    return np.insert(np.arange(n_frames), positions, copies)


def _duplicate(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    repeated = rng.choice(n_frames, size=min(n_frames, _count(fraction, n_frames)), replace=False)
    return np.repeat(np.arange(n_frames), 1 + np.isin(np.arange(n_frames), repeated))


def swap_positions(n_frames: int) -> np.ndarray:
    """Disjoint adjacent pairs (i, i + 1) in the order frame-swap uses them: VideoMark's i = 1, 5, 9, ...
    first, then i = 3, 7, 11, ... between them."""
    first = np.arange(1, n_frames - 1, 4)
    second = np.arange(3, n_frames - 1, 4)
    return np.concatenate([first, second])


def _swap(n_frames: int, count: float, rng: np.random.Generator) -> np.ndarray:
    available = swap_positions(n_frames)
    count = int(round(count))
    if count > len(available):
        raise ValueError(f"frame-swap: a clip of {n_frames} frames holds at most {len(available)} disjoint "
                         f"adjacent swaps, asked for {count}")
    at = available[:count]
    order = np.arange(n_frames)
    order[np.concatenate([at, at + 1])] = order[np.concatenate([at + 1, at])]
    return order


def _reverse(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    length = _count(fraction, n_frames)
    start = _seeded_start(length, n_frames, rng)
    order = np.arange(n_frames)
    order[start:start + length] = order[start:start + length][::-1]
    return order


def _clip_crop(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    kept = max(1, n_frames - _count(fraction, n_frames))
    start = _seeded_start(kept, n_frames, rng)
    return np.arange(start, start + kept)


def _frame_rate(n_frames: int, factor: float, rng: np.random.Generator) -> np.ndarray:
    out_frames = max(1, int(round(n_frames * factor)))
    return np.arange(out_frames) * n_frames // out_frames


_TEMPORAL: dict[str, Order] = {}


def _register_temporal(name: str, order: Order, low: float, high: float, default: float, *,
                       stronger: str = "up", unit: str = "", doc: str) -> None:
    def attack(clip: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
        clip = check_video(clip)
        return clip[order(len(clip), strength, np.random.default_rng(seed))]

    attack.__doc__ = doc
    _TEMPORAL[name] = order
    register(name, "video", low, high, default, stronger=stronger, unit=unit)(attack)  # type: ignore[arg-type]


_register_temporal("frame-drop", _drop, 0.0, 0.75, 1 / 16, unit="fraction of frames dropped",
                   doc="Drop round(fraction * F) frames at seeded positions (at least one frame is kept).")
_register_temporal("frame-insert", _insert, 0.0, 1.0, 1 / 16, unit="fraction of F inserted",
                   doc="Insert copies of seeded frames at seeded positions (VideoMark's frame insert).")
_register_temporal("frame-duplicate", _duplicate, 0.0, 1.0, 1 / 16, unit="fraction of frames repeated",
                   doc="Repeat seeded frames in place (each chosen frame appears twice in a row).")
_register_temporal("frame-swap", _swap, 0, 7, VIDEOMARK_SWAPS, unit="adjacent swaps (rounded)",
                   doc="Swap adjacent frames (i, i + 1) at i = 1, 5, 9, 13, then 3, 7, 11 (4 swaps: VideoMark's).")
_register_temporal("reverse", _reverse, 0.0, 1.0, 1.0, unit="fraction of the clip reversed",
                   doc="Play a seeded contiguous window of the clip backwards (1: the whole clip).")
_register_temporal("clip-crop", _clip_crop, 0.0, 0.9, 0.25, unit="fraction of frames cut",
                   doc="Keep one seeded contiguous window of the clip (temporal crop).")
_register_temporal("frame-rate", _frame_rate, 0.25, 4.0, 0.5, stronger="down", unit="frame-rate factor",
                   doc="Resample the frame rate by a factor: below 1 drops frames evenly, above 1 repeats them.")


# -- per-frame image distortions -------------------------------------------------------------------

def _register_per_frame(image_attack: str) -> None:
    def attack(clip: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
        return get(image_attack)(check_video(clip), strength, seed=seed)

    attack.__doc__ = f"Image attack {image_attack!r} on every frame, each frame with its own seeded draws."
    register(f"frame-{image_attack}", "video", **DISTORTIONS[image_attack])(attack)


for _image_attack in DISTORTIONS:
    _register_per_frame(_image_attack)


def temporal_map(name: str, strength: float | None, seed: int, n_frames: int) -> list[int]:
    """For video attack ``name``: output frame j of a clip of ``n_frames`` frames is input frame ``[j]``.

    The same order the attack applies under the same ``strength`` and ``seed``. Per-frame
    attacks (``frame-jpeg``, ...) keep every frame in place and give ``list(range(n_frames))``.
    """
    attack = get(name)
    if attack.modality != "video":
        raise ValueError(f"{name!r} is a {attack.modality} attack, not a video attack")
    if n_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got n_frames={n_frames}")
    strength = attack.check_strength(strength)
    if name not in _TEMPORAL:
        return list(range(n_frames))
    return _TEMPORAL[name](n_frames, strength, np.random.default_rng(seed)).tolist()
