"""Tree-Ring's per-pipeline nuisance directions on the reference model: shipped, fitted, cached, and
capturing what an edit the probe set never saw does to real inverted images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attacks.registry import get
from image_wm import tree_ring_calibration as calibration
from image_wm.pipeline import DEFAULT_STEPS, WatermarkedPipeline, initial_noise
from provenance.keys import WatermarkKey

KEY = WatermarkKey.from_seed("tree-ring-calibration")
PROMPTS = ["a large yellow circle on a plain black background", "a small red star on a striped green background",
           "a medium white cross on a gradient purple background", "a large blue ring on a plain white background"]


@pytest.fixture(scope="module")
def model():
    """The reference model with its own guidance (2.0) and calibration probes (procedural scenes)."""
    from image_wm.loading import load_model

    return load_model(device="cpu")


def counting_inversions(wrapped: WatermarkedPipeline) -> list[int]:
    """Replace ``wrapped.invert`` by a wrapper that records how many images each call inverts."""
    calls: list[int] = []
    invert = wrapped.invert

    def counted(images, *args, **kwargs):
        calls.append(len(images))
        return invert(images, *args, **kwargs)

    wrapped.invert = counted
    return calls


def test_the_reference_model_ships_its_directions(model, monkeypatch, tmp_path):
    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path))
    wrapped = model.watermarked("tree-ring", KEY)
    calls = counting_inversions(wrapped)
    nuisance = wrapped.detector.nuisance
    assert calls == [] and list(tmp_path.iterdir()) == []  # read from the package: nothing fitted, nothing written
    assert nuisance.shape == (calibration.NUISANCE_DIRECTIONS, 20)
    assert np.allclose(nuisance @ nuisance.T, np.eye(len(nuisance)), atol=1e-9)
    assert wrapped.detector is wrapped.detector  # calibrated once per wrapper


def test_another_pipeline_is_fitted_once_then_read_from_the_cache(model, monkeypatch, tmp_path):
    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "PROBE_SCENES", 2)  # another probe set, so another fingerprint; 14 inversions
    first = model.watermarked("tree-ring", KEY)
    calls = counting_inversions(first)
    fitted = first.detector.nuisance
    assert sum(calls) == 2 * len(calibration.PROBE_EDITS)
    entries = list((tmp_path / "tree-ring").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".json" and KEY.secret.hex() not in entries[0].read_text()
    second = model.watermarked("tree-ring", WatermarkKey.from_seed("another key, same pipeline"))
    again = counting_inversions(second)
    assert np.array_equal(second.detector.nuisance, fitted) and again == []
    entries[0].write_text(json.dumps({"format": calibration.FORMAT, "directions": [[1.0, 2.0]]}))
    repaired = model.watermarked("tree-ring", KEY)
    refits = counting_inversions(repaired)
    assert np.allclose(repaired.detector.nuisance, fitted) and sum(refits) == sum(calls)  # a bad entry is refitted
    assert calibration.read_entry(entries[0], fitted.shape) is not None


def test_shipped_directions_carry_what_an_unseen_rotation_adds(model):
    """Rotation by 22.5 degrees (the probe set has 2.5-45 but not 22.5) on generated images: most of the
    ring statistic's energy lies in the six shipped directions, against about 6/20 on clean images."""
    wrapped = model.watermarked("tree-ring", KEY)
    noise = initial_noise(wrapped.latent_shape(len(PROMPTS)), list(range(40, 40 + len(PROMPTS))))
    clean = wrapped.run_pipeline(PROMPTS, noise, DEFAULT_STEPS, wrapped.guidance)
    nuisance = wrapped.detector.nuisance

    def share_in_nuisance(images: np.ndarray) -> float:
        w = wrapped.scheme.ring_statistics(wrapped.invert(images, inversion_steps=DEFAULT_STEPS))
        return float(np.median(((w @ nuisance.T) ** 2).sum(1) / (w ** 2).sum(1)))

    assert share_in_nuisance(get("rotation")(clean, 22.5, 1)) > 0.6
    assert share_in_nuisance(clean) < 0.45
