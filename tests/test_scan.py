"""``provenance scan``: a dataset of images and texts scanned on Ray gives the serial detectors'
verdicts bit for bit, bad items become error rows, a rerun scores nothing new and an
interrupted scan resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import cli
from image_wm import scenes
from image_wm.image_io import write_image
from image_wm.loading import load_model, shared_model
from image_wm.video import WatermarkedVideoPipeline
from image_wm.video.video_io import write_video
from provenance.keys import WatermarkKey
from provenance.scan import folder as scan_folder
from text_wm.generate import generate_watermarked
from text_wm.kgw import KGW

PROMPTS = ["a large red star above a small blue ring on plain white background",
           "a small green square on striped yellow background"]


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def verdicts(output: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {row["input"]: row for row in rows}


def table(out) -> dict[tuple[str, str], dict]:
    return {(row["item"], row["scheme"]): row for row in pq.read_table(out / "results.parquet").to_pylist()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, text_model, human_passages):
    """Two Gaussian Shading images, an unwatermarked one, a corrupt one and a README in a folder;
    a JSON-lines and a Parquet text set with a KGW text, a human one and a bad row."""
    root = tmp_path_factory.mktemp("scan")
    image_key, text_key = root / "image-key.json", root / "text-key.json"
    WatermarkKey.from_seed("scan-images").save(image_key)
    WatermarkKey.from_seed("scan-texts").save(text_key)
    images = root / "images"
    images.mkdir()
    wrapped = shared_model().watermarked("gaussian-shading", WatermarkKey.load(image_key))
    marked = wrapped(PROMPTS, payload=b"\xbe\xef", seed=7).images
    write_image(images / "a_marked.png", marked[0])
    write_image(images / "b_marked.png", marked[1])
    write_image(images / "c_clean.png", scenes.generate(1, 5)[0][0])
    (images / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (images / "README.txt").write_text("not scanned")
    model, tokenizer = text_model
    (record,) = generate_watermarked(model, tokenizer, ["Write about the history of the printing press."], KGW(),
                                     WatermarkKey.load(text_key), seed=3, max_new_tokens=80, do_sample=True)
    texts = [record.text, human_passages[0]]
    (root / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts) + '{"text": 5}\n')
    pq.write_table(pa.table({"text": texts + [None]}), root / "texts.parquet")
    return root


def test_a_scan_on_two_ray_workers_matches_the_serial_detectors_and_a_rerun_scores_nothing(dataset, tmp_path):
    out = tmp_path / "scan"
    args = ["--scheme", "gaussian-shading", "--key", dataset / "image-key.json", "--scheme", "kgw",
            "--key", dataset / "text-key.json", "--batch", 2, "--steps", 10, "--out", out,
            dataset / "images", dataset / "texts.jsonl", dataset / "texts.parquet"]
    scanned = run("scan", "--workers", 2, *args)
    assert scanned.exit_code == 2, scanned.output  # the corrupt image and the bad text rows
    assert "error: " in scanned.output and "d_corrupt.png" in scanned.output
    rows = table(out)
    assert len(rows) == 4 + 6  # README.txt is not an image; each text row once
    # the serial detectors, given the scan's units of two items: the same p-values, bit for bit
    serial = {}
    for pair in (("a_marked.png", "b_marked.png"), ("c_clean.png", "d_corrupt.png")):
        serial |= verdicts(run("image", "detect", "--scheme", "gaussian-shading", "--key", dataset / "image-key.json",
                               "--steps", 10, "--json", *(dataset / "images" / name for name in pair)).output)
    serial |= verdicts(run("text", "detect", "--scheme", "kgw", "--key", dataset / "text-key.json", "--json",
                           dataset / "texts.jsonl").output)
    for (item, _), row in rows.items():
        reference = serial.get(item) or serial.get(item.replace("texts.parquet", "texts.jsonl"))
        if reference is None or "error" in reference:
            assert row["error"] and row["p_value"] is None, row
        else:
            assert row["p_value"] == reference["p_value"] and row["detected"] == reference["detected"], (row, reference)
    found = {item.rsplit("/", 1)[-1]: row for (item, _), row in rows.items() if row["detected"]}
    assert set(found) == {"a_marked.png", "b_marked.png", "texts.jsonl:1", "texts.parquet:1"}
    assert found["a_marked.png"]["payload"] == "beef"
    logged = len(scan_folder.ScanFolder(out).rows())
    again = run("scan", "--workers", 0, *args)
    assert "0 scored" in again.output, again.output
    after = scan_folder.ScanFolder(out).rows()
    assert all(row["error"] for row in after[logged:])  # only the bad items were tried again
    assert {k: v for k, v in table(out).items() if not v["error"]} == {k: v for k, v in rows.items() if not v["error"]}


def test_an_interrupted_scan_resumes_without_scoring_anything_twice(dataset, tmp_path, monkeypatch):
    out = tmp_path / "scan"
    args = ["scan", "--workers", 0, "--scheme", "kgw", "--key", dataset / "text-key.json", "--batch", 1, "--out", out,
            dataset / "texts.jsonl"]
    append = scan_folder.ScanFolder.append
    calls = []

    def interrupted(self, rows):
        calls.append(len(rows))
        append(self, rows)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(scan_folder.ScanFolder, "append", interrupted)
    stopped = CliRunner().invoke(cli.main, [str(a) for a in args])
    assert stopped.exit_code != 0 and len(calls) == 2
    monkeypatch.undo()
    assert [row["item"].rsplit(":", 1)[-1] for row in scan_folder.ScanFolder(out).rows()] == ["1", "2"]
    resumed = run(*args)
    assert "1 skipped" not in resumed.output and "2 skipped" in resumed.output, resumed.output
    items = [row["item"].rsplit(":", 1)[-1] for row in scan_folder.ScanFolder(out).rows()]
    assert items == ["1", "2", "3"]


def test_bad_scan_arguments_get_one_line_errors(dataset, tmp_path):
    key = dataset / "text-key.json"
    (tmp_path / "spec.yaml").write_text("- {scheme: kgw}\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.md").write_text("mine")
    for args, message in (
        (["--scheme", "kgw", dataset / "texts.jsonl"], "give each --scheme its --key"),
        (["--spec", tmp_path / "spec.yaml", dataset / "texts.jsonl"], "entry 1 must be"),
        (["--scheme", "nope", "--key", key, dataset / "texts.jsonl"], "unknown scheme"),
        (["--scheme", "kgw", "--key", key, dataset / "images" / "README.txt"], "not an image, a video or a text"),
        (["--scheme", "kgw", "--key", key, dataset / "images"], "no input matches a scheme"),
        (["--scheme", "kgw", "--key", key, "--out", tmp_path / "other", dataset / "texts.jsonl"], "holds other files"),
    ):
        if "--out" not in args:
            args = [*args, "--out", tmp_path / "out"]
        result = run("scan", "--workers", 0, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert result.output.count("error:") == 1


@pytest.mark.slow
def test_a_videomark_clip_is_scanned_as_video_detect_scores_it(tmp_path):
    key = tmp_path / "key.json"
    WatermarkKey.from_seed("scan-video").save(key)
    video = load_model(task="text-to-video", device="cpu")
    wrapped = WatermarkedVideoPipeline(video.pipe, WatermarkKey.load(key), guidance=video.guidance)
    clip = wrapped("a small red circle moving right on a plain white background", num_frames=8, seed=3,
                   num_inference_steps=10).videos[0]
    write_video(tmp_path / "clips" / "marked.mp4", clip, 8.0)
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    scanned = run("scan", "--workers", 0, "--scheme", "videomark", "--key", key, "--steps", 10, "--out", tmp_path / "out",
                  tmp_path / "clips")
    assert scanned.exit_code == 2 and "broken.mp4" in scanned.output, scanned.output
    rows = {Path(item).name: row for (item, _), row in table(tmp_path / "out").items()}
    reference = verdicts(run("video", "detect", "--key", key, "--steps", 10, "--json",
                             tmp_path / "clips" / "marked.mp4").output)
    assert rows["marked.mp4"]["detected"] and rows["broken.mp4"]["error"]
    assert rows["marked.mp4"]["p_value"] == reference[str(tmp_path / "clips" / "marked.mp4")]["p_value"]
