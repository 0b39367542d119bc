"""Videos in a dataset scan (``provenance scan``): which files are videos, and the Ray actor that
reads each clip strictly (``video_io.read_video``, the reader of ``video detect``), hashes the
file and runs VideoMark on it.

Clips are detected one at a time, as ``video detect`` does; a clip that cannot be read becomes
an error row and never a verdict.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from image_wm.loading import DiffusionModel, load_model
from image_wm.video.pipeline import WatermarkedVideoPipeline
from image_wm.video.video_io import MAX_VIDEO_FRAMES, VIDEO_SUFFIXES, read_video
from image_wm.video.videomark import VideoMark
from provenance.cli_support import attempt
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult
from provenance.scan.engine import Unit, UnitScorer
from provenance.scan.rows import ScanSpec, spec_rows

MODALITY = "video"
SCHEME = VideoMark.name
HASH_CHUNK = 1 << 20


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def file_hash(path: str) -> str:
    """SHA-256 of a file, read in chunks (a clip may be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(functools.partial(handle.read, HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class VideoScorer(UnitScorer):
    """Detects VideoMark for every spec in each unit of video paths (``model``: the loading options
    of a text-to-video folder, None for the reference model)."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], model: Mapping[str, Any], max_pixels: int,
                 done: Mapping[str, Sequence[str]], max_frames: int = MAX_VIDEO_FRAMES, threads: int = 1) -> None:
        super().__init__(threads)
        self.specs = [ScanSpec.from_dict(spec) for spec in specs]
        self.model_options = dict(model)
        self.max_pixels, self.max_frames = max_pixels, max_frames
        self.done = {settings: set(hashes) for settings, hashes in done.items()}
        self._model: DiffusionModel | None = None
        self._pipelines: dict[str, WatermarkedVideoPipeline] = {}

    def pipeline(self, spec: ScanSpec) -> WatermarkedVideoPipeline:
        """``spec``'s detector, the model loaded on first use and shared by every spec."""
        if spec.settings_id not in self._pipelines:
            if self._model is None:
                self._model = load_model(**self.model_options, task="text-to-video")
            self._pipelines[spec.settings_id] = WatermarkedVideoPipeline(
                self._model.pipe, WatermarkKey.load(spec.key_file), model_name=self._model.name,
                guidance=self._model.guidance)
        return self._pipelines[spec.settings_id]

    def read(self, path: str) -> tuple[str | None, np.ndarray | ValueError | OSError]:
        """(content hash, frames) of one clip, or what kept it from being read; a clip every spec has
        already scored is hashed but not decoded."""
        digest = attempt(path, lambda: file_hash(path))
        if isinstance(digest, BaseException):
            return None, digest
        if all(digest in self.done.get(spec.settings_id, ()) for spec in self.specs):
            return digest, np.zeros((0, 0, 0, 3), np.uint8)  # never detected: every spec skips it
        clip = attempt(path, lambda: read_video(path, max_frames=self.max_frames, max_pixels=self.max_pixels).frames)
        return (None, clip) if isinstance(clip, BaseException) else (digest, clip)

    def detect(self, spec: ScanSpec, clips: list[np.ndarray]) -> list[DetectionResult]:
        return [self.pipeline(spec).detect(clip, fpr=spec.settings["fpr"], inversion_steps=spec.settings["steps"],
                                           resync=spec.settings["resync"]) for clip in clips]

    def score(self, items: Unit) -> list[dict[str, Any]]:
        read = [(item["item"], *self.read(item["item"])) for item in items]
        return [row for spec in self.specs for row in spec_rows(spec, read, self.done,
                                                                functools.partial(self.detect, spec))]
