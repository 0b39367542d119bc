"""Seeded procedural 64x64 scenes and short videos with ground-truth captions.

The miniature world's data source: one or two flat-coloured shapes on a plain,
gradient, striped or dotted background, each scene described by a short template
caption ("a small red star above a large blue ring on striped green background").
Everything the renderer needs is in the spec, so ``render(spec)`` is a pure function
and ``generate(n, seed)`` is reproducible bit for bit.

Coordinates are continuous pixels of the 64x64 image: x to the right, y downwards,
pixel ``i`` covering ``[i, i + 1)``.  Shapes are rasterised at ``SS``x resolution with
OpenCV and box-filtered down (anti-aliasing); background patterns are anti-aliased
analytically (coverage from the signed distance to the pattern edge).  A smooth random
texture of std ``WORLD_TEXTURE`` covers the whole scene: the shipped models were trained on
it, so ``generate`` draws it by default (``texture=0`` gives the bare scenes).

Every word of every caption is a single WordPiece token of bert-base-uncased, and a
caption has at most 14 of them (the MiniLM text encoder keeps 16 with [CLS]/[SEP]).
To fit "left of"/"right of" scenes in 14, two-shape captions drop the article before
the background: "a A left of a B on striped green background".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

import cv2
import numpy as np

__all__ = [
    "RES", "SS", "SHAPES", "COLOURS", "PALETTE", "SIZES", "RELATIONS", "BACKGROUNDS", "MOTIONS",
    "NONE", "LABEL_CLASSES", "VIDEO_LABEL_CLASSES", "ShapeSpec", "SceneSpec", "VideoSpec",
    "sample_spec", "render", "generate", "sample_video_spec", "render_video", "generate_videos",
    "caption_from_labels", "canonical_labels", "compatible_colours", "interior_point",
]

RES = 64  # output side in pixels
SS = 4  # supersampling factor for shapes
_SHIFT = 4  # fractional bits for cv2 drawing
_FIX = SS * (1 << _SHIFT)

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 220, 40),
    "green": (40, 165, 60),
    "blue": (35, 75, 220),
    "purple": (135, 50, 185),
    "pink": (245, 140, 195),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "brown": (125, 75, 35),
}
COLOURS = tuple(PALETTE)
SIZES = ("small", "large")
RELATIONS = ("above", "below", "left of", "right of")  # first shape relative to the second
BACKGROUNDS = ("plain", "gradient", "striped", "dotted")
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "turning")
NONE = "none"  # the extra last class of the optional label heads

# label heads -> number of classes; optional heads have NONE as their last class
LABEL_CLASSES: dict[str, int] = {
    "shape1": len(SHAPES), "colour1": len(COLOURS), "size1": len(SIZES),
    "shape2": len(SHAPES) + 1, "colour2": len(COLOURS) + 1, "size2": len(SIZES) + 1,
    "relation": len(RELATIONS) + 1,
    "background": len(BACKGROUNDS), "bg_colour": len(COLOURS),
}
VIDEO_LABEL_CLASSES: dict[str, int] = {
    "shape1": len(SHAPES), "colour1": len(COLOURS), "size1": len(SIZES),
    "motion": len(MOTIONS), "to_colour": len(COLOURS) + 1,
    "background": len(BACKGROUNDS), "bg_colour": len(COLOURS),
}

SIZE_RADIUS = {"small": (4.5, 6.0), "large": (9.0, 11.0)}  # nominal radius range, pixels
EXTENT = 1.15  # every shape lies within EXTENT * radius of its centre
MARGIN = 1.0  # shapes keep this far from the image border
MAX_ROTATION = 20.0  # degrees
COLOUR_JITTER = 10  # +- per channel, shapes and background
MIN_CONTRAST = 85.0  # min RGB distance from a shape colour to both background tones
MAX_GRAIN = 2.5  # max std of the static Gaussian grain, in 0..255 units
TEXTURE_SIGMA = 2.0  # blur of the texture field, pixels (the latent cell is 4 pixels)
# Texture std (0..255) of the shipped world's scenes: it gives the initial noise of a generated
# image somewhere to survive the VAE round trip (docs/reference_models.md), so every scene drawn
# as "the world's data" (training, benchmarks, attacks' natural images) carries it.
WORLD_TEXTURE = 24.0
_PERP = 0.35  # two shapes: |perpendicular offset| <= _PERP * separation along the relation axis


# --------------------------------------------------------------------------- geometry


def _star(points: int = 5, outer: float = 1.15, inner: float = 0.5) -> np.ndarray:
    ang = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)


def _cross(w: float = 0.36, a: float = 1.0) -> np.ndarray:
    return np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
                     (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)])


_TRI = 1.15 * np.array([(0.0, -1.0), (math.sqrt(3) / 2, 0.5), (-math.sqrt(3) / 2, 0.5)])
# unit polygons (nominal radius 1, unrotated, y down); all within EXTENT of the origin
_POLYGONS: dict[str, np.ndarray] = {
    "square": 0.8 * np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]),
    "triangle": _TRI,
    "star": _star(),
    "cross": _cross(),
    "diamond": np.array([(0.0, -1.15), (0.7, 0.0), (0.0, 1.15), (-0.7, 0.0)]),
}
_CIRCLE_R = 1.0
_RING_OUTER, _RING_INNER = 1.05, 0.6


def _luminance(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _shade(rgb) -> np.ndarray:
    """The background's second tone: 30% towards white for dark colours, darker otherwise."""
    c = np.asarray(rgb, np.float32)
    return c + (255.0 - c) * 0.3 if _luminance(c) < 115 else c * 0.7


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((p - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _compatibility() -> dict[str, tuple[str, ...]]:
    out = {}
    for bg in COLOURS:
        a = np.asarray(PALETTE[bg], np.float32)
        b = _shade(a)
        out[bg] = tuple(c for c in COLOURS
                        if _segment_distance(np.asarray(PALETTE[c], np.float32), a, b) >= MIN_CONTRAST)
    return out


_COMPATIBLE = _compatibility()


def compatible_colours(bg_colour: str) -> tuple[str, ...]:
    """Shape colours that stand out from both tones of a ``bg_colour`` background."""
    return _COMPATIBLE[bg_colour]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ShapeSpec:
    """One shape: class names, centre (pixels), rotation (degrees), nominal radius, actual RGB."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    rotation: float = 0.0
    radius: float = 0.0  # 0 -> middle of the size's range
    rgb: tuple[float, float, float] | None = None  # None -> the palette colour

    @property
    def r(self) -> float:
        if self.radius > 0:
            return self.radius
        lo, hi = SIZE_RADIUS[self.size]
        return 0.5 * (lo + hi)

    @property
    def extent(self) -> float:
        """Radius of a circle about the centre that contains the shape."""
        return EXTENT * self.r

    @property
    def colour_rgb(self) -> tuple[float, float, float]:
        return tuple(self.rgb) if self.rgb is not None else PALETTE[self.colour]

    def phrase(self, with_size: bool = True) -> str:
        return f"a {self.size} {self.colour} {self.shape}" if with_size else f"a {self.colour} {self.shape}"


def interior_point(s: ShapeSpec) -> tuple[float, float]:
    """A point well inside the shape (its centre, or a point on the band of a ring)."""
    if s.shape == "ring":
        return s.cx + 0.5 * (_RING_OUTER + _RING_INNER) * s.r, s.cy
    return s.cx, s.cy


def _bg_phrase(background: str, bg_colour: str, article: bool = True) -> str:
    return f"on {'a ' if article else ''}{background} {bg_colour} background"


@dataclass(frozen=True, kw_only=True)
class Backdrop:
    """The static background a scene or clip is drawn on (keyword-only in both specs).

    ``bg_params`` is kind-specific: gradient (angle_deg,), striped (angle_deg, period, phase),
    dotted (period, dot_radius, offset_x, offset_y); ``grain`` is the std of a static
    Gaussian grain drawn from ``grain_seed``. ``texture`` is the std of a smooth random colour
    field, also drawn from ``grain_seed``: white noise blurred to the latent's scale, so that the
    scenes carry many independent degrees of freedom that a factor-4 VAE can reproduce (what lets
    the initial noise of a generated image survive into its pixels; docs/reference_models.md).
    """

    background: str = "plain"
    bg_colour: str = "white"
    bg_rgb: tuple[float, float, float] | None = None
    bg_params: tuple[float, ...] = ()
    grain: float = 0.0
    grain_seed: int = 0
    texture: float = 0.0


@dataclass(frozen=True)
class SceneSpec(Backdrop):
    """A still scene: one or two shapes (the first is the caption's subject) on a ``Backdrop``."""

    shapes: tuple[ShapeSpec, ...]

    @property
    def relation(self) -> str | None:
        """Where the first shape is relative to the second, from the actual centres."""
        if len(self.shapes) < 2:
            return None
        a, b = self.shapes[0], self.shapes[1]
        dx, dy = a.cx - b.cx, a.cy - b.cy
        if abs(dy) >= abs(dx):
            return "above" if dy < 0 else "below"
        return "left of" if dx < 0 else "right of"

    def caption(self) -> str:
        a = self.shapes[0]
        if len(self.shapes) == 1:
            return f"{a.phrase()} {_bg_phrase(self.background, self.bg_colour)}"
        b = self.shapes[1]
        return f"{a.phrase()} {self.relation} {b.phrase()} {_bg_phrase(self.background, self.bg_colour, False)}"

    def labels(self) -> dict[str, int]:
        """Integer class ids per head of ``LABEL_CLASSES`` (second shape absent -> NONE class)."""
        a = self.shapes[0]
        out = {"shape1": SHAPES.index(a.shape), "colour1": COLOURS.index(a.colour), "size1": SIZES.index(a.size)}
        if len(self.shapes) > 1:
            b = self.shapes[1]
            out.update(shape2=SHAPES.index(b.shape), colour2=COLOURS.index(b.colour),
                       size2=SIZES.index(b.size), relation=RELATIONS.index(self.relation))
        else:
            out.update(shape2=len(SHAPES), colour2=len(COLOURS), size2=len(SIZES), relation=len(RELATIONS))
        out.update(background=BACKGROUNDS.index(self.background), bg_colour=COLOURS.index(self.bg_colour))
        return out


@dataclass(frozen=True)
class VideoSpec(Backdrop):
    """A clip of one shape changing linearly from ``start`` to ``end`` over a static background.

    ``motion`` is one of ``MOTIONS``; for "turning" the shape's colour becomes ``end.colour``.
    """

    start: ShapeSpec
    end: ShapeSpec
    motion: str

    def at(self, t: float) -> ShapeSpec:
        """The shape at time ``t`` in [0, 1] (position, radius, colour and rotation interpolated)."""
        s, e = self.start, self.end
        rgb = tuple((1 - t) * p + t * q for p, q in zip(s.colour_rgb, e.colour_rgb))
        return ShapeSpec(s.shape, e.colour if t >= 0.5 else s.colour, s.size,
                         (1 - t) * s.cx + t * e.cx, (1 - t) * s.cy + t * e.cy,
                         (1 - t) * s.rotation + t * e.rotation, (1 - t) * s.r + t * e.r, rgb)

    @property
    def to_colour(self) -> str | None:
        return self.end.colour if self.motion == "turning" else None

    def caption(self) -> str:
        return _video_caption(self.start.shape, self.start.colour, self.start.size, self.motion,
                              self.to_colour, self.background, self.bg_colour)

    def labels(self) -> dict[str, int]:
        """Integer class ids per head of ``VIDEO_LABEL_CLASSES``."""
        s = self.start
        to = self.to_colour
        return {"shape1": SHAPES.index(s.shape), "colour1": COLOURS.index(s.colour), "size1": SIZES.index(s.size),
                "motion": MOTIONS.index(self.motion),
                "to_colour": COLOURS.index(to) if to is not None else len(COLOURS),
                "background": BACKGROUNDS.index(self.background), "bg_colour": COLOURS.index(self.bg_colour)}


def _video_caption(shape, colour, size, motion, to_colour, background, bg_colour) -> str:
    bg = _bg_phrase(background, bg_colour)
    if motion in ("growing", "shrinking"):
        return f"a {colour} {shape} {motion} {bg}"
    if motion == "turning":
        return f"a {size} {colour} {shape} turning {to_colour} {bg}"
    return f"a {size} {colour} {shape} {motion} {bg}"


def caption_from_labels(labels: Mapping[str, int]) -> str:
    """Fill the caption template from class ids (e.g. a captioner's argmaxes).

    Scene labels (``LABEL_CLASSES``) or video labels (``VIDEO_LABEL_CLASSES``, recognised by
    the "motion" key).  A scene gets a second shape only when shape2, colour2, size2 and
    relation are all not NONE; a "turning" video whose to_colour is NONE says "turning" alone.
    """
    shape, colour, size = SHAPES[int(labels["shape1"])], COLOURS[int(labels["colour1"])], SIZES[int(labels["size1"])]
    background, bg_colour = BACKGROUNDS[int(labels["background"])], COLOURS[int(labels["bg_colour"])]
    if "motion" in labels:
        motion = MOTIONS[int(labels["motion"])]
        to = int(labels.get("to_colour", len(COLOURS)))
        if motion == "turning" and to >= len(COLOURS):
            return f"a {size} {colour} {shape} turning {_bg_phrase(background, bg_colour)}"
        return _video_caption(shape, colour, size, motion, COLOURS[to] if to < len(COLOURS) else None,
                              background, bg_colour)
    first = f"a {size} {colour} {shape}"
    ids = [int(labels.get(k, n - 1)) for k, n in (("shape2", len(SHAPES) + 1), ("colour2", len(COLOURS) + 1),
                                                  ("size2", len(SIZES) + 1), ("relation", len(RELATIONS) + 1))]
    if ids[0] < len(SHAPES) and ids[1] < len(COLOURS) and ids[2] < len(SIZES) and ids[3] < len(RELATIONS):
        second = f"a {SIZES[ids[2]]} {COLOURS[ids[1]]} {SHAPES[ids[0]]}"
        return f"{first} {RELATIONS[ids[3]]} {second} {_bg_phrase(background, bg_colour, False)}"
    return f"{first} {_bg_phrase(background, bg_colour)}"


_SWAPPED_RELATION = {RELATIONS.index("below"): RELATIONS.index("above"),
                     RELATIONS.index("right of"): RELATIONS.index("left of")}


def canonical_labels(labels: Mapping[str, int]) -> dict[str, int]:
    """The same scene's labels with the first shape above or left of the second.

    "a red star below a blue ring" and "a blue ring above a red star" describe one image, so
    an image -> labels model can only learn one of them; scene labels (not video labels)
    are put in this order. Single-shape labels come back unchanged.
    """
    out = dict(labels)
    relation = int(out.get("relation", len(RELATIONS)))
    if relation in _SWAPPED_RELATION:
        for a, b in (("shape1", "shape2"), ("colour1", "colour2"), ("size1", "size2")):
            out[a], out[b] = out[b], out[a]
        out["relation"] = _SWAPPED_RELATION[relation]
    return out


# --------------------------------------------------------------------------- sampling


class _Draws:
    """Uniforms drawn from the generator in one call (one spec's worth), handed out in order."""

    def __init__(self, rng: np.random.Generator, n: int = 48):
        self._u = rng.random(n).tolist()
        self._i = 0

    def random(self) -> float:
        self._i += 1
        return self._u[self._i - 1]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def integers(self, n: int) -> int:
        return min(int(self.random() * n), n - 1)


def _jitter(rng: _Draws, colour: str) -> tuple[float, float, float]:
    return tuple(float(min(255, max(0, v + rng.integers(2 * COLOUR_JITTER + 1) - COLOUR_JITTER)))
                 for v in PALETTE[colour])


def _pick(rng: _Draws, options) -> str:
    return options[rng.integers(len(options))]


def _sample_background(rng: _Draws) -> dict:
    kind, colour = _pick(rng, BACKGROUNDS), _pick(rng, COLOURS)
    if kind == "gradient":
        params = (float(rng.uniform(0, 360)),)
    elif kind == "striped":
        params = (float(rng.uniform(0, 180)), float(rng.uniform(6, 12)), float(rng.uniform(0, 1)))
    elif kind == "dotted":
        period = float(rng.uniform(7, 11))
        params = (period, float(period * rng.uniform(0.2, 0.3)), float(rng.uniform(0, period)),
                  float(rng.uniform(0, period)))
    else:
        params = ()
    return dict(background=kind, bg_colour=colour, bg_rgb=_jitter(rng, colour), bg_params=params,
                grain=float(rng.uniform(0, MAX_GRAIN)), grain_seed=int(rng.integers(2**31)))


def _sample_shape(rng: _Draws, colours, size: str | None = None) -> ShapeSpec:
    shape, colour = _pick(rng, SHAPES), _pick(rng, colours)
    size = size or _pick(rng, SIZES)
    radius = float(rng.uniform(*SIZE_RADIUS[size]))
    rotation = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    return ShapeSpec(shape, colour, size, 0.0, 0.0, rotation, radius, _jitter(rng, colour))


def _place(s: ShapeSpec, cx: float, cy: float) -> ShapeSpec:
    return ShapeSpec(s.shape, s.colour, s.size, cx, cy, s.rotation, s.radius, s.rgb)


def _bounds(e: float) -> tuple[float, float]:
    return e + MARGIN, RES - MARGIN - e


def sample_spec(rng: np.random.Generator, p_two: float = 0.5) -> SceneSpec:
    """A random scene: 1 shape, or 2 (probability ``p_two``) in an unambiguous relation."""
    rng = _Draws(rng)
    bg = _sample_background(rng)
    colours = _COMPATIBLE[bg["bg_colour"]]
    if rng.random() >= p_two:
        a = _sample_shape(rng, colours)
        lo, hi = _bounds(a.extent)
        return SceneSpec((_place(a, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))),), **bg)
    a, b = _sample_shape(rng, colours), _sample_shape(rng, colours)
    relation = _pick(rng, RELATIONS)
    # along the relation's axis: `lead` is the shape with the smaller coordinate
    lead, trail = (a, b) if relation in ("above", "left of") else (b, a)
    el, et = lead.extent, trail.extent
    lo, hi = el + MARGIN, RES - MARGIN - et
    sep = float(rng.uniform(el + et + 2.0, hi - lo))
    p_lead = float(rng.uniform(lo, hi - sep))
    p_trail = p_lead + sep
    m = max(el, et)
    q_lead = float(rng.uniform(*_bounds(m)))
    tlo, thi = _bounds(et)
    q_trail = float(rng.uniform(max(tlo, q_lead - _PERP * sep), min(thi, q_lead + _PERP * sep)))
    if relation in ("above", "below"):
        lead, trail = _place(lead, q_lead, p_lead), _place(trail, q_trail, p_trail)
    else:
        lead, trail = _place(lead, p_lead, q_lead), _place(trail, p_trail, q_trail)
    first, second = (lead, trail) if relation in ("above", "left of") else (trail, lead)
    spec = SceneSpec((first, second), **bg)
    assert spec.relation == relation
    return spec


def sample_video_spec(rng: np.random.Generator) -> VideoSpec:
    """A random clip: one shape moving (by 14-26 px), growing, shrinking or turning a colour."""
    rng = _Draws(rng)
    bg = _sample_background(rng)
    colours = _COMPATIBLE[bg["bg_colour"]]
    motion = _pick(rng, MOTIONS)
    if motion in ("growing", "shrinking"):
        size0, size1 = ("small", "large") if motion == "growing" else ("large", "small")
        s = _sample_shape(rng, colours, size0)
        r1 = float(rng.uniform(*SIZE_RADIUS[size1]))
        lo, hi = _bounds(EXTENT * max(s.r, r1))
        cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
        start = _place(s, cx, cy)
        end = ShapeSpec(s.shape, s.colour, size1, cx, cy, s.rotation, r1, s.rgb)
    elif motion == "turning":
        s = _sample_shape(rng, colours)
        to = _pick(rng, tuple(c for c in colours if c != s.colour))
        lo, hi = _bounds(s.extent)
        start = _place(s, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        end = ShapeSpec(s.shape, to, s.size, start.cx, start.cy, s.rotation, s.radius, _jitter(rng, to))
    else:
        s = _sample_shape(rng, colours)
        lo, hi = _bounds(s.extent)
        dist = float(rng.uniform(14, 26))
        along0 = float(rng.uniform(lo, hi - dist))
        perp = float(rng.uniform(lo, hi))
        direction = motion.split()[1]
        a0, a1 = (along0, along0 + dist) if direction in ("right", "down") else (along0 + dist, along0)
        if direction in ("left", "right"):
            start, end_xy = _place(s, a0, perp), (a1, perp)
        else:
            start, end_xy = _place(s, perp, a0), (perp, a1)
        end = _place(s, *end_xy)
    return VideoSpec(start, end, motion, **bg)


# --------------------------------------------------------------------------- rendering

_YY, _XX = np.mgrid[0:RES, 0:RES].astype(np.float32) + 0.5  # pixel centres


def _coverage(s: ShapeSpec) -> np.ndarray:
    """Anti-aliased coverage of a shape, float32 [RES, RES] in [0, 1]."""
    canvas = np.zeros((RES * SS, RES * SS), np.uint8)
    r = s.r

    def fix(v):  # continuous pixel coordinate -> cv2 fixed-point supersampled pixel-centre coordinate
        return np.round(np.asarray(v) * _FIX - 0.5 * (1 << _SHIFT)).astype(np.int32)

    if s.shape in ("circle", "ring"):
        centre = tuple(int(v) for v in fix((s.cx, s.cy)))
        outer = _RING_OUTER if s.shape == "ring" else _CIRCLE_R
        cv2.circle(canvas, centre, int(round(outer * r * _FIX)), 255, -1, cv2.LINE_8, _SHIFT)
        if s.shape == "ring":
            cv2.circle(canvas, centre, int(round(_RING_INNER * r * _FIX)), 0, -1, cv2.LINE_8, _SHIFT)
    else:
        th = math.radians(s.rotation)
        c, sn = math.cos(th), math.sin(th)
        rot = np.array([[c, -sn], [sn, c]])
        pts = _POLYGONS[s.shape] @ rot.T * r + (s.cx, s.cy)
        cv2.fillPoly(canvas, [fix(pts)], 255, cv2.LINE_8, _SHIFT)
    small = cv2.resize(canvas, (RES, RES), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) * (1.0 / 255.0)


def _background(spec) -> np.ndarray:
    """Background image, float32 [RES, RES, 3] in 0..255."""
    c0 = np.asarray(spec.bg_rgb if spec.bg_rgb is not None else PALETTE[spec.bg_colour], np.float32)
    c1 = _shade(c0)
    p = spec.bg_params
    if spec.background == "plain":
        return np.broadcast_to(c0, (RES, RES, 3)).copy()
    if spec.background == "gradient":
        th = math.radians(p[0] if p else 0.0)
        u = (_XX - RES / 2) * math.cos(th) + (_YY - RES / 2) * math.sin(th)
        half = RES / 2 * (abs(math.cos(th)) + abs(math.sin(th)))
        w = (u + half) / (2 * half)  # 0 at one corner, 1 at the opposite one
    elif spec.background == "striped":
        th, period, phase = (math.radians(p[0]), p[1], p[2]) if p else (0.0, 8.0, 0.0)
        u = _XX * math.cos(th) + _YY * math.sin(th)
        h = np.mod(u / period + phase, 1.0) - 0.5
        w = np.clip(0.5 + period * (np.abs(h) - 0.25), 0.0, 1.0)  # signed distance to a stripe edge
    elif spec.background == "dotted":
        period, rad, ox, oy = p if p else (9.0, 2.5, 0.0, 0.0)
        dx = (np.mod((_XX + ox) / period, 1.0) - 0.5) * period
        dy = (np.mod((_YY + oy) / period, 1.0) - 0.5) * period
        w = np.clip(0.5 + rad - np.sqrt(dx * dx + dy * dy), 0.0, 1.0)
    else:
        raise ValueError(f"unknown background {spec.background!r}")
    return c0 + (c1 - c0) * w[..., None]


_TILE = 3 * RES  # grain windows are cut from a fixed noise tile (fast, and the same on every machine)
_GRAIN_TILE = np.random.default_rng(0x5CE4E5).standard_normal((_TILE + RES, _TILE + RES, 3), dtype=np.float32)


def _grain(spec) -> np.ndarray | None:
    """Static Gaussian grain (std ``spec.grain``) at a window of the tile chosen by ``grain_seed``."""
    if spec.grain <= 0:
        return None
    ox, oy = spec.grain_seed % _TILE, (spec.grain_seed // _TILE) % _TILE
    return _GRAIN_TILE[oy:oy + RES, ox:ox + RES] * np.float32(spec.grain)


_TEXTURE_KERNEL = cv2.getGaussianKernel(2 * math.ceil(4 * TEXTURE_SIGMA) + 1, TEXTURE_SIGMA, cv2.CV_32F)
_TEXTURE_GAIN = np.float32(1.0 / float((_TEXTURE_KERNEL ** 2).sum()))  # blurred unit noise -> unit std


def _texture(spec) -> np.ndarray | None:
    """Smooth colour field of std ``spec.texture``, drawn afresh from ``grain_seed``.

    Not cut from a shared tile as the grain is: a tile's windows are a two-parameter family
    that a trained UNet could learn, and the point of the field is to be high-dimensional.
    """
    if spec.texture <= 0:
        return None
    white = np.random.default_rng((spec.grain_seed, 1)).standard_normal((RES, RES, 3), dtype=np.float32)
    field = cv2.sepFilter2D(white, -1, _TEXTURE_KERNEL, _TEXTURE_KERNEL, borderType=cv2.BORDER_REFLECT_101)
    return field * (_TEXTURE_GAIN * np.float32(spec.texture))


def _static_noise(spec) -> np.ndarray | None:
    """Grain plus texture, the per-scene pattern that stays put while a clip's shape moves."""
    grain, texture = _grain(spec), _texture(spec)
    if texture is None:
        return grain
    return texture if grain is None else grain + texture


def _composite(img: np.ndarray, s: ShapeSpec) -> None:
    a = _coverage(s)[..., None]
    img += (np.asarray(s.colour_rgb, np.float32) - img) * a


def _finish(img: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    if noise is not None:
        img += noise
    img += 0.5
    return img.clip(0, 255, out=img).astype(np.uint8)


def render(spec: SceneSpec) -> np.ndarray:
    """The scene as uint8 [RES, RES, 3] RGB."""
    img = _background(spec)
    for s in spec.shapes:
        _composite(img, s)
    return _finish(img, _static_noise(spec))


def render_video(spec: VideoSpec, frames: int = 16) -> np.ndarray:
    """The clip as uint8 [frames, RES, RES, 3]; frame k shows the shape at t = k / (frames - 1)."""
    if frames < 2:
        raise ValueError("a video needs at least 2 frames")
    bg, noise = _background(spec), _static_noise(spec)
    out = np.empty((frames, RES, RES, 3), np.uint8)
    for k in range(frames):
        img = bg.copy()
        _composite(img, spec.at(k / (frames - 1)))
        out[k] = _finish(img, noise)
    return out


def generate(n: int, seed: int, p_two: float = 0.5,
             texture: float = WORLD_TEXTURE) -> tuple[np.ndarray, list[str], list[SceneSpec]]:
    """``n`` seeded scenes: images uint8 [n, RES, RES, 3], captions, specs.

    ``texture`` (std of the smooth field, 0..255 units) changes the pixels only: the same seed
    gives the same shapes, backgrounds and captions at any texture.
    """
    rng = np.random.default_rng(seed)
    specs = [replace(sample_spec(rng, p_two), texture=texture) for _ in range(n)]
    images = np.empty((n, RES, RES, 3), np.uint8)
    for i, s in enumerate(specs):
        images[i] = render(s)
    return images, [s.caption() for s in specs], specs


def generate_videos(n: int, seed: int, frames: int = 16,
                    texture: float = WORLD_TEXTURE) -> tuple[np.ndarray, list[str], list[VideoSpec]]:
    """``n`` seeded clips: videos uint8 [n, frames, RES, RES, 3], captions, specs (``texture`` as in ``generate``)."""
    rng = np.random.default_rng(seed)
    specs = [replace(sample_video_spec(rng), texture=texture) for _ in range(n)]
    videos = np.empty((n, frames, RES, RES, 3), np.uint8)
    for i, s in enumerate(specs):
        videos[i] = render_video(s, frames)
    return videos, [s.caption() for s in specs], specs
