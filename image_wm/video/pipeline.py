"""Make any diffusers text-to-video pipeline emit VideoMark-watermarked clips, and detect them.

Why the same wrapper shape as images (``image_wm.pipeline``): diffusers' video pipelines
(``TextToVideoSDPipeline`` and its kin) accept ``latents=`` shaped ``(B, C, F, h, w)``, which
is all VideoMark needs; the user's pipeline stays untouched.

Detection inverts the received clip as one video (all frames in one batch through the 3D
UNet, in the order received). Measured on the reference model: inverting the clip jointly
decodes more frames than inverting each frame as a one-frame clip (6 vs 4 of 8 on the same
video), and a reversed clip decodes as well as the original, so temporal edits need no special
handling before the Temporal Matching Module.
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
from image_wm.pipeline import DEFAULT_STEPS, to_uint8
from image_wm.resync import REFINED, Candidate, blank, coarse_steps, combine, shortlist
from image_wm.resync import candidates as resync_candidates
from image_wm.schemes.base import DEFAULT_FPR
from image_wm.video.videomark import VideoMark
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

DEFAULT_FRAMES = 16


@dataclass
class VideoRecord:
    """What was embedded in one clip: enough to audit it (start offset included), nothing secret."""

    scheme: str
    key_id: str
    prompt: str
    seed: int
    start_offset: int
    frames: int
    steps: int
    guidance_scale: float | None
    model: str
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatermarkedVideos:
    videos: np.ndarray  # uint8 (B, F, H, W, 3)
    records: list[VideoRecord]


class WatermarkedVideoPipeline:
    """A diffusers text-to-video pipeline plus VideoMark and a key."""

    def __init__(self, pipe: Any, key: WatermarkKey, scheme: VideoMark | None = None, model_name: str = "local",
                 guidance: float | None = None) -> None:
        """``guidance``: the generation default (None: the pipeline's documented one)."""
        self.adapter = adapter_for(pipe)
        if not self.adapter.video:
            raise ValueError(f"{type(pipe).__name__} makes images: VideoMark needs a text-to-video pipeline")
        self.pipe = pipe
        self.key = key
        self.scheme = scheme or VideoMark()
        self.model_name = model_name
        self.guidance = self.adapter.default_guidance if guidance is None else guidance

    @property
    def frame_size(self) -> int:
        return self.adapter.image_side

    def latent_shape(self, frames: int) -> tuple[int, ...]:
        return self.adapter.latent_shape(1, frames)

    def run_pipeline(self, prompts: list[str], latents: torch.Tensor, steps: int, guidance: float | None,
                     **kwargs: Any) -> np.ndarray:
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        out = self.pipe(prompts, latents=self.adapter.pipeline_latents(latents), num_frames=latents.shape[2],
                        num_inference_steps=steps, output_type="np", **kwargs)
        return to_uint8(np.asarray(out.frames))

    def __call__(self, prompt: str | list[str], *, num_frames: int = DEFAULT_FRAMES, seed: int = 0,
                 num_inference_steps: int = DEFAULT_STEPS, guidance_scale: float | None = None,
                 **kwargs: Any) -> WatermarkedVideos:
        """Clip ``i`` uses ``torch.Generator().manual_seed(seed + i)`` for its start offset and codewords
        (guidance_scale None: this pipeline's ``guidance``)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        guidance_scale = self.guidance if guidance_scale is None else guidance_scale
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        latents, starts = [], []
        for i in range(len(prompts)):
            z, (start,) = self.scheme.initial_latents(self.latent_shape(num_frames), self.key,
                                                      torch.Generator().manual_seed(seed + i))
            latents.append(z)
            starts.append(start)
        videos = self.run_pipeline(prompts, torch.cat(latents), num_inference_steps, guidance_scale, **kwargs)
        records = [VideoRecord(self.scheme.name, self.key.key_id, p, seed + i, starts[i], num_frames,
                               num_inference_steps, guidance_scale, self.model_name) for i, p in enumerate(prompts)]
        return WatermarkedVideos(videos, records)

    def invert(self, frames: np.ndarray, inversion_steps: int = DEFAULT_STEPS) -> torch.Tensor:
        """uint8 frames (F, H, W, 3) of one clip -> per-frame initial latents (F, C, h, w)."""
        latents = invert_images(self.pipe, resize_images(frames, self.frame_size, self.frame_size)[None], num_steps=inversion_steps)
        return latents[0].transpose(0, 1)

    def undone_latents(self, frames: np.ndarray, candidate: Candidate, inversion_steps: int) -> torch.Tensor:
        """Per-frame latents of the clip with ``candidate``'s edit undone, what the undo filled in blanked
        (erasures of VideoMark's PRC soft signs, ``resync.blank``)."""
        undone = candidate.undo(resize_images(frames, self.frame_size, self.frame_size))
        latents = self.invert(undone, inversion_steps)
        return blank(latents, [candidate] * len(frames), undone.shape[1:3]) if self.scheme.erasable else latents

    def detect(self, frames: np.ndarray, *, fpr: float = DEFAULT_FPR, inversion_steps: int = DEFAULT_STEPS,
               start: int | None = None, expected_frames: list[int] | None = None,
               resync: str = "off") -> DetectionResult:
        """Test one clip ``(F, H, W, 3)``; see ``VideoMark.detect`` for ``start`` and ``expected_frames``.
        ``resync`` undoes a geometric edit of every frame (``image_wm.resync``): each candidate clip is
        inverted and tested at ``fpr / m``, Bonferroni over the ``m`` candidates, coarse to fine as
        ``WatermarkedPipeline.detect`` when the mode has more than ``resync.REFINED``."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"a clip must be uint8 (frames, H, W, 3) with at least one frame, got {frames.dtype} {frames.shape}")
        tried = resync_candidates(resync)

        def test(picks: Sequence[int], steps: int) -> list[DetectionResult]:
            return [self.scheme.detect(self.undone_latents(frames, tried[j], steps), self.key, fpr=fpr / len(tried),
                                       start=start, expected_frames=expected_frames) for j in picks]

        everything = range(len(tried))
        chosen = shortlist(test(everything, coarse_steps(inversion_steps)), len(tried)) \
            if len(tried) > REFINED else [list(everything)]
        (result,) = combine(test(chosen[0], inversion_steps), tried, fpr, resync, chosen)
        result.details["inversion_steps"] = inversion_steps
        return result
