"""Tree-Ring's false-positive rate for one fixed key, over many keys, on edited unwatermarked images.

Why: Tree-Ring's p-value is exact averaged over keys (``image_wm/schemes/tree_ring.py``), but a
deployed key is fixed, and edits that paint large black regions (rotation's corners, an erased
square) move every image's ring statistic ``w`` far along the same few directions. A key that
happens to align with them flags most such images, watermarked or not; the distortion audit's
single key cannot tell that apart from robustness. This script measures it directly: for ``--keys``
seeded keys, the fraction of ``--n`` unwatermarked images (clean, rotated, erased) each key flags
at ``--fpr``, and the rate at which the marking key flags its watermarked images.

It also reports the same figures after projecting ``w`` and every key onto the complement of the
``--nuisance`` strongest directions of ``w`` on the edited unwatermarked images of the first half
(the figures come from the second half). The projected test stays exact under both of Tree-Ring's
nulls (a uniform key direction stays uniform in the subspace; white noise stays isotropic), with
K - d ring values. It is a measurement, not the shipped detector: the directions depend on the
pipeline's VAE and are fitted here on the same kind of edit they are tested on.

Run (25 minutes at 1 thread beside another job; most of it 1,800 DDIM inversions)::

    .venv/bin/python scripts/tree_ring_key_alignment.py --n 200 --keys 500 --seed 500
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance import stats  # noqa: E402

# (name, attack, strength): the edits; "none" is the clean image
EDITS = [("clean", None, 0.0), ("rotation 10", "rotation", 10.0), ("rotation 22.5", "rotation", 22.5),
         ("rotation 45", "rotation", 45.0), ("erase 0.25", "erase", 0.25)]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def kept_basis(calibration: np.ndarray, removed: int) -> np.ndarray:
    """(K, K - removed) orthonormal basis of the complement of the ``removed`` strongest directions."""
    dim = calibration.shape[1]
    if removed == 0:
        return np.eye(dim)
    _, _, directions = np.linalg.svd(calibration, full_matrices=False)
    return np.linalg.svd(np.eye(dim) - directions[:removed].T @ directions[:removed])[0][:, :dim - removed]


def flag_rates(w: np.ndarray, keys: np.ndarray, basis: np.ndarray, fpr: float) -> np.ndarray:
    """Per key, the fraction of the rows of ``w`` the (projected) cosine test flags at ``fpr``."""
    cosine = unit(keys @ basis) @ unit(w @ basis).T
    return np.mean(stats.cosine_tail(cosine, basis.shape[1]) <= fpr, axis=1)


@click.command()
@click.option("--n", default=200, show_default=True, help="Prompts (each gives a watermarked image and its twin).")
@click.option("--keys", "n_keys", default=500, show_default=True, help="Fixed keys to score the twins with.")
@click.option("--seed", default=500, show_default=True)
@click.option("--fpr", default=0.01, show_default=True)
@click.option("--nuisance", default=4, show_default=True, help="Directions projected out in the second table.")
@click.option("--threads", default=2, show_default=True)
def main(n: int, n_keys: int, seed: int, fpr: float, nuisance: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from attacks.audit_targets import LatentImageTarget
    from attacks.registry import get
    from provenance.keys import WatermarkKey

    marking_key = WatermarkKey.from_seed(f"tree-ring-alignment-{seed}")
    target = LatentImageTarget("tree-ring", marking_key)
    scheme = target.watermark
    items = target.make(n, seed)
    stats_of: dict[tuple[str, str], np.ndarray] = {}
    for name, attack, strength in EDITS:
        for kind, images in (("marked", items.marked), ("twins", items.twins)):
            edited = images if attack is None else np.asarray(get(attack)(images, strength, seed))
            stats_of[kind, name] = scheme.ring_statistics(target.wrapped.invert(edited, inversion_steps=target.steps))
    _, channels, height, width = target.wrapped.latent_shape(1)
    shape = len(scheme.channels_for(channels)), scheme.radius_for(height, width)
    keys = np.stack([scheme.ring_values(WatermarkKey.from_seed(f"alignment-key-{i}"), *shape).ravel()
                     for i in range(n_keys)])
    marking = scheme.ring_values(marking_key, *shape).ravel()
    dim = marking.size
    half = n // 2
    calibration = np.concatenate([stats_of["twins", name][:half] for name, attack, _ in EDITS if attack])
    for removed in (0, nuisance):
        basis = kept_basis(calibration, removed)
        print(f"\nTree-Ring, {n - half} images per row, {n_keys} keys, p <= {fpr}; "
              f"{removed} nuisance directions removed (K = {basis.shape[1]})")
        print("| edit | marking key: TPR | its FPR | FPR over keys: mean | 95th pct | max | median norm^2/K (twins) |")
        print("|---|---|---|---|---|---|---|")
        for name, _, _ in EDITS:
            marked, twins = stats_of["marked", name][half:], stats_of["twins", name][half:]
            per_key = flag_rates(twins, keys, basis, fpr)
            print(f"| {name} | {flag_rates(marked, marking[None], basis, fpr)[0]:.2f} "
                  f"| {flag_rates(twins, marking[None], basis, fpr)[0]:.2f} | {per_key.mean():.3f} "
                  f"| {np.quantile(per_key, 0.95):.2f} | {per_key.max():.2f} "
                  f"| {np.median((twins ** 2).sum(1) / dim):.1f} |")


if __name__ == "__main__":
    main()
