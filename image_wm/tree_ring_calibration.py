"""The few directions along which edits move Tree-Ring's ring statistic, fitted once per pipeline.

Why: Tree-Ring correlates the inverted latent's standardised ring means ``w`` (K values) with the
key's ring values. Edits that paint black regions (rotation's corners, an erased square) shift
``w`` of every edited image, watermarked or not, along the same few directions, set by how the
pipeline's VAE and inversion see black. One fixed key that happens to lie along them flags most
such images (measured: the worst of 500 keys flagged 0.26-0.74 of rotated and 0.57 of
quarter-erased unwatermarked images at p <= 1%), and a key lying against them misses its own
watermark. Projecting those directions out of ``w`` and of the key for the images they dominate
(``TreeRing.score``) brings the worst key to 0.09-0.15.

The directions are the ``NUISANCE_DIRECTIONS`` strongest (uncentred) singular directions of ``w``
over ``PROBE_SCENES`` procedural scenes (``image_wm.scenes``; no watermark, no key, no
generation needed) under ``PROBE_EDITS``, inverted by the pipeline itself. They depend on the
pipeline and the ring geometry, never on a key or on the image being tested, so the p-value stays
exact under Tree-Ring's key null whatever they are; stale or imperfect directions cost robustness,
never that calibration. Six directions from rotations of 2.5-45 degrees and erasures of 5-25% did
best among the probe sets tried (4 or 8 directions, fewer angles, added crops, 48 scenes).

Fitting costs ``len(PROBE_EDITS) * PROBE_SCENES`` = 312 inversions (plus 24 generations where
the probes are generated), so results are stored by a fingerprint of the pipeline's weights and
scheduler and the probe settings: the package ships the reference model's entry, every other
pipeline's goes to the user cache (``provenance.models.cache_dir()``) on first detection. After
retraining the reference weights, refresh the shipped entry with
``.venv/bin/python scripts/ship_tree_ring_entry.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from image_wm import edits
from provenance.files import write_text_atomic
from provenance.models import cache_dir, diffusion_weights, update_with_weights

NUISANCE_DIRECTIONS = 6
PROBE_SCENES = 24
PROBE_SEED = 7_000_000  # scenes disjoint from the training and audit seeds
PROBE_STEPS = 25  # DDIM inversion steps of the probe images (``image_wm.pipeline.DEFAULT_STEPS``)
PROBE_EDITS: tuple[tuple[str, float], ...] = (
    *(("rotation", degrees) for degrees in (2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 30.0, 45.0)),
    *(("erase", area) for area in (0.05, 0.1, 0.15, 0.25)),
)
# the audit's ``rotation`` and ``erase`` attacks are these same functions (``attacks.image``)
PROBE_EDIT_FUNCTIONS = {"rotation": edits.rotate, "erase": edits.erase}
PROBE_CHUNK = 32  # images inverted per batch (bounds GPU memory on large pipelines)
SHIPPED = Path(__file__).parent / "reference" / "weights" / "tree_ring"
FORMAT = "provenance-tree-ring-nuisance/2"
# what a pipeline draws its own probes from: everyday subjects, no watermark (plain noise)
PROBE_PROMPTS = ("a photograph of a city street", "a bowl of fruit on a table", "a portrait of a person",
                 "a mountain landscape", "a cat on a sofa", "a red car", "a forest path", "a plate of food")


@dataclass(frozen=True)
class ProbeImages:
    """Unwatermarked images to calibrate on: ``make(count, seed)`` gives uint8 ``(count, H, W, 3)``;
    ``source`` names them in the fingerprint, so other probes never reuse a stored entry."""

    source: str
    make: Callable[[int, int], np.ndarray]


def generated_probes(pipeline: Any) -> ProbeImages:
    """The pipeline's own generations of ``PROBE_PROMPTS`` from plain noise, at its guidance."""
    def make(count: int, seed: int) -> np.ndarray:
        prompts = [PROBE_PROMPTS[i % len(PROBE_PROMPTS)] for i in range(count)]
        seeds = [seed + i for i in range(count)]
        return np.concatenate([
            pipeline.run_pipeline(prompts[i:i + PROBE_CHUNK], pipeline.plain_latents(seeds[i:i + PROBE_CHUNK]),
                                  PROBE_STEPS, pipeline.guidance)
            for i in range(0, count, PROBE_CHUNK)])

    return ProbeImages(f"generations: {list(PROBE_PROMPTS)}, guidance {pipeline.guidance}", make)


