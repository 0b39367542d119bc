"""A small CNN captioner for the reference world: image -> scene attributes -> template caption.

Semantic watermarks (SEAL) and visual-paraphrase attacks need "what is in this image" as
text. In the procedural world the caption is a deterministic function of the scene's labels
(``scenes.caption_from_labels``), so the captioner is a classifier with one head per label
(``scenes.LABEL_CLASSES``), trained on ``scenes.canonical_labels`` (two shapes are named
with the first above or left of the second, the one order an image determines). The trunk
keeps a 4x4 spatial map before the heads so relations stay visible to them.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from image_wm import scenes

__all__ = ["SceneCaptioner"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
    )


class SceneCaptioner(nn.Module):
    """Predicts every label head of ``scenes.LABEL_CLASSES`` from a 64x64 RGB image in [-1, 1]."""

    def __init__(self, width: int = 32, hidden: int = 256):
        super().__init__()
        self.config = {"width": width, "hidden": hidden}
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1), nn.SiLU(),  # 64 -> 32
            _block(width, 2 * width), _block(2 * width, 4 * width), _block(4 * width, 4 * width),  # -> 4
        )
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, hidden), nn.SiLU(), nn.Dropout(0.1))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in scenes.LABEL_CLASSES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.mlp(self.trunk(x))
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict_labels(self, images: torch.Tensor | np.ndarray) -> list[dict[str, int]]:
        """Class ids per head for a batch: float [B, 3, 64, 64] in [-1, 1] or uint8 [B, 64, 64, 3]."""
        x = _as_input(images, next(self.parameters()).device)
        logits = self(x)
        ids = {name: v.argmax(dim=-1).tolist() for name, v in logits.items()}
        return [{name: ids[name][i] for name in ids} for i in range(len(x))]

    def caption(self, images: torch.Tensor | np.ndarray) -> list[str]:
        """Template captions ("a small red star above ...") for a batch of images."""
        return [scenes.caption_from_labels(labels) for labels in self.predict_labels(images)]

    @torch.no_grad()
    def caption_variants(self, images: torch.Tensor | np.ndarray, n: int) -> list[list[str]]:
        """The ``n`` most probable distinct captions per image, the first equal to ``caption()``.

        Heads are treated as independent, so a label combination's log-probability is the sum
        of its heads' log-softmax; combinations are enumerated best first (a heap over the
        per-head ranks: each popped combination pushes its successors that demote one head by
        one rank, so every combination is reached exactly once, in order of probability) and
        mapped to captions until ``n`` distinct ones appear. In practice this swaps in the
        runner-up labels of the least confident heads. Deterministic; fewer than ``n`` come
        back only if the template has no more captions.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        logits = self(_as_input(images, next(self.parameters()).device))
        names = list(logits)
        logp = [torch.log_softmax(logits[name].cpu().double(), dim=-1) for name in names]
        return [_top_captions(names, [lp[i] for lp in logp], n) for i in range(len(logp[0]))]

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / "model.safetensors")

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "SceneCaptioner":
        from safetensors.torch import load_file

        directory = Path(directory)
        model = cls(**json.loads((directory / "config.json").read_text()))
        state = {k: v.float() for k, v in load_file(directory / "model.safetensors").items()}
        model.load_state_dict(state)
        return model.to(device).eval().requires_grad_(False)


def _top_captions(names: list[str], logp: list[torch.Tensor], n: int, max_pops: int = 100_000) -> list[str]:
    """Best-first enumeration of label combinations (ranks per head) -> ``n`` distinct captions."""
    order = [torch.sort(lp, descending=True, stable=True) for lp in logp]  # ties: lowest id, as argmax
    values = [v.tolist() for v, _ in order]
    ids = [i.tolist() for _, i in order]
    start = (0,) * len(names)
    heap, seen, captions = [(-sum(v[0] for v in values), start)], {start}, []
    while heap and len(captions) < n and len(seen) <= max_pops:
        neg, ranks = heapq.heappop(heap)
        text = scenes.caption_from_labels({name: ids[h][r] for h, (name, r) in enumerate(zip(names, ranks))})
        if text not in captions:
            captions.append(text)
        for h, r in enumerate(ranks):
            if r + 1 < len(ids[h]):
                nxt = ranks[:h] + (r + 1,) + ranks[h + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (neg + values[h][r] - values[h][r + 1], nxt))
    return captions


def _as_input(images: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.shape[-1] != 3:
            raise ValueError("numpy images must be uint8 [B, H, W, 3]")
        images = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1).movedim(-1, -3)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    if images.shape[-2:] != (scenes.RES, scenes.RES):
        images = torch.nn.functional.interpolate(images.float(), size=(scenes.RES, scenes.RES),
                                                 mode="bilinear", antialias=True, align_corners=False)
    return images.to(device, torch.float32)
