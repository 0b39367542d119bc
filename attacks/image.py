"""Pixel distortions of images, the WAVES "Dist-*" and "Com-*" attacks (An et al., ICML 2024).

Why these: they are what an image meets on its way through the web (re-encoding, resizing,
cropping, colour edits) and the standard yardstick every watermark paper reports against. The
strength ranges follow WAVES (``distortions/distortions.py``); where WAVES measures in units of a
512-pixel image the unit here is stated per attack, since the reference world's images are 64x64.

Each attack is a small pure function of one uint8 RGB image and a ``numpy`` generator;
``image_wm.edits.per_image`` applies it over a batch ``(N, H, W, 3)`` or a single image ``(H, W, 3)``. Image
``i`` of a batch draws from ``SeedSequence([seed, i])``, so its result does not depend on the
rest of the batch, and every attack is deterministic under its seed. Every attack keeps the
shape and dtype of its input (crops and resizes are scaled back to the original size).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from attacks.registry import register
from image_wm import edits
from image_wm.edits import per_image
from image_wm.image_io import resize_images

DISTORTIONS: dict[str, dict[str, Any]] = {}
"""Every attack of this module -> its registration (range, default, direction, unit). Combinations
read the ranges here, and ``attacks.video`` registers ``frame-<name>`` from it, so neither has to
load the whole registry while modules are still being imported."""


def _distortion(name: str, low: float, high: float, default: float, *, stronger: str = "up",
                unit: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``attacks.registry.register`` for an image attack, remembering its range in DISTORTIONS."""
    DISTORTIONS[name] = {"low": low, "high": high, "default": default, "stronger": stronger, "unit": unit}
    return register(name, "image", **DISTORTIONS[name])


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return resize_images(image[None], height, width)[0]


# -- lossy coding and sampling ---------------------------------------------------------------------

@_distortion("jpeg", 10, 90, 50, stronger="down", unit="JPEG quality")
def jpeg(images: np.ndarray, quality: float, seed: int = 0) -> np.ndarray:
    """JPEG re-encoding at a quality factor (WAVES Dist-JPEG: 90 -> 10)."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ok, buffer = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1]

    return per_image(images, seed, edit)


@_distortion("resize", 0.25, 1.0, 0.5, stronger="down", unit="scale factor")
def resize(images: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Downscale by a factor, then back up to the original size (loses detail above the new Nyquist)."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        small = _resize(image, max(1, round(width * scale)), max(1, round(height * scale)))
        return _resize(small, width, height)

    return per_image(images, seed, edit)


@_distortion("quantize", 1, 8, 4, stronger="down", unit="bits per channel")
def quantize(images: np.ndarray, bits: float, seed: int = 0) -> np.ndarray:
    """Colour quantisation to round(2**bits) evenly spaced levels per channel (8 bits: unchanged)."""
    levels = round(2.0 ** bits)
    step = 255.0 / (levels - 1)
    return per_image(images, seed, lambda image, rng: _to_uint8(np.rint(image / step) * step))


# -- geometry --------------------------------------------------------------------------------------

@_distortion("crop", 0.0, 0.5, 0.25, unit="fraction of the area removed")
def crop(images: np.ndarray, removed: float, seed: int = 0) -> np.ndarray:
    """Crop a square-ratio window at a seeded position, resized back (WAVES Dist-RCrop: scale 1 -> 0.5)."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        side = math.sqrt(1.0 - removed)
        h, w = max(1, round(height * side)), max(1, round(width * side))
        top, left = (int(rng.uniform() * (height - h + 1)), int(rng.uniform() * (width - w + 1)))
        return _resize(image[top:top + h, left:left + w], width, height)

    return per_image(images, seed, edit)


@_distortion("rotation", 0, 45, 15, unit="degrees")
def rotation(images: np.ndarray, degrees: float, seed: int = 0) -> np.ndarray:
    """Rotate counter-clockwise about the centre, same canvas, black corners (WAVES Dist-Rotation: 0-45)."""
    return edits.rotate(images, degrees, seed)


