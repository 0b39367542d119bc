"""Make any diffusers text-to-image pipeline emit latent-watermarked images, and detect them.

Why a wrapper and not a pipeline subclass: every diffusers pipeline already accepts
``latents=`` (the initial noise), which is all a latent watermark needs. Wrapping keeps the
user's pipeline untouched (scheduler, guidance, LoRAs, offloading) and works for the
reference model, Stable Diffusion 1.x/2.x, SDXL and the flow-matching Stable Diffusion 3 and FLUX.1
alike (the families ``image_wm.denoiser`` supports, which also packs FLUX's noise; any other
pipeline is refused when it is wrapped).

``WatermarkedPipeline(pipe, scheme, key)(prompts, payload=..., seed=...)`` returns uint8
images and one ``GenerationRecord`` per image (what a registry stores: scheme, key id,
payload, prompt, seed, settings; never the key). ``detect(images)`` resizes each image to the
model's native size, inverts it to the initial noise (``image_wm.inversion``) and runs the
scheme's test; a scheme that measures something on the pipeline first (Tree-Ring's nuisance
directions, ``image_wm.tree_ring_calibration``) does so once, before the first detection.
Semantic schemes (SEAL) first make a provisional image from plain noise, caption and embed it,
and derive the watermark noise from that embedding (re-keyed on the final image's own caption
when it differs, see ``_semantic_generation``); at detection the inspected image's own caption
variants are embedded.

Image ``i`` of a call uses ``torch.Generator().manual_seed(seed + i)`` for its per-image
randomness, so an image does not depend on the batch it was generated in.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from image_wm.denoiser import family, image_side, latent_shape, pipeline_latents
from image_wm.image_io import resize_images
from image_wm.inversion import invert_images
from image_wm.reference.pipelines import REFERENCE_GUIDANCE
from image_wm.schemes import DEFAULT_FPR, LatentWatermark, PipelineCalibrated, get_scheme
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

DEFAULT_STEPS = 25
CAPTION_VARIANTS = 3  # captions of an inspected image that semantic detection tries
DEFAULT_GUIDANCE = REFERENCE_GUIDANCE  # low guidance keeps samples invertible (docs/reference_models.md)


@dataclass
class GenerationRecord:
    """What was embedded in one image: enough to audit it, nothing secret."""

    scheme: str
    key_id: str
    payload: str | None
    prompt: str
    seed: int
    steps: int
    guidance_scale: float
    model: str
    latent_shape: list[int]
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatermarkedImages:
    images: np.ndarray  # uint8 (B, H, W, 3)
    records: list[GenerationRecord]


def initial_noise(shape: tuple[int, ...], seeds: list[int]) -> torch.Tensor:
    """Plain N(0, I) initial latents, image ``i`` from ``seeds[i]`` (the unwatermarked twin of a call)."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds])


