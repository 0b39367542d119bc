"""Reading and writing images for the detectors, with errors that name the problem.

Why strict: a latent watermark detector silently fed a grayscale, 16-bit or thumbnail image
returns a confident-looking "not detected". Those inputs are refused with a one-line reason
instead; only a fully opaque alpha channel is dropped, since it carries nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

MIN_SIDE = 16


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit RGB image as uint8 (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"{path}: not a readable image")
    if raw.dtype != np.uint8:
        raise ValueError(f"{path}: {raw.dtype} pixels; only 8-bit images are supported")
    if raw.ndim != 3 or raw.shape[2] not in (3, 4):
        raise ValueError(f"{path}: not an RGB image ({1 if raw.ndim == 2 else raw.shape[2]} channel(s))")
    if raw.shape[2] == 4:
        if (raw[..., 3] != 255).any():
            raise ValueError(f"{path}: has transparency; flatten it onto a background first")
        raw = raw[..., :3]
    if min(raw.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{path}: image is {raw.shape[1]}x{raw.shape[0]}, smaller than {MIN_SIDE}x{MIN_SIDE}")
    return np.ascontiguousarray(raw[..., ::-1])


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) RGB image; the format follows the suffix (PNG is lossless)."""
    path = Path(path)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"{path}: could not write image (unknown suffix or unwritable folder)")
    return path


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 batch (N, H, W, 3): area averaging to shrink (no aliasing), bicubic to enlarge."""
    if images.shape[1:3] == (height, width):
        return images
    shrink = images.shape[1] * images.shape[2] > height * width
    return np.stack([cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
                     for im in images])