@_distortion("mirror", 0.0, 1.0, 1.0, unit="flipped left to right at strength >= 0.5")
def mirror(images: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
    """Flip left to right (a selfie camera, a re-posted meme); strength below 0.5 leaves the image as is."""
    return edits.mirror(images, seed) if strength >= 0.5 else np.array(images, copy=True)


@_distortion("crop-fit", 0.0, 0.4, 0.1, unit="fraction of each side cut, centred")
def crop_fit(images: np.ndarray, cut: float, seed: int = 0) -> np.ndarray:
    """Crop to fit: cut ``cut`` of each side's length (half from either border), resize back to size."""
    return edits.zoom(images, 1.0 / (1.0 - cut), seed=seed)


@_distortion("zoom-out", 0.5, 1.0, 0.8, stronger="down", unit="scale factor, black border")
def zoom_out(images: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Shrink the picture about the centre on the same canvas, with a black border (a letterboxed repost)."""
    return edits.zoom(images, factor, seed=seed)


@_distortion("translation", 0.0, 0.25, 0.1, unit="fraction of the side, seeded direction")
def translation(images: np.ndarray, shift: float, seed: int = 0) -> np.ndarray:
    """Shift by ``shift`` of the side in a seeded direction, black border."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0, 2 * math.pi)
        return edits.translate(image, shift * math.cos(angle), shift * math.sin(angle))

    return per_image(images, seed, edit)


@_distortion("aspect", 1.0, 1.5, 1.2, unit="width scale factor, sides cut")
def aspect(images: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Stretch the width by ``factor`` about the centre, height kept, the sides cut to the canvas."""
    return edits.stretch(images, factor, seed)


@_distortion("erase", 0.0, 0.25, 0.1, unit="fraction of the area erased")
def erase(images: np.ndarray, area: float, seed: int = 0) -> np.ndarray:
    """Black out a square of the given area at a seeded position (WAVES Dist-Erase: 0-0.25)."""
    return edits.erase(images, area, seed)


# -- photometric -----------------------------------------------------------------------------------

@_distortion("blur", 0.0, 4.0, 1.0, unit="Gaussian sigma, pixels")
def blur(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Gaussian blur, kernel 2*ceil(3 sigma) + 1 (WAVES sweeps kernels 0-20 px on 512-px images)."""
    if sigma == 0:
        return per_image(images, seed, lambda image, rng: image)
    size = 2 * math.ceil(3.0 * sigma) + 1
    return per_image(images, seed, lambda image, rng: cv2.GaussianBlur(
        image, (size, size), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT101))


@_distortion("noise", 0.0, 25.5, 10.0, unit="std, 0-255 units")
def noise(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise (WAVES Dist-Noise: std 0-0.1 of the range, i.e. 0-25.5)."""
    return per_image(images, seed, lambda image, rng: _to_uint8(image + rng.normal(0.0, std, image.shape)))


@_distortion("brightness", 1.0, 2.0, 1.5, unit="factor")
def brightness(images: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Multiply every pixel by a factor, clipped (WAVES Dist-Bright: 1-2, torchvision's rule)."""
    return per_image(images, seed, lambda image, rng: _to_uint8(image * float(factor)))


@_distortion("contrast", 1.0, 2.0, 1.5, unit="factor")
def contrast(images: np.ndarray, factor: float, seed: int = 0) -> np.ndarray:
    """Stretch pixels away from the mean grey level by a factor (WAVES Dist-Contrast: 1-2, torchvision's rule)."""

    def edit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean_grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()
        return _to_uint8(mean_grey + (image - mean_grey) * float(factor))

    return per_image(images, seed, edit)


# -- WAVES combinations ----------------------------------------------------------------------------

COMBINATIONS: dict[str, tuple[Callable[..., np.ndarray], ...]] = {
    "combo-geo": (rotation, crop, erase),
    "combo-photo": (brightness, contrast),
    "combo-deg": (blur, noise, jpeg),
    "combo": (rotation, crop, erase, brightness, contrast, blur, noise, jpeg),
}
"""WAVES Com-Geo, Com-Photo, Com-Deg and Com-All: the components (each registered under its
function name), applied in this order."""


def at_fraction(name: str, fraction: float) -> float:
    """The strength of attack ``name`` a ``fraction`` of the way from its mildest to its strongest end."""
    spec = DISTORTIONS[name]
    mild, strong = (spec["low"], spec["high"]) if spec["stronger"] == "up" else (spec["high"], spec["low"])
    return mild + (strong - mild) * fraction


def _register_combination(name: str, components: tuple[Callable[..., np.ndarray], ...]) -> None:
    def combination(images: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
        for index, component in enumerate(components):
            images = component(images, at_fraction(component.__name__, fraction), seed * len(components) + index)
        return images

    combination.__doc__ = (f"WAVES combination: {', '.join(c.__name__ for c in components)}, "
                           "each at the same fraction of its range.")
    _distortion(name, 0.0, 1.0, 0.5, unit="fraction of each component's range")(combination)


for _name, _components in COMBINATIONS.items():
    _register_combination(_name, _components)