def to_uint8(images: np.ndarray) -> np.ndarray:
    """diffusers' float [0, 1] numpy output -> uint8, as saving a PNG does."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


class WatermarkedPipeline:
    """A diffusers text-to-image pipeline plus a latent scheme and a key."""

    def __init__(self, pipe: Any, scheme: LatentWatermark | str, key: WatermarkKey, semantics: Any = None,
                 model_name: str = "reference", caption_rounds: int = 3, calibrate: bool = True) -> None:
        family(pipe)  # refuse an unsupported pipeline now, not deep inside the first generation
        self.pipe = pipe
        self.caption_rounds = caption_rounds
        self.scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
        self.key = key
        self.model_name = model_name
        if self.scheme.semantic and semantics is None:
            from image_wm.semantics import CaptionEmbedder

            semantics = CaptionEmbedder(device=pipe.device)
        self.semantics = semantics
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
        return image_side(self.pipe)

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        return latent_shape(self.pipe, batch)

    def run_pipeline(self, prompts: list[str], latents: torch.Tensor, steps: int, guidance: float, **kwargs: Any) -> np.ndarray:
        out = self.pipe(prompts, latents=pipeline_latents(self.pipe, latents), num_inference_steps=steps,
                        guidance_scale=guidance, output_type="np", **kwargs)
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

    def _semantic_generation(self, prompts: list[str], seeds: list[int], steps: int, guidance: float,
                             **kwargs: Any) -> tuple[torch.Tensor, np.ndarray]:
        """SEAL's two passes, then up to ``caption_rounds`` keyings per image; keep the best one.

        SEAL keys the noise on the caption of a provisional image; detection captions the final
        image. That only works if the final image means what its noise was keyed on, and on the
        reference model it does not: content is set mostly by the noise, so new noise gives a new
        scene (measured on 12 prompts x 6 re-keyings: the final image's caption equalled its keyed
        caption 0 times in 72; re-keying on the new caption is a chaotic map, not a contraction).
        So each round keys the still-unmatched images on their latest image's caption and scores
        every candidate as the detector will see it: the cosine between the keyed latent and the
        latent expected for each of the final image's ``caption_variants`` (``CAPTION_VARIANTS``, ``detect``'s
        default) caption variants, i.e. the matched filter on a perfect inversion. Each image keeps
        its best-scoring round (not its last), and stops once it scores ``good_match``. Cost: one
        provisional and up to ``caption_rounds`` watermarked generations, as before, plus captions.
        """
        shape = self.latent_shape(1)
        variants, good_match = CAPTION_VARIANTS, 0.5
        provisional = self.run_pipeline(prompts, initial_noise(self.latent_shape(len(prompts)), seeds), steps,
                                        guidance, **kwargs)
        keyed = self.semantics.embed(provisional, variants=1)[:, 0]
        latents = torch.empty((len(prompts), *shape[1:]))
        images = np.empty_like(provisional)
        score = np.full(len(prompts), -np.inf)
        todo = np.arange(len(prompts))
        for _ in range(max(1, self.caption_rounds)):
            cand = self.watermarked_latents([seeds[i] for i in todo], None, keyed[todo])
            made = self.run_pipeline([prompts[i] for i in todo], cand, steps, guidance, **kwargs)
            seen = self.semantics.embed(made, variants=variants)  # (b, V, d), first: the plain caption
            expected = torch.stack([self.watermarked_latents([seeds[i]] * variants, None, seen[j])
                                    for j, i in enumerate(todo)])  # (b, V, C, h, w)
            cos = torch.nn.functional.cosine_similarity(expected.flatten(2), cand[:, None].flatten(2), dim=-1)
            got = cos.amax(dim=1).double().numpy()
            better = got > score[todo]
            latents[todo[better]], images[todo[better]] = cand[torch.from_numpy(better)], made[better]
            score[todo[better]] = got[better]
            keyed[todo] = seen[:, 0]  # the next round keys on what this round's image shows
            todo = todo[score[todo] < good_match]
            if len(todo) == 0:
                break
        return latents, images

    def __call__(self, prompt: str | list[str], *, payload: bytes | None = None, seed: int = 0,
                 num_inference_steps: int = DEFAULT_STEPS, guidance_scale: float = DEFAULT_GUIDANCE,
                 **kwargs: Any) -> WatermarkedImages:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed + i for i in range(len(prompts))]
        if self.scheme.semantic:
            latents, images = self._semantic_generation(prompts, seeds, num_inference_steps, guidance_scale, **kwargs)
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
               decoder_steps: int = 0, caption_variants: int = CAPTION_VARIANTS) -> list[DetectionResult]:
        """One result per image: invert, then the scheme's calibrated test."""
        images = self.native_size(images)
        latents = self.invert(images, inversion_steps, decoder_steps)
        embeddings = self.semantics.embed(images, variants=caption_variants) if self.scheme.semantic else None
        results = self.detector.detect(latents, self.key, fpr=fpr, embeddings=embeddings)
        for result in results:
            result.details.update(inversion_steps=inversion_steps, decoder_steps=decoder_steps)
        return results
