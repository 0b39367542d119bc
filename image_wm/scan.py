"""Images in a dataset scan (``provenance scan``): which files are images, and the Ray actor that
reads them, hashes them and runs the latent-watermark detectors on them.

Every file is read strictly (``image_io.decode_image``, the reader of ``image detect``) inside the
worker; a file that cannot be read becomes an error row for every watermark scanned, never a
verdict, and never stops the scan. Each unit's readable images are detected as one batch, as
``image detect`` would detect those files.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from image_wm.image_io import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, decode_image
from image_wm.loading import DiffusionModel, load_model
from image_wm.pipeline import WatermarkedPipeline
from provenance.cli_support import attempt
from provenance.keys import WatermarkKey
from provenance.readers import read_limited_bytes
from provenance.result import DetectionResult
from provenance.scan.engine import Unit, UnitScorer
from provenance.scan.rows import ScanSpec, content_hash, spec_rows

MODALITY = "image"


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class ImageScorer(UnitScorer):
    """Detects every image watermark of ``specs`` in each unit of image paths; ``model`` holds the
    loading options (``model``, ``dtype``, ``device``, ``captioner``) shared by the specs; ``done``
    maps a settings id to the content hashes already scored under it (skipped)."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], model: Mapping[str, Any], max_pixels: int,
                 done: Mapping[str, Sequence[str]], threads: int = 1) -> None:
        super().__init__(threads)
        self.specs = [ScanSpec.from_dict(spec) for spec in specs]
        self.model_options = dict(model)
        self.max_pixels = max_pixels
        self.done = {settings: set(hashes) for settings, hashes in done.items()}
        self._model: DiffusionModel | None = None
        self._pipelines: dict[str, WatermarkedPipeline] = {}

    def pipeline(self, spec: ScanSpec) -> WatermarkedPipeline:
        """``spec``'s detector, the model loaded on first use and shared by every spec."""
        if spec.settings_id not in self._pipelines:
            if self._model is None:
                self._model = load_model(**self.model_options)
            self._pipelines[spec.settings_id] = self._model.watermarked(spec.scheme, WatermarkKey.load(spec.key_file))
        return self._pipelines[spec.settings_id]

    def read(self, path: str) -> tuple[str | None, np.ndarray | ValueError | OSError]:
        """(content hash, image) of one file, or what kept it from being read."""
        try:
            data = read_limited_bytes(path, MAX_IMAGE_BYTES, "image")
        except (ValueError, OSError) as exc:
            return None, exc
        return content_hash(data), attempt(path, lambda: decode_image(data, path, self.max_pixels))

    def score(self, items: Unit) -> list[dict[str, Any]]:
        read = [(item["item"], *self.read(item["item"])) for item in items]
        return [row for spec in self.specs for row in spec_rows(spec, read, self.done,
                                                                functools.partial(self.detect, spec))]

    def detect(self, spec: ScanSpec, images: list[np.ndarray]) -> list[DetectionResult]:
        """``spec``'s verdicts on one batch of images (the model loads here, on first need)."""
        return self.pipeline(spec).detect_images(images, fpr=spec.settings["fpr"],
                                                 inversion_steps=spec.settings["steps"], resync=spec.settings["resync"])
