"""Post-hoc pixel watermarks to audit beside the latent schemes: the ``invisible-watermark``
package's DWT-DCT and DWT-DCT-SVD marks (the ones Stable Diffusion's scripts apply to outputs).

Why wrap them: the published attack findings (regeneration and visual paraphrase remove
pixel-level post-hoc marks, latent marks behave differently) need a real post-hoc target that
goes through the same attacks and the same statistics as our schemes.

Interface (``PostHocWatermark``): ``embed(images, key) -> images`` and
``detect(images, key, fpr) -> list[DetectionResult]``, images uint8 RGB ``(H, W, 3)`` or
``(N, H, W, 3)``.

How the package is used:
- ``imwatermark`` works on BGR uint8 and refuses images under 256*256 pixels (the reference
  world's images are 64x64). Smaller images are therefore upscaled bicubically by the smallest
  integer factor that reaches that area, before embedding and before detection; ``embed``
  returns the upscaled marked images (64x64 in, 256x256 out). An image already that large is
  used as is.
- The payload is ``bits`` (32 or 48) bits derived from the key (sub-key
  "invisible-watermark/payload"): a keyed random order of exactly ``bits / 2`` ones and
  ``bits / 2`` zeros. Both methods quantise one coefficient per 4x4 block of the Haar
  approximation of the U channel (step 36); block ``b`` in raster order carries bit ``b mod
  bits``, and a bit is read by majority over its blocks.
- Embedding calls the package. Decoding is a batched re-implementation of the package's decoder
  (the same YUV conversion, Haar transform, block scores and majority rule), because the package
  loops over blocks in Python (0.03 s to 0.1 s per image); the tests check it bit for bit against
  ``imwatermark.WatermarkDecoder``.

Detection statistic and null. H0: the image was not marked with this key. The key's payload is
then independent of the image, and a keyed random balanced string: given the decoded bits ``d``
(whatever their bias), the number of agreements is ``2X + bits/2 - w`` with ``w`` the number of
ones in ``d`` and ``X ~ Hypergeometric(bits, bits/2, w)``, exactly. The p-value is that tail.
Why balanced and not a binomial tail: the decoder is strongly biased on flat content (on
unmarked reference scenes it returns nearly all-0 or all-1 strings), so with i.i.d. key bits a
key with many zeros would flag every flat image; with a balanced key a constant string agrees in
exactly half the bits. (The binomial tail would also be anti-conservative for balanced keys,
by up to 9x.) The guarantee is over the key; the tests check the empirical FPR over unmarked
scenes for a fixed key.
"""

from __future__ import annotations

import math
from importlib.metadata import version
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import pywt
from imwatermark import WatermarkEncoder
from scipy import stats as sps

from image_wm.edits import check_images
from image_wm.schemes.base import DEFAULT_FPR, bits_to_hex
from provenance import stats
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

MIN_AREA = 256 * 256  # imwatermark raises on images with fewer pixels
STEP = 36  # imwatermark's quantisation step for the U channel (its default ``scales``)
BLOCK = 4  # imwatermark's block side in the Haar approximation band
PACKAGE_VERSION = version("invisible-watermark")

_METHODS = {"dwtdct": "dwtDct", "dwtdctsvd": "dwtDctSvd"}
BASELINE_NAMES = tuple(_METHODS)


@runtime_checkable
class PostHocWatermark(Protocol):
    """A watermark added to finished pixels, keyed by a ``WatermarkKey``."""

    name: str
    bits: int

    def embed(self, images: np.ndarray, key: WatermarkKey) -> np.ndarray: ...

    def detect(self, images: np.ndarray, key: WatermarkKey, fpr: float = DEFAULT_FPR) -> list[DetectionResult]: ...


def agreement_p_values(decoded: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agreements, p-values) of decoded bit rows ``(N, L)`` against a balanced ``payload`` (L/2 ones).

    H0: ``payload`` is a uniformly random balanced string independent of ``decoded``. Given a row
    with ``w`` ones, agreements = ``2X + L/2 - w`` with ``X ~ Hypergeometric(L, L/2, w)`` the
    payload's ones under the row's ones; the p-value is that exact upper tail.
    """
    decoded = np.atleast_2d(np.asarray(decoded, dtype=bool))
    payload = np.asarray(payload, dtype=bool)
    bits = payload.size
    if 2 * int(payload.sum()) != bits or decoded.shape[1] != bits:
        raise ValueError("agreement_p_values needs a balanced payload as long as each decoded row")
    agreements = (decoded == payload).sum(axis=1)
    ones = decoded.sum(axis=1)
    needed = (agreements - bits // 2 + ones + 1) // 2  # smallest X giving at least this many agreements
    return agreements, np.clip(sps.hypergeom.sf(needed - 1, bits, bits // 2, ones), 0.0, 1.0)


def working_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) the package sees: scaled up by the smallest integer factor reaching MIN_AREA."""
    factor = max(1, math.ceil(math.sqrt(MIN_AREA / (height * width))))
    return height * factor, width * factor


