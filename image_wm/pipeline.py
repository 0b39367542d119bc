"""Make any diffusers text-to-image pipeline emit latent-watermarked images, and detect them.

Why a wrapper and not a pipeline subclass: every diffusers pipeline already accepts
``latents=`` (the initial noise), which is all a latent watermark needs. Wrapping keeps the
user's pipeline untouched (scheduler, guidance, LoRAs, offloading) and works for the
reference model, Stable Diffusion 1.x/2.x, SDXL and the flow-matching Stable Diffusion 3 and FLUX.1
alike (the families of ``image_wm.families``, whose adapter also packs FLUX's noise; any other
pipeline is refused when it is wrapped).

``WatermarkedPipeline(pipe, scheme, key)(prompts, payload=..., seed=...)`` returns uint8
images and one ``GenerationRecord`` per image (what a registry stores: scheme, key id,
payload, prompt, seed, settings; never the key). ``detect(images)`` resizes each image to the
model's native size, inverts it to the initial noise (``image_wm.inversion``) and runs the
scheme's test; a scheme that measures something on the pipeline first (Tree-Ring's nuisance
directions, ``image_wm.tree_ring_calibration``) does so once, before the first detection.
A scheme with its own generation loop (SEAL's provisional pass and re-keying,
``GeneratesItsOwnImages``) runs it through this wrapper's ``run_pipeline`` and
``watermarked_latents``; at detection a semantic scheme gets the inspected image's own caption
variants, embedded by ``semantics``.

Generation uses the pipeline family's documented guidance unless the caller (or the model
provider, ``image_wm.loading``) gives another.

Image ``i`` of a call uses ``torch.Generator().manual_seed(seed + i)`` for its per-image
randomness, so an image does not depend on the batch it was generated in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from image_wm.families import adapter_for
from image_wm.image_io import resize_images
from image_wm.inversion import invert_images
from image_wm.resync import REFINED, Candidate, blank, coarse_steps, combine, expand, shortlist, undone_by
from image_wm.resync import candidates as resync_candidates
from image_wm.schemes import DEFAULT_FPR, GeneratesItsOwnImages, LatentWatermark, PipelineCalibrated, get_scheme
from image_wm.schemes.seal import CAPTION_VARIANTS
from image_wm.semantics import CaptionEmbedder
from image_wm.tree_ring_calibration import ProbeImages
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

DEFAULT_STEPS = 25
DETECT_CHUNK = 32  # images (candidates included) inverted per batch: bounds GPU memory on large models


@dataclass
class GenerationRecord:
    """What was embedded in one image: enough to audit it, nothing secret."""

    scheme: str
    key_id: str
    payload: str | None
    prompt: str
    seed: int
    steps: int
    guidance_scale: float | None  # None: the pipeline takes no guidance (FLUX.1 schnell)
    model: str
    latent_shape: list[int]
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatermarkedImages:
    images: np.ndarray  # uint8 (B, H, W, 3)
    records: list[GenerationRecord]


def check_captioner(scheme: LatentWatermark, model_name: str, has_captioner: bool) -> None:
    """Refuse, in one line, a semantic scheme (SEAL) on a model with no captioner that fits it."""
    if scheme.semantic and not has_captioner:
        raise ValueError(f"{scheme.name} keys the noise on a caption of the image, and no captioner that fits "
                         f"{model_name} was given: give --captioner DIR (a local transformers image-to-text folder)")


def initial_noise(shape: tuple[int, ...], seeds: list[int]) -> torch.Tensor:
    """Plain N(0, I) initial latents, image ``i`` from ``seeds[i]`` (the unwatermarked twin of a call)."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds])


