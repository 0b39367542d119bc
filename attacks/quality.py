"""How far attacked content is from its original: PSNR and SSIM for images, embedding similarity for text.

Why a module of its own: audits report these beside every detection rate, and tests and
benchmarks check attack strength against them; one definition keeps the figures comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from provenance.embeddings import sentence_embeddings

MAX_PSNR = 100.0  # dB given to identical images, so means stay finite


def _same_size(original: np.ndarray, attacked: np.ndarray) -> np.ndarray:
    if attacked.shape[:2] == original.shape[:2]:
        return attacked
    return cv2.resize(attacked, (original.shape[1], original.shape[0]), interpolation=cv2.INTER_AREA)


def psnr(original: np.ndarray, attacked: np.ndarray) -> float:
    """PSNR in dB of a uint8 image pair (resized to the original) or of two same-shape batches, capped at ``MAX_PSNR``."""
    a = original.astype(np.float64)
    b = _same_size(original, attacked).astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return MAX_PSNR if mse == 0.0 else min(MAX_PSNR, 10.0 * math.log10(255.0**2 / mse))


def ssim(original: np.ndarray, attacked: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) averaged over channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = original.astype(np.float64)
    y = _same_size(original, attacked).astype(np.float64)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def image_quality(original: np.ndarray, attacked: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over a batch of uint8 images."""
    pairs = list(zip(original, attacked))
    return {"psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
            "ssim": float(np.mean([ssim(a, b) for a, b in pairs]))}


def text_similarity(original: Sequence[str], attacked: Sequence[str]) -> np.ndarray:
    """Cosine similarity of MiniLM sentence embeddings, one value per pair (1 = same meaning)."""
    a, b = sentence_embeddings(list(original)), sentence_embeddings(list(attacked))
    return (a * b).sum(dim=-1).numpy()