def to_working_bgr(images: np.ndarray) -> np.ndarray:
    """RGB batch -> BGR batch at ``working_size`` (bicubic upscaling when needed)."""
    batch = check_images(images)
    height, width = working_size(*batch.shape[1:3])
    if (height, width) != batch.shape[1:3]:
        batch = np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC) for image in batch])
    return np.ascontiguousarray(batch[..., ::-1])


class InvisibleWatermark:
    """``imwatermark``'s DWT-DCT (``dwtdct``) or DWT-DCT-SVD (``dwtdctsvd``) mark with a keyed payload."""

    def __init__(self, method: str = "dwtdctsvd", bits: int = 48) -> None:
        if method not in _METHODS:
            raise ValueError(f"unknown invisible-watermark method {method!r} (known: {', '.join(_METHODS)})")
        if bits not in (32, 48):
            raise ValueError(f"the invisible-watermark baselines carry 32 or 48 bits, got {bits}")
        self.name = method
        self.bits = bits

    def payload(self, key: WatermarkKey) -> np.ndarray:
        """The key's balanced payload: ``bits / 2`` ones in a keyed random order (uint8)."""
        rng = key.generator("invisible-watermark/payload", self.bits)[1]
        return rng.permutation(np.repeat(np.array([0, 1], dtype=np.uint8), self.bits // 2))

    def embed(self, images: np.ndarray, key: WatermarkKey) -> np.ndarray:
        """Marked RGB images, at ``working_size`` (64x64 inputs come back 256x256; compare quality
        against the upscaled cover, ``to_working_bgr(images)[..., ::-1]``)."""
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", self.payload(key).tolist())
        with np.errstate(invalid="ignore", over="ignore"):  # the package casts floats into uint8 itself
            marked = np.stack([encoder.encode(bgr, _METHODS[self.name]) for bgr in to_working_bgr(images)])
        marked = marked[..., ::-1]
        return np.ascontiguousarray(marked if np.ndim(images) == 4 else marked[0])

    def decode(self, images: np.ndarray) -> np.ndarray:
        """Decoded bits ``(N, bits)`` as bool, exactly as ``imwatermark.WatermarkDecoder`` reads them."""
        bgr = to_working_bgr(images)
        count, height, width = bgr.shape[:3]
        yuv = cv2.cvtColor(bgr.reshape(count * height, width, 3), cv2.COLOR_BGR2YUV).reshape(bgr.shape)
        u_channel = yuv[:, : height // 4 * 4, : width // 4 * 4, 1]
        approximation = pywt.dwt2(u_channel, "haar", axes=(-2, -1))[0]
        rows, cols = approximation.shape[1] // BLOCK, approximation.shape[2] // BLOCK
        blocks = (approximation[:, : rows * BLOCK, : cols * BLOCK]
                  .reshape(count, rows, BLOCK, cols, BLOCK).transpose(0, 1, 3, 2, 4)
                  .reshape(count, rows * cols, BLOCK, BLOCK))
        if self.name == "dwtdct":  # the largest-magnitude entry after the first (no DCT: the package skips it)
            flat = np.abs(blocks.reshape(count, rows * cols, BLOCK * BLOCK)[..., 1:])
            value = np.take_along_axis(flat, flat.argmax(axis=-1)[..., None], axis=-1)[..., 0]
        else:  # the top singular value of the block's DCT = that of the block (the DCT is orthogonal)
            value = np.linalg.svd(blocks, compute_uv=False)[..., 0]
        votes = (value % STEP) > 0.5 * STEP
        carrier = np.arange(rows * cols) % self.bits
        ones = np.stack([np.bincount(carrier, weights=v, minlength=self.bits) for v in votes])
        return ones / np.bincount(carrier, minlength=self.bits) * 255 > 127

    def detect(self, images: np.ndarray, key: WatermarkKey, fpr: float = DEFAULT_FPR) -> list[DetectionResult]:
        """One result per image; the p-value is the exact conditional tail in the module docstring."""
        fpr = stats.check_fpr(fpr)
        decoded = self.decode(images)
        matches, p_values = agreement_p_values(decoded, self.payload(key))
        size = check_images(images).shape[1:3]
        upscaled = working_size(*size) != size
        results = []
        for bits, agree, p in zip(decoded, matches, p_values.tolist()):
            results.append(DetectionResult(
                detected=bool(p <= fpr), p_value=p, score=-math.log10(max(p, 1e-300)), threshold=-math.log10(fpr),
                fpr=fpr, scheme=self.name, key_id=key.key_id, payload=bits_to_hex(bits),
                bit_accuracy=float(agree) / self.bits,
                details={"null": "decoded bits independent of the key's balanced payload (not marked with this key)",
                         "test": "agreements with the key payload, exact hypergeometric tail given the decoded bits",
                         "matches": int(agree), "bits": self.bits, "upscaled": bool(upscaled),
                         "decoder": f"batched re-implementation of imwatermark {PACKAGE_VERSION}"}))
        return results


def get_baseline(name: str, **overrides: int) -> InvisibleWatermark:
    """A post-hoc baseline by name (``dwtdct`` or ``dwtdctsvd``); ``overrides`` e.g. ``bits=32``."""
    if name not in _METHODS:
        raise LookupError(f"unknown baseline watermark {name!r} (known: {', '.join(BASELINE_NAMES)})")
    return InvisibleWatermark(name, **overrides)
