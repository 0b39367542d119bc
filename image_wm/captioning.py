"""A local transformers image-to-text folder (BLIP, GIT, a vision encoder-decoder, ...) as SEAL's captioner.

Why: SEAL keys the noise on a caption of the image, so the captioner must describe what the model
draws; the reference world's scene captioner knows only procedural scenes. Any image-to-text
model saved with ``save_pretrained`` (its image processor and tokenizer beside it) works: beam
search gives each image's ``n`` best captions, the first the plain one, as
``image_wm.semantics.VariantCaptioner`` asks. Loaded from local files only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from provenance.models import ModelNotFoundError

__all__ = ["TransformersCaptioner"]

MAX_CAPTION_TOKENS = 30


class TransformersCaptioner:
    """``caption_variants(images, n)`` by beam search of a local image-to-text model."""

    def __init__(self, folder: str | os.PathLike, device: torch.device) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        folder = self.check_folder(folder)
        self.image_processor: Any = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model: Any = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).to(device).eval()

    @staticmethod
    def check_folder(folder: str | os.PathLike) -> Path:
        """``folder`` as a path, or one ``ModelNotFoundError`` line when it holds no transformers model."""
        path = Path(folder)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a local transformers image-to-text folder (no config.json)")
        return path

    @torch.no_grad()
    def caption_variants(self, images: np.ndarray, n: int) -> list[list[str]]:
        """Up to ``n`` distinct captions per uint8 ``(B, H, W, 3)`` image, best first."""
        pixels = self.image_processor(images=list(np.asarray(images)), return_tensors="pt").pixel_values
        out = self.model.generate(pixel_values=pixels.to(self.model.device, self.model.dtype), num_beams=max(2, n),
                                  num_return_sequences=n, max_new_tokens=MAX_CAPTION_TOKENS, do_sample=False)
        texts = [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        return [list(dict.fromkeys(texts[i * n:(i + 1) * n])) for i in range(len(images))]
