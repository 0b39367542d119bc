"""`provenance image generate|detect`: a real round trip on the reference model, and bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from provenance.keys import WatermarkKey

PROMPT = "a large yellow circle on a plain black background"


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    WatermarkKey.from_seed("cli-image").save(folder / "key.json")
    WatermarkKey.from_seed("cli-image-other").save(folder / "other.json")
    return folder / "key.json", folder / "other.json"


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output


def test_generate_then_detect_with_right_and_wrong_key(keys, tmp_path):
    key, other = keys
    out = tmp_path / "wm.png"
    made = run("image", "generate", "--key", key, "--scheme", "gaussian-shading", "--prompt", PROMPT,
               "--payload", "beef", "--seed", "3", "--out", out)
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["payload"] == "beef" and record["key_id"] == WatermarkKey.load(key).key_id
    assert record["guidance_scale"] == 2.0  # the reference model's own guidance, not its pipeline class's 7.5
    assert "secret" not in made.output
    found = json.loads(run("image", "detect", "--key", key, "--scheme", "gaussian-shading", "--json", out).stdout)
    assert found["detected"] and len(found["payload"]) == 4  # exact round trips: test_image_watermarks.py
    wrong = json.loads(run("image", "detect", "--key", other, "--scheme", "gaussian-shading", "--json", out).stdout)
    assert not wrong["detected"]
    again = run("image", "generate", "--key", key, "--scheme", "prc", "--prompt", PROMPT, "--out", out)
    assert_one_line_error(again, "already exists")


def test_tree_ring_calibration_can_be_skipped(keys, tmp_path, monkeypatch):
    """With --no-calibration nothing is fitted or cached and every image keeps Tree-Ring's plain test."""
    from attacks.image import rotation
    from image_wm import tree_ring_calibration

    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tree_ring_calibration, "PROBE_SCENES", 1)  # not the shipped entry: calibrating would fit
    key, _ = keys
    out = tmp_path / "tr.png"
    assert run("image", "generate", "--key", key, "--scheme", "tree-ring", "--prompt", PROMPT, "--out", out).exit_code == 0
    rotated = tmp_path / "rotated.png"
    cv2.imwrite(str(rotated), rotation(cv2.imread(str(out))[None], 22.5)[0])
    result = run("image", "detect", "--key", key, "--scheme", "tree-ring", "--no-calibration", "--json", out, rotated)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and rows[0]["detected"]
    assert all(not r["details"]["nuisance_projected"] and r["details"]["degrees_of_freedom"] == 20 for r in rows)
    assert not (tmp_path / "cache").exists()


def test_bad_images_get_one_line_errors(keys, tmp_path):
    key, _ = keys
    (tmp_path / "junk.png").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "gray.png"), np.zeros((64, 64), np.uint8))
    cases = {"junk.png": "not a readable image", "tiny.png": "smaller than", "gray.png": "not an RGB image",
             "missing.png": "no such image"}
    for name, fragment in cases.items():
        assert_one_line_error(run("image", "detect", "--key", key, "--scheme", "prc", tmp_path / name), fragment)


def test_wrong_key_file_payload_and_model_folder_are_refused(keys, tmp_path):
    key, _ = keys
    (tmp_path / "key.json").write_text("{}")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert run("image", "detect", "--key", tmp_path / "key.json", "--scheme", "prc", image).exit_code == 2
    assert_one_line_error(run("image", "generate", "--key", key, "--scheme", "prc", "--prompt", PROMPT,
                              "--payload", "zz", "--out", tmp_path / "a.png"), "hex")
    assert_one_line_error(run("image", "detect", "--key", key, "--scheme", "prc", "--model", tmp_path, image),
                          "not a local diffusers pipeline")
    assert run("image", "detect", "--key", key, "--scheme", "nope", image).exit_code == 2
