"""Undo the likely geometric edit before inversion: a keyless search over inverse transforms.

Why: a latent watermark is read by inverting the image to its initial noise and comparing it with
the key's pattern position by position. A mirror, a crop resized back to size, a shift or a turn
puts every latent value in the wrong place, and every inversion-based scheme then reads noise.
No content estimate can tell where the original frame was without the key, so detection tries a
fixed list of candidate inverse transforms, the same for every key and every image: each
candidate of each image is inverted (one batched inversion) and tested at level ``fpr / m`` for
``m`` candidates, and the image's p-value is ``min(1, m * min_j p_j)``. Bonferroni needs no
assumption about how the candidates' p-values depend on each other, so the reported p-value stays
valid under the null (conservative) whatever the search tried; the transform that gave the
smallest p-value is reported with it.

Modes (``MODES``): ``off`` tests the image as received; ``fast`` adds the mirror and the two
common crop-to-fit edits (10% and 20% of the side cut, centred, resized back); ``thorough`` adds
rotations of 2.5-45 degrees either way, crops at the corners and the centre, zoom-out, shifts
and aspect changes.

Cost: when a mode has more than ``REFINED`` candidates, the search runs coarse to fine. Every
candidate is first inverted with ``coarse_steps`` sampler steps (a fifth of the detection's) and
tested; only each image's ``REFINED`` best candidates are inverted again at full steps, and the
reported p-value is ``m`` times the smallest of those full-step p-values. The correction still
counts all ``m`` candidates, and the smallest p-value of a subset is never below the smallest of
the whole list, so the test keeps its level whatever the coarse pass picked; a coarse pass that
ranks the right candidate badly can only cost power.

Erasures: a turn, a shift or an aspect change undone leaves parts of the frame the received image
never covered (its corners, a border), filled in black by the undo. A scheme whose test
reads an exactly-zero latent entry as "no evidence" (``erasable``: PRC's soft signs, and with
them VideoMark) gets those latent positions set to zero (``blank``) instead of the noise an
inversion of filler would give. Which positions are blanked depends only on the candidate's
geometry, never on the image, so the scheme's null law is untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from image_wm import edits
from provenance.result import DetectionResult

__all__ = ["Candidate", "MODES", "RESYNC_MODES", "DEFAULT_RESYNC", "REFINED", "candidates", "coarse_steps",
           "shortlist", "expand", "undone_by", "blank", "combine"]


@dataclass(frozen=True)
class Candidate:
    """One inverse transform: ``undo`` maps uint8 ``(N, H, W, 3)`` images back to where an edit named
    ``found`` took them from; ``black_fill``: what the undo fills in is black (so ``blank`` can find it)."""

    found: str
    undo: Callable[[np.ndarray], np.ndarray]
    black_fill: bool = False


def _identity(images: np.ndarray) -> np.ndarray:
    return images


AS_RECEIVED = Candidate("none", _identity)
MIRRORED = Candidate("mirrored", edits.mirror)


def rotated(degrees: float) -> Candidate:
    return Candidate(f"rotated {degrees:+g} degrees", lambda images: edits.rotate(images, -degrees), black_fill=True)


def cropped(keep: float, centre: tuple[float, float] = (0.5, 0.5)) -> Candidate:
    """Undo a crop keeping ``keep`` of each side about ``centre``, resized back: shrink about the same
    point, the border filled with the image's mean colour (left unblanked: it inverts to a neutral
    border, and blanking it measured no better)."""
    where = "centred" if centre == (0.5, 0.5) else f"at ({centre[0]:g}, {centre[1]:g})"
    return Candidate(f"cropped to {keep:.0%} of the side {where}, resized back",
                     lambda images: edits.zoom(images, keep, centre, fill="mean"))


def zoomed_out(factor: float) -> Candidate:
    return Candidate(f"shrunk to {factor:.0%} with a border", lambda images: edits.zoom(images, 1 / factor),
                     black_fill=True)


def shifted(dx: float, dy: float) -> Candidate:
    return Candidate(f"shifted by ({dx:+.0%}, {dy:+.0%})", lambda images: edits.translate(images, -dx, -dy),
                     black_fill=True)


def stretched(factor: float) -> Candidate:
    return Candidate(f"width scaled by {factor:g}", lambda images: edits.stretch(images, 1 / factor), black_fill=True)


CORNERS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
MODES: dict[str, tuple[Candidate, ...]] = {
    "off": (AS_RECEIVED,),
    "fast": (AS_RECEIVED, MIRRORED, cropped(0.9), cropped(0.8)),
    "thorough": (
        AS_RECEIVED, MIRRORED,
        *(rotated(sign * d) for d in (2.5, 5, 7.5, 10, 15, 22.5, 30, 45) for sign in (1, -1)),
        *(cropped(keep, centre) for keep in (0.95, 0.9, 0.8, 0.7) for centre in ((0.5, 0.5), *CORNERS)),
        *(zoomed_out(f) for f in (0.9, 0.8)),
        *(shifted(dx, dy) for dx, dy in ((0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1))),
        *(stretched(f) for f in (0.9, 1.1)),
    ),
}
RESYNC_MODES = tuple(MODES)
DEFAULT_RESYNC = "fast"  # what detection commands use unless told otherwise (docs/robustness.md measures the modes)
REFINED = 4  # candidates per image inverted again at full steps after the coarse pass
COARSE_FRACTION = 5  # the coarse pass inverts with a fifth of the detection's sampler steps


def candidates(mode: str) -> tuple[Candidate, ...]:
    """The candidate inverse transforms of ``mode``; a ``ValueError`` naming the modes for anything else."""
    if mode not in MODES:
        raise ValueError(f"unknown resync mode {mode!r} (use {', '.join(MODES)})")
    return MODES[mode]


def coarse_steps(inversion_steps: int) -> int:
    """Sampler steps of the coarse pass for a detection that inverts with ``inversion_steps``."""
    return max(1, inversion_steps // COARSE_FRACTION)


def shortlist(coarse: Sequence[DetectionResult], m: int, keep: int = REFINED) -> list[list[int]]:
    """Per image, the indices of its ``keep`` candidates with the smallest coarse p-values (ties, as
    when a decoder's p-value saturates, go to the higher score); ``coarse`` holds ``m`` results an image."""
    ranked = []
    for start in range(0, len(coarse), m):
        group = coarse[start:start + m]
        ranked.append(sorted(range(m), key=lambda j: (group[j].p_value, -group[j].score))[:keep])
    return ranked


def expand(images: np.ndarray, tried: Sequence[Candidate], chosen: Sequence[Sequence[int]] | None = None
           ) -> np.ndarray:
    """Every candidate of image 0, then of image 1, ...: ``(N * m, H, W, 3)``; with ``chosen``, only
    image ``i``'s candidates ``chosen[i]``, in that order."""
    if chosen is None:
        undone = np.stack([candidate.undo(images) for candidate in tried], axis=1)  # (N, m, H, W, 3)
        return undone.reshape(-1, *images.shape[1:])
    return np.concatenate([tried[j].undo(image[None]) for image, picks in zip(images, chosen) for j in picks])


def undone_by(count: int, tried: Sequence[Candidate], chosen: Sequence[Sequence[int]] | None = None
              ) -> list[Candidate]:
    """The candidate behind each row of ``expand``'s output for ``count`` images."""
    if chosen is None:
        return list(tried) * count
    return [tried[j] for picks in chosen for j in picks]


@functools.lru_cache(maxsize=512)
def _invented(candidate: Candidate, height: int, width: int, latent_height: int, latent_width: int) -> torch.Tensor:
    """``(h, w)`` bool: latent positions whose pixel block is more than 1% filled in by ``candidate``'s undo
    (blocks on the edge of the filler still carry most of their evidence)."""
    if not candidate.black_fill:
        return torch.zeros(latent_height, latent_width, dtype=torch.bool)
    white = np.full((1, height, width, 3), 255, dtype=np.uint8)
    missing = 1.0 - torch.from_numpy(candidate.undo(white)[0, :, :, 0].astype(np.float32)) / 255.0
    return F.adaptive_avg_pool2d(missing[None, None], (latent_height, latent_width))[0, 0] > 0.01


def blank(latents: torch.Tensor, candidates: Sequence[Candidate], image_size: tuple[int, int]) -> torch.Tensor:
    """Inverted latents ``(N, C, h, w)`` of images undone by ``candidates`` (one each, at ``image_size``
    (H, W)), every position an undo had to invent set to zero: an erasure for an ``erasable`` scheme."""
    height, width = image_size
    lost = torch.stack([_invented(c, height, width, *latents.shape[-2:]) for c in candidates])
    return latents.masked_fill(lost[:, None].to(latents.device), 0.0)


def combine(results: Sequence[DetectionResult], tried: Sequence[Candidate], fpr: float, mode: str,
            chosen: Sequence[Sequence[int]] | None = None) -> list[DetectionResult]:
    """One result per image from its candidates' results (each tested at ``fpr / m`` for the ``m``
    candidates of ``tried``): the candidate with the smallest p-value, its p-value times ``m``
    (Bonferroni over all ``m``, however few were inverted at full steps), the transform it undid.
    ``results`` holds, per image, every candidate or only those ``chosen`` for it (see ``expand``)."""
    m = len(tried)
    if m == 1:
        return list(results)
    if chosen is None:
        chosen = [list(range(m))] * (len(results) // m)
    out = []
    start = 0
    for picks in chosen:
        group = results[start:start + len(picks)]
        start += len(picks)
        best = min(range(len(picks)), key=lambda j: group[j].p_value)
        winner = group[best]
        p_value = min(1.0, m * winner.p_value)
        out.append(DetectionResult(
            detected=winner.detected, p_value=p_value, score=winner.score,
            threshold=winner.threshold, fpr=fpr, scheme=winner.scheme, key_id=winner.key_id,
            payload=winner.decoded_payload, bit_accuracy=winner.bit_accuracy,
            details={**winner.details,
                     "resync": {"mode": mode, "candidates": m, "refined": len(picks), "found": tried[picks[best]].found,
                                "p_value_uncorrected": winner.p_value, "threshold_at": fpr / m}}))
    return out
