"""What a latent-noise watermark is: a keyed way to draw the initial noise, and a test on
the noise recovered from an image.

Why this split: everything in between (the diffusion pipeline, the VAE, DDIM inversion) is
the same for every scheme and lives in ``image_wm.pipeline`` and ``image_wm.inversion``. A
scheme therefore only sees latents shaped ``(B, C, h, w)``: it never loads a model, so it can
be tested on synthetic latents in milliseconds and runs unchanged on any device.

Conventions every scheme follows:
- Keyed randomness (patterns, codes, streams) comes from named sub-keys of the
  ``WatermarkKey``; per-image randomness (magnitudes, code noise) from the caller's
  ``generator``. Both are drawn on the CPU, so a key gives the same latents on every device.
- ``initial_latents`` returns float32 CPU latents; the pipeline moves and casts them.
- ``detect`` takes latents on any device and returns one ``DetectionResult`` per image with a
  p-value under the stated null (the image was not made with this key), the decision at
  ``fpr``, and for multi-bit schemes the decoded payload (hex) with per-bit confidences.
- Semantic schemes (``semantic = True``, SEAL) also take sentence embeddings of the image's
  caption: ``(B, d)`` at generation, ``(B, V, d)`` (V caption variants) at detection.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

DEFAULT_FPR = 1e-6


@runtime_checkable
class LatentWatermark(Protocol):
    """A generation-time watermark that lives in the initial diffusion latent."""

    name: str
    payload_bytes: int  # 0 for zero-bit schemes
    semantic: bool
    erasable: bool  # an exactly-zero latent entry carries no evidence under the null (resync may blank filler)
    default_fpr: float  # the detection level commands use unless told otherwise: one this scheme's own images reach

    def initial_latents(self, shape: tuple[int, ...], key: WatermarkKey, generator: torch.Generator,
                        payload: bytes | None = None, embeddings: torch.Tensor | None = None) -> torch.Tensor: ...

    def detect(self, latents: torch.Tensor, key: WatermarkKey, fpr: float = DEFAULT_FPR,
               embeddings: torch.Tensor | None = None) -> list[DetectionResult]: ...


@runtime_checkable
class PipelineCalibrated(Protocol):
    """A scheme whose test uses something measured on the pipeline it runs behind (Tree-Ring's
    nuisance directions). ``WatermarkedPipeline`` asks once, before its first detection; what is
    measured may depend on the pipeline only, never on a key or the images tested."""

    def calibrated_for(self, pipeline: Any) -> LatentWatermark: ...


class GenerationHost(Protocol):
    """What a scheme with its own generation loop may call on the pipeline wrapper it runs in
    (``image_wm.pipeline.WatermarkedPipeline``): the scheme still never loads or calls a model itself."""

    semantics: Any  # images -> caption-variant embeddings (B, V, d): ``image_wm.semantics.CaptionEmbedder``
    caption_rounds: int

    def plain_latents(self, seeds: list[int]) -> torch.Tensor: ...

    def watermarked_latents(self, seeds: list[int], payload: bytes | None,
                            embeddings: torch.Tensor | None = None) -> torch.Tensor: ...

    def run_pipeline(self, prompts: list[str], latents: torch.Tensor, steps: int, guidance: float | None,
                     **kwargs: Any) -> np.ndarray: ...


@runtime_checkable
class GeneratesItsOwnImages(Protocol):
    """A scheme whose watermark depends on the image it produces (SEAL keys the noise on a caption of
    a provisional image), so generation is more than one pipeline call on keyed noise."""

    def generate(self, host: GenerationHost, prompts: list[str], seeds: list[int], steps: int,
                 guidance: float | None, **kwargs: Any) -> tuple[torch.Tensor, np.ndarray]:
        """``(initial latents (B, C, h, w), uint8 images (B, H, W, 3))`` of the watermarked images."""
        ...


def check_latent_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Image latents are (B, C, h, w); anything else is a caller error worth naming."""
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"image latents must be shaped (batch, channels, height, width), got {tuple(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def payload_to_bits(payload: bytes | None, payload_bytes: int, scheme: str) -> np.ndarray | None:
    """Payload bytes -> uint8 bits (MSB first), checking the length the scheme was built for."""
    if payload is None:
        return None
    if payload_bytes == 0:
        raise ValueError(f"{scheme} is a zero-bit scheme and carries no payload")
    if len(payload) != payload_bytes:
        raise ValueError(f"{scheme} carries exactly {payload_bytes} payload bytes, got {len(payload)}")
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8))


def bits_to_hex(bits: np.ndarray) -> str:
    """uint8/bool bits (MSB first, a multiple of 8) -> hex string, the result's payload format."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()
