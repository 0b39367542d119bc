"""Fit the reference model's Tree-Ring nuisance directions into the package, dropping stale entries.

Run after retraining the reference weights (or changing the probe settings):
``.venv/bin/python scripts/ship_tree_ring_entry.py``. See ``image_wm.tree_ring_calibration``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from image_wm import tree_ring_calibration as calibration  # noqa: E402
from image_wm.loading import load_model  # noqa: E402
from image_wm.schemes.tree_ring import TreeRing  # noqa: E402
from provenance.keys import WatermarkKey  # noqa: E402


def ship_reference_entry() -> Path:
    pipeline = load_model(device="cpu").watermarked(TreeRing(), WatermarkKey.from_seed("unused"))
    scheme = pipeline.scheme
    name = f"{calibration.fingerprint(pipeline, scheme)}.json"
    for stale in calibration.SHIPPED.glob("*.json"):
        if stale.name != name:
            stale.unlink()
    directions = calibration.strongest_directions(calibration.probe_ring_statistics(pipeline, scheme))
    return calibration.save(directions, calibration.SHIPPED / name)


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(ship_reference_entry())