def probes_of(pipeline: Any) -> ProbeImages:
    return pipeline.probes if pipeline.probes is not None else generated_probes(pipeline)


def probe_ring_statistics(pipeline: Any, scheme: Any) -> np.ndarray:
    """``(len(PROBE_EDITS) * PROBE_SCENES, K)`` ring statistics of the edited probe images."""
    images = pipeline.native_size(probes_of(pipeline).make(PROBE_SCENES, PROBE_SEED))
    edited = np.concatenate([PROBE_EDIT_FUNCTIONS[name](images, strength, PROBE_SEED) for name, strength in PROBE_EDITS])
    chunks = tqdm(range(0, len(edited), PROBE_CHUNK), desc="Tree-Ring calibration for this pipeline (once)",
                  unit="chunk", disable=None)  # shown on a terminal: a large model's first detection is slow
    return np.concatenate([
        scheme.ring_statistics(pipeline.invert(edited[i:i + PROBE_CHUNK], inversion_steps=PROBE_STEPS))
        for i in chunks
    ])


def strongest_directions(statistics: np.ndarray, count: int = NUISANCE_DIRECTIONS) -> np.ndarray:
    """``(count, K)`` orthonormal directions of largest energy of the rows (uncentred: a shared shift counts)."""
    _, _, directions = np.linalg.svd(np.asarray(statistics, dtype=np.float64), full_matrices=False)
    return directions[:count]


def ring_geometry(pipeline: Any, scheme: Any) -> dict:
    """The marked channels and ring radius ``scheme`` uses on ``pipeline``'s latents (part of the fingerprint)."""
    _, channels, height, width = pipeline.latent_shape(1)
    return {"channels": scheme.channels_for(channels), "radius": scheme.radius_for(height, width),
            "latent": [channels, height, width], "image": pipeline.image_size}


def fingerprint(pipeline: Any, scheme: Any) -> str:
    """Hash of what the directions depend on: VAE, denoiser and text-encoder weights, the inversion's
    noise schedule, the ring geometry and the probe set. Only stored bytes, exact integers and
    config values, never computed floats or library versions, so the same weights give the same
    fingerprint on any machine (the shipped entry's test checks it)."""
    digest = hashlib.blake2b(digest_size=16)
    described = {
        "geometry": ring_geometry(pipeline, scheme),
        "probe": {"format": FORMAT, "edits": PROBE_EDITS, "scenes": PROBE_SCENES, "seed": PROBE_SEED,
                  "steps": PROBE_STEPS, "directions": NUISANCE_DIRECTIONS, "source": probes_of(pipeline).source},
        "schedule": pipeline.adapter.noise_schedule(PROBE_STEPS),
    }
    digest.update(json.dumps(described, sort_keys=True).encode())
    update_with_weights(digest, diffusion_weights(pipeline.pipe))
    return digest.hexdigest()


def nuisance_for(pipeline: Any, scheme: Any) -> np.ndarray:
    """The pipeline's nuisance directions: the shipped or cached entry, else fitted now and cached
    (also when the cached file is unreadable or the wrong shape: it is rewritten)."""
    name = f"{fingerprint(pipeline, scheme)}.json"
    geometry = ring_geometry(pipeline, scheme)
    shape = (NUISANCE_DIRECTIONS, len(geometry["channels"]) * geometry["radius"])
    for folder in (SHIPPED, cache_dir() / "tree-ring"):
        directions = read_entry(folder / name, shape)
        if directions is not None:
            return directions
    directions = strongest_directions(probe_ring_statistics(pipeline, scheme))
    save(directions, cache_dir() / "tree-ring" / name)
    return directions


def read_entry(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The directions stored at ``path``, or None when it is missing, unreadable or not ``shape``."""
    try:
        directions = np.asarray(json.loads(path.read_text())["directions"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return directions if directions.shape == shape and np.isfinite(directions).all() else None


def save(directions: np.ndarray, path: Path) -> Path:
    """Write an entry atomically (a reader, or a second process fitting the same entry, never sees half a file)."""
    # Not a secret: readable (0644, the default) like the weights it describes.
    return write_text_atomic(path, json.dumps({"format": FORMAT, "directions": directions.tolist()}))