def to_uint8(images: np.ndarray) -> np.ndarray:
    """diffusers' float [0, 1] numpy output -> uint8, as saving a PNG does."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


class WatermarkedPipeline:
    """A diffusers text-to-image pipeline plus a latent scheme and a key."""

    def __init__(self, pipe: Any, scheme: LatentWatermark | str, key: WatermarkKey,
                 semantics: CaptionEmbedder | None = None, model_name: str = "local", caption_rounds: int = 3,
                 calibrate: bool = True, guidance: float | None = None, probes: ProbeImages | None = None) -> None:
        """``guidance``: the generation default (None: the family's documented one); ``semantics``:
        how a semantic scheme (SEAL) captions and embeds images, required for one; ``probes``: the
        images Tree-Ring calibration edits and inverts (None: this pipeline's own generations)."""
        self.adapter = adapter_for(pipe)  # refuse an unsupported pipeline now, not deep inside a generation
        if self.adapter.video:
            raise ValueError(f"{type(pipe).__name__} makes clips: image watermarks need a text-to-image pipeline "
                             "(VideoMark is the video scheme)")
        self.pipe = pipe
        self.caption_rounds = caption_rounds
        self.scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
        self.key = key
        self.model_name = model_name
        check_captioner(self.scheme, model_name, semantics is not None)
        self.semantics = semantics
        self.guidance = self.adapter.default_guidance if guidance is None else guidance
        self.probes = probes
        # calibrate=False: the scheme's test without pipeline measurements (no one-off fit either)
        self.calibrate = calibrate
        self._detector: LatentWatermark | None = None

    @property
    def detector(self) -> LatentWatermark:
        """The scheme as ``detect`` runs it: calibrated to this pipeline once, where the scheme needs it."""
        if self._detector is None:
            needs = self.calibrate and isinstance(self.scheme, PipelineCalibrated)
            self._detector = self.scheme.calibrated_for(self) if needs else self.scheme
        return self._detector

    @property
    def image_size(self) -> int:
        return self.adapter.image_side

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        return self.adapter.latent_shape(batch)

    def plain_latents(self, seeds: list[int]) -> torch.Tensor:
        """Unwatermarked initial noise, image ``i`` from ``seeds[i]``."""
        return initial_noise(self.latent_shape(len(seeds)), seeds)

    def run_pipeline(self, prompts: list[str], latents: torch.Tensor, steps: int, guidance: float | None,
                     **kwargs: Any) -> np.ndarray:
        """uint8 images of the pipeline from initial noise ``latents`` (guidance None: not passed)."""
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        out = self.pipe(prompts, latents=self.adapter.pipeline_latents(latents), num_inference_steps=steps,
                        output_type="np", **kwargs)
        return to_uint8(out.images)

    def watermarked_latents(self, seeds: list[int], payload: bytes | None,
                            embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """The scheme's initial latents, image ``i`` from ``seeds[i]`` (and ``embeddings[i]`` for SEAL)."""
        shape = self.latent_shape(1)
        return torch.cat([
            self.scheme.initial_latents(shape, self.key, torch.Generator().manual_seed(seed), payload=payload,
                                        embeddings=None if embeddings is None else embeddings[i:i + 1])
            for i, seed in enumerate(seeds)
        ])

    def __call__(self, prompt: str | list[str], *, payload: bytes | None = None, seed: int = 0,
                 num_inference_steps: int = DEFAULT_STEPS, guidance_scale: float | None = None,
                 **kwargs: Any) -> WatermarkedImages:
        """Watermarked images of ``prompt`` (guidance_scale None: this pipeline's ``guidance``)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed + i for i in range(len(prompts))]
        guidance_scale = self.guidance if guidance_scale is None else guidance_scale
        if isinstance(self.scheme, GeneratesItsOwnImages):
            latents, images = self.scheme.generate(self, prompts, seeds, num_inference_steps, guidance_scale, **kwargs)
        else:
            latents = self.watermarked_latents(seeds, payload)
            images = self.run_pipeline(prompts, latents, num_inference_steps, guidance_scale, **kwargs)
        records = [
            GenerationRecord(scheme=self.scheme.name, key_id=self.key.key_id,
                             payload=None if payload is None else payload.hex(), prompt=p, seed=s,
                             steps=num_inference_steps, guidance_scale=guidance_scale, model=self.model_name,
                             latent_shape=list(latents.shape[1:]))
            for p, s in zip(prompts, seeds)
        ]
        return WatermarkedImages(images=images, records=records)

    def native_size(self, images: np.ndarray) -> np.ndarray:
        """Resize uint8 images (B, H, W, 3) to the model's size, as a detector must after a resize attack."""
        return resize_images(images, self.image_size, self.image_size)

    def invert(self, images: np.ndarray, inversion_steps: int = DEFAULT_STEPS, decoder_steps: int = 0) -> torch.Tensor:
        """uint8 images (B, H, W, 3) -> estimated initial latents."""
        return invert_images(self.pipe, self.native_size(images), num_steps=inversion_steps,
                             decoder_steps=decoder_steps)

    def detect(self, images: np.ndarray, *, fpr: float = DEFAULT_FPR, inversion_steps: int = DEFAULT_STEPS,
               decoder_steps: int = 0, caption_variants: int = CAPTION_VARIANTS,
               resync: str = "off") -> list[DetectionResult]:
        """One result per image: undo the candidate geometric edits of ``resync`` (``image_wm.resync``),
        invert every candidate, run the scheme's calibrated test on each, Bonferroni over them. A mode
        with more than ``resync.REFINED`` candidates searches coarse to fine (``resync.shortlist``)."""
        tried = resync_candidates(resync)
        level = fpr / len(tried)
        native = self.native_size(images)
        chosen = None
        if len(tried) > REFINED:
            coarse = self._test(expand(native, tried), undone_by(len(native), tried), level,
                                coarse_steps(inversion_steps), 0, caption_variants)
            chosen = shortlist(coarse, len(tried))
        tested = self._test(expand(native, tried, chosen), undone_by(len(native), tried, chosen), level,
                            inversion_steps, decoder_steps, caption_variants)
        results = combine(tested, tried, fpr, resync, chosen)
        for result in results:
            result.details.update(inversion_steps=inversion_steps, decoder_steps=decoder_steps)
        return results

    def detect_images(self, images: Sequence[np.ndarray], **options: Any) -> list[DetectionResult]:
        """``detect`` for images of any sizes as read from files (each uint8 ``(H, W, 3)``), each first
        resized to the model's size; the batch is the list given, in its order."""
        return self.detect(np.stack([self.native_size(image[None])[0] for image in images]), **options)

    def _test(self, candidates: np.ndarray, undone: Sequence[Candidate], level: float, inversion_steps: int,
              decoder_steps: int, caption_variants: int) -> list[DetectionResult]:
        """Invert native-size candidate images in chunks and run the scheme's test at ``level`` on each
        (an ``erasable`` scheme with the positions each ``undone`` candidate filled in blanked)."""
        latents = torch.cat([self.invert(candidates[i:i + DETECT_CHUNK], inversion_steps, decoder_steps)
                             for i in range(0, len(candidates), DETECT_CHUNK)])
        if self.detector.erasable:
            latents = blank(latents, undone, candidates.shape[1:3])
        embeddings = self.semantics.embed(candidates, variants=caption_variants) \
            if self.scheme.semantic and self.semantics is not None else None
        return self.detector.detect(latents, self.key, fpr=level, embeddings=embeddings)
