"""A small CNN that scores how watermark-like an image looks, trained without any real watermark.

Why: WMForger (``docs/algorithms.md`` 10c) shows that a preference model trained only to rank
clean images against images carrying *procedural* watermark-like patterns transfers to real
watermarks: its gradient points along "watermark-ness", so descending it removes a mark
(``pm-removal``) and the difference it makes is a one-shot estimate of the mark that can be
transplanted onto another image (``pm-transplant``; both in ``attacks.forgery``).

Orientation: ``score(x)`` is high for watermark-like images (the issue's "ranks watermark-like
images above clean ones"); WMForger's "clean-ness" preference is its negative. Training is the
Bradley-Terry ranking loss on pairs that differ only by the pattern,
``softplus(score(clean) - score(patterned))``, i.e. ``-log P[patterned ranked above clean]``.

Data: seeded procedural scenes (``image_wm.scenes``) with, or without, one of four
pattern families at a low amplitude (RMS 1.5 to 5 grey levels, PSNR about 34 to 45 dB, then
8-bit rounding as a saved image has): random sinusoidal gratings, rings in the Fourier spectrum
(Tree-Ring-like), random-phase noise under a keyed spectral envelope (WMForger's
FFTWatermarkGaussian), and JPEG-like 8x8 block artefacts (random low-order DCT coefficients per
block). Half the patterns are grey (equal in every channel), half coloured; the sign is random.

The network is fully convolutional with global average pooling, so it scores images of any size
(it is trained at the scenes' 64x64). The shipped weights were made with::

    OMP_NUM_THREADS=1 python -m attacks.preference_model train --out attacks/weights --steps 400 --seed 0

(one thread of a 2-core AMD EPYC, on the world's textured scenes: 88 s; the other core ran a
benchmark); ``attacks/weights/preference_model.json`` records the
configuration, the run's arguments and the held-out pairwise accuracy (512 scenes of another seed,
each with and without a pattern drawn from another seed).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from image_wm.inversion import pixels_to_tensor
from image_wm import scenes

__all__ = ["PATTERN_KINDS", "HELD_OUT_SEED", "PreferenceModel", "watermark_like_patterns", "apply_patterns",
           "patterned_pairs", "pairwise_accuracy", "load_preference_model", "WEIGHTS", "main"]

WEIGHTS = Path(__file__).parent / "weights" / "preference_model.safetensors"
PATTERN_KINDS = ("grating", "fft-rings", "keyed-spectrum", "blocks")
RMS_RANGE = (1.5, 5.0)  # pattern RMS in grey levels (of 255)
HELD_OUT_SEED = 10_000  # scenes and patterns of the held-out evaluation; training seeds stay below it


class PreferenceModel(nn.Module):
    """Image float [B, 3, H, W] in [-1, 1] -> one watermark-likeness score per image.

    The first convolution keeps full resolution, since the patterns it must see are faint and
    high-frequency; three strided stages follow, then global average pooling and a linear score.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.config = {"width": width}
        w = width

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]

        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.SiLU(),
            *stage(w, w), *stage(w, 2 * w), *stage(2 * w, 2 * w),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(2 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(-1)

    def score(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scores of uint8 images [..., H, W, 3] (or float [B, 3, H, W] in [-1, 1]), no gradient, on CPU."""
        x = pixels_to_tensor(images)
        x = x.reshape(-1, *x.shape[-3:]).to(next(self.parameters()).device)
        with torch.no_grad():
            return self(x).cpu()


# --------------------------------------------------------------------------- patterns

def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred integer frequency coordinates of an ``side`` x ``side`` FFT (after fftshift)."""
    f = np.arange(side) - side // 2
    return np.meshgrid(f, f, indexing="ij")


def _grating(side: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) / side
    out = np.zeros((side, side))
    for _ in range(rng.integers(1, 4)):
        cycles, angle, phase = rng.uniform(3, side / 2.5), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        out += np.sin(2 * np.pi * cycles * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return out


def _from_spectrum(magnitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real image whose spectrum has this (centred) magnitude and random phases."""
    spectrum = magnitude * np.exp(2j * np.pi * rng.random(magnitude.shape))
    return np.fft.ifft2(np.fft.ifftshift(spectrum)).real


def _fft_rings(side: int, rng: np.random.Generator) -> np.ndarray:
    fy, fx = _grid(side)
    radius = np.hypot(fy, fx)
    magnitude = np.zeros((side, side))
    for _ in range(rng.integers(1, 4)):
        magnitude += np.abs(radius - rng.uniform(3, side / 2 - 2)) < 0.5
    return _from_spectrum(magnitude, rng)


def _keyed_spectrum(side: int, rng: np.random.Generator) -> np.ndarray:
    fy, fx = _grid(side)
    radius = np.hypot(fy, fx)
    envelope = np.exp(-(radius / rng.uniform(4, side / 2)) ** rng.uniform(1, 4))
    keep = rng.random((side, side)) < rng.uniform(0.05, 1.0)  # the "key": which frequencies carry energy
    return _from_spectrum(envelope * keep, rng)


def _dct_basis(n: int = 8) -> np.ndarray:
    k, i = np.mgrid[0:n, 0:n]
    basis = np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    basis[0] /= math.sqrt(2)
    return basis * math.sqrt(2 / n)


_DCT8 = _dct_basis()


def _blocks(side: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG-like artefacts: each 8x8 block gets random coefficients in its lowest DCT frequencies."""
    nb = -(-side // 8)
    order = rng.integers(2, 5)
    coeffs = np.zeros((nb, nb, 8, 8))
    coeffs[:, :, :order, :order] = rng.standard_normal((nb, nb, order, order))
    pixels = np.einsum("ku,abkl,lv->aubv", _DCT8, coeffs, _DCT8).reshape(nb * 8, nb * 8)
    return pixels[:side, :side]


_MAKERS = {"grating": _grating, "fft-rings": _fft_rings, "keyed-spectrum": _keyed_spectrum, "blocks": _blocks}


def watermark_like_patterns(n: int, side: int, rng: np.random.Generator, kinds: tuple[str, ...] = PATTERN_KINDS
                            ) -> tuple[np.ndarray, list[str]]:
    """``n`` random patterns float32 [n, side, side, 3] in grey levels (RMS in ``RMS_RANGE``), and their kinds."""
    unknown = set(kinds) - set(_MAKERS)
    if unknown:
        raise ValueError(f"unknown pattern kinds {sorted(unknown)} (known: {', '.join(PATTERN_KINDS)})")
    out = np.empty((n, side, side, 3), np.float32)
    chosen = [kinds[i] for i in rng.integers(0, len(kinds), n)]
    for i, kind in enumerate(chosen):
        grey = rng.random() < 0.5
        planes = [_MAKERS[kind](side, rng)] if grey else [_MAKERS[kind](side, rng) for _ in range(3)]
        p = np.stack(planes, axis=-1) * np.ones(3)
        p = p / max(float(np.sqrt(np.mean(p ** 2))), 1e-12)
        out[i] = p * rng.uniform(*RMS_RANGE) * (1 if rng.random() < 0.5 else -1)
    return out, chosen


def apply_patterns(images: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Add float patterns (grey levels) to uint8 images and round back to uint8, as saving does."""
    return np.clip(np.round(images.astype(np.float32) + patterns), 0, 255).astype(np.uint8)


def patterned_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` seeded scenes, clean and with a pattern each: (clean, patterned, kinds)."""
    clean = scenes.generate(n, seed)[0]
    patterns, kinds = watermark_like_patterns(n, scenes.RES, np.random.default_rng([seed, 1]))
    return clean, apply_patterns(clean, patterns), kinds


def pairwise_accuracy(model: PreferenceModel, clean: np.ndarray, patterned: np.ndarray) -> np.ndarray:
    """Per pair, whether the patterned image scores above its clean twin (bool [n])."""
    return (model.score(patterned) > model.score(clean)).numpy()


# --------------------------------------------------------------------------- weights

def save_model(model: PreferenceModel, weights: Path, record: dict) -> None:
    from safetensors.torch import save_file

    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, weights)
    weights.with_suffix(".json").write_text(json.dumps({"config": model.config, **record}, indent=2) + "\n")


@lru_cache(maxsize=4)
def load_preference_model(path: str | None = None, device: str | None = None) -> PreferenceModel:
    """The shipped preference model (or one saved by ``train`` at ``path``), frozen, in eval mode."""
    from safetensors.torch import load_file

    from provenance.device import resolve_device

    weights = Path(path) if path is not None else WEIGHTS
    if weights.is_dir():
        weights = weights / WEIGHTS.name
    if not weights.is_file():
        raise ValueError(f"no preference model at {weights}; train one with `python -m attacks.preference_model train`")
    config = json.loads(weights.with_suffix(".json").read_text())["config"]
    model = PreferenceModel(**config)
    model.load_state_dict(load_file(weights))
    return model.to(resolve_device(device)).eval().requires_grad_(False)


# --------------------------------------------------------------------------- training

def train(out: Path, steps: int, batch: int, pool: int, seed: int, lr: float, width: int) -> dict:
    """Train on ``pool`` seeded scenes (random flips), a fresh pattern per pair and step; evaluate; save."""
    from tqdm import tqdm

    if seed >= HELD_OUT_SEED:
        raise ValueError(f"training seeds must be below {HELD_OUT_SEED} (the held-out scenes' seed)")
    started = time.time()
    images = scenes.generate(pool, seed)[0]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = PreferenceModel(width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="preference model", mininterval=5)
    for step in bar:
        rng = np.random.default_rng([seed, step])
        clean = images[rng.integers(0, pool, batch)]
        flips = rng.random((2, batch)) < 0.5
        clean = np.where(flips[0, :, None, None, None], clean[:, :, ::-1], clean)
        clean = np.where(flips[1, :, None, None, None], clean[:, ::-1], clean)
        patterned = apply_patterns(clean, watermark_like_patterns(batch, scenes.RES, rng)[0])
        scores = model(pixels_to_tensor(np.concatenate([clean, patterned])))
        loss = nn.functional.softplus(scores[:batch] - scores[batch:]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval().requires_grad_(False)
    clean, patterned, kinds = patterned_pairs(512, HELD_OUT_SEED)
    correct = pairwise_accuracy(model, clean, patterned)
    per_kind = {k: float(np.mean([c for c, kk in zip(correct, kinds) if kk == k])) for k in PATTERN_KINDS}
    record = {"args": {"steps": steps, "batch": batch, "pool": pool, "seed": seed, "lr": lr, "width": width},
              "held_out": {"pairs": len(correct), "seed": HELD_OUT_SEED, "pairwise_accuracy": float(correct.mean()),
                           "per_kind": per_kind},
              "parameters": sum(p.numel() for p in model.parameters()),
              "train_seconds": round(time.time() - started, 1), "torch_threads": torch.get_num_threads()}
    save_model(model, out / WEIGHTS.name, record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m attacks.preference_model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and save the preference model, then report held-out accuracy")
    t.add_argument("--out", type=Path, required=True, help="folder for preference_model.safetensors and .json")
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch", type=int, default=32, help="pairs per step")
    t.add_argument("--pool", type=int, default=4096, help="procedural scenes to draw clean images from")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--width", type=int, default=32)
    t.add_argument("--threads", type=int, default=1, help="torch threads (part of the recipe: float sums differ)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = train(args.out, args.steps, args.batch, args.pool, args.seed, args.lr, args.width)
    print(json.dumps(record["held_out"], indent=2))


if __name__ == "__main__":
    main()
