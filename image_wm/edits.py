"""Seeded pixel edits of uint8 RGB image batches, shared by the image layer and the attack suite.

Why here: Tree-Ring's calibration (``image_wm.tree_ring_calibration``) probes a pipeline with
rotated and partly erased images, and the audit's ``rotation`` and ``erase`` attacks
(``attacks.image``) are the same edits. They live in the image layer, which the attacks build on,
so one implementation serves both and the image layer never imports the attacks.

Each edit is a small pure function of one image and a ``numpy`` generator; ``per_image`` applies
it over a batch ``(N, H, W, 3)`` or a single image ``(H, W, 3)``. Image ``i`` of a batch draws
from ``default_rng([seed, i])``, so its result does not depend on the rest of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

Edit = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def check_images(images: np.ndarray) -> np.ndarray:
    """``images`` as a uint8 batch ``(N, H, W, 3)``; a single ``(H, W, 3)`` image becomes N = 1."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB, got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != 3 or min(images.shape[:-1]) < 1:
        raise ValueError(f"images must be shaped (H, W, 3) or (N, H, W, 3), got {images.shape}")
    return images if images.ndim == 4 else images[None]


def per_image(images: np.ndarray, seed: int, edit: Edit) -> np.ndarray:
    """Apply ``edit`` to every image with its own generator; same layout out as in."""
    batch = check_images(images)
    out = np.stack([edit(np.ascontiguousarray(image), np.random.default_rng([seed, i]))
                    for i, image in enumerate(batch)])
    return out if np.ndim(images) == 4 else out[0]


def rotate(images: np.ndarray, degrees: float, seed: int = 0) -> np.ndarray:
    """Rotate counter-clockwise about the centre, same canvas, black corners."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))

    return per_image(images, seed, edit)


def erase(images: np.ndarray, area: float, seed: int = 0) -> np.ndarray:
    """Black out a square covering ``area`` of the image at a seeded position."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        side = math.sqrt(area)
        h, w = min(height, round(height * side)), min(width, round(width * side))
        top, left = (int(rng.uniform() * (height - h + 1)), int(rng.uniform() * (width - w + 1)))
        out = image.copy()
        out[top:top + h, left:left + w] = 0
        return out

    return per_image(images, seed, edit)


def mirror(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flip left to right (``seed`` unused)."""
    return per_image(images, seed, lambda image, rng: np.ascontiguousarray(image[:, ::-1]))


def _affine(image: np.ndarray, matrix: np.ndarray, fill: tuple[float, float, float]) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill)


def zoom(images: np.ndarray, factor: float, centre: tuple[float, float] = (0.5, 0.5), seed: int = 0,
         fill: str = "black") -> np.ndarray:
    """Scale the content by ``factor`` about the point at fractions ``centre`` (x, y) of the image, same
    canvas: above 1 a crop of side ``1 / factor`` there, resized back to size (crop to fit); below 1
    the image shrunk, the border filled with black or (``fill="mean"``) the image's mean colour."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        cx, cy = centre[0] * (width - 1), centre[1] * (height - 1)
        matrix = np.array([[factor, 0.0, cx * (1 - factor)], [0.0, factor, cy * (1 - factor)]])
        colour = (0.0, 0.0, 0.0) if fill == "black" else tuple(float(c) for c in image.reshape(-1, 3).mean(0))
        return _affine(image, matrix, colour)

    return per_image(images, seed, edit)


def translate(images: np.ndarray, dx: float, dy: float, seed: int = 0) -> np.ndarray:
    """Shift by fractions ``(dx, dy)`` of the width and height (right and down), black border."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        return _affine(image, np.array([[1.0, 0.0, dx * width], [0.0, 1.0, dy * height]]), (0.0, 0.0, 0.0))

    return per_image(images, seed, edit)


def stretch(images: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Change the aspect: scale the width by ``factor`` about the centre, height kept, same canvas
    (above 1 the sides are cut off, below 1 black bars appear)."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        width = image.shape[1]
        cx = (width - 1) / 2.0
        return _affine(image, np.array([[factor, 0.0, cx * (1 - factor)], [0.0, 1.0, 0.0]]), (0.0, 0.0, 0.0))

    return per_image(images, seed, edit)
