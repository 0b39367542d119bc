"""Robustness audits end to end on tiny grids: numbers, resumption, the three output files, the CLI.

The attacks here are registered by this module under test-only names, so the audit is tested
against known behaviour (a word scrambler that destroys the watermark at strength 1, a forgery
that hands over either the watermarked item or its cover) and not against other modules' attacks.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import stat
import subprocess

import click
import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attacks import register
from attacks.audit import (AUDIT_FILE, PARTIAL_FILE, RESULT_FILES, check_audit_folder, read_partial, run_audit,
                           start_audit_folder)
from attacks.audit_targets import Items, TextTarget, describe_setup
from attacks.cli import attack, audit
from attacks.quality import image_quality, psnr, ssim
from attacks.report import write_report
from cli import ProvenanceGroup
from provenance import files
from provenance.keys import WatermarkKey
from provenance.readers import InputError

SCRAMBLE, SPLICE, IMAGE_NOISE, IMAGE_BLEND, REVERSE = ("audit-test-scramble", "audit-test-splice", "audit-test-noise",
                                                       "audit-test-blend", "audit-test-reverse")
FILLERS = np.array(["apple", "river", "stone", "cloud", "seven", "window", "market", "ladder"], dtype=object)
N, TOKENS, STRENGTHS = 4, 32, [0.0, 1.0]


@register(SCRAMBLE, "text", 0.0, 1.0, 0.5, unit="fraction of words")
def _scramble(text: str, strength: float, seed: int) -> str:
    """Replace each word with probability ``strength`` by a filler word (test-only)."""
    rng = np.random.default_rng(seed)
    words = np.array(text.split(), dtype=object)
    replace = rng.random(len(words)) < strength
    return " ".join(np.where(replace, rng.choice(FILLERS, size=len(words)), words))


@register(SPLICE, "text", 0.0, 1.0, 1.0, kind="forgery")
def _splice(text: str, strength: float, seed: int, target: str) -> str:
    """Forgery stand-in: with probability ``strength`` the watermarked text itself, else the cover (test-only)."""
    return text if np.random.default_rng(seed).random() < strength else target


@register(IMAGE_NOISE, "image", 0.0, 50.0, 10.0, unit="std")
def _noise(images: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Gaussian pixel noise (test-only)."""
    noise = np.random.default_rng(seed).normal(0.0, strength, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


@register(IMAGE_BLEND, "image", 0.0, 1.0, 1.0, kind="forgery")
def _blend(images: np.ndarray, strength: float, seed: int, target: np.ndarray) -> np.ndarray:
    """Forgery stand-in: blend the watermarked image over the cover (test-only)."""
    return np.round((1 - strength) * target + strength * images).astype(np.uint8)


@register(REVERSE, "video", 0.0, 1.0, 1.0)
def _reverse(frames: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Play the clip backwards (test-only; strength unused)."""
    return frames[::-1].copy()


def _group() -> click.Group:
    """The commands on a group with the real CLI's error handling (cli.py registers them the same way)."""
    return ProvenanceGroup(name="provenance", commands={"audit": audit, "attack": attack})


def _cells_by(cells, attack_name, strength=None):
    return [c for c in cells if c["attack"] == attack_name and (strength is None or c["strength"] == strength)]


@pytest.fixture(scope="module")
def text_audit(tmp_path_factory):
    """KGW on SmolLM2 via the CLI: 4 texts, scrambled and forged at strengths 0 and 1 (a fixed key kept in OUT)."""
    out = tmp_path_factory.mktemp("text-audit")
    WatermarkKey.from_seed(31).save(out / "key.json")
    args = ["audit", "--modality", "text", "--schemes", "kgw", "--attacks", f"{SCRAMBLE},{SPLICE}", "--strengths",
            "0,1", "--n", str(N), "--tokens", str(TOKENS), "--out", str(out)]
    result = CliRunner().invoke(_group(), args)
    assert result.exit_code == 0, result.output
    cells = json.loads((out / "results.json").read_text())["cells"]
    return out, cells, out / "key.json", result.output


def test_text_audit_numbers(text_audit):
    _, cells, _, _ = text_audit
    assert len(cells) == 1 + 2 * len(STRENGTHS)
    clean = _cells_by(cells, "none")[0]
    assert clean["tpr"] >= 0.75 and clean["fpr_attacked"] == 0.0  # 32-token KGW texts; twins are not detected
    assert clean["bit_accuracy"] is None  # zero-bit scheme
    mild, strong = _cells_by(cells, SCRAMBLE, 0.0)[0], _cells_by(cells, SCRAMBLE, 1.0)[0]
    assert strong["tpr"] == 0.0 and mild["tpr"] >= strong["tpr"]
    assert mild["quality"]["similarity"] > 0.99 > 0.5 > strong["quality"]["similarity"]
    # the forgery at strength 1 hands over the watermarked texts, at 0 the covers (unwatermarked twins)
    assert _cells_by(cells, SPLICE, 1.0)[0]["forge_success"] == clean["tpr"]
    assert _cells_by(cells, SPLICE, 0.0)[0]["forge_success"] == clean["fpr_attacked"]
    assert _cells_by(cells, SPLICE, 0.0)[0]["quality"]["similarity"] > 0.99  # judged against the cover
    assert all(c["tpr"] is None for c in _cells_by(cells, SPLICE))


def test_results_json_and_csv_agree(text_audit):
    out, cells, key_file, _ = text_audit
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["command"].startswith("provenance audit --modality text --schemes kgw")
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(cells)
    for row, cell in zip(rows, cells):
        assert row["scheme"] == cell["scheme"] and row["attack"] == cell["attack"]
        assert float(row["strength"]) == cell["strength"]
        for name in ("tpr", "forge_success", "fpr_attacked", "bit_accuracy"):
            assert row[name] == ("" if cell[name] is None else str(cell[name]))
        if cell["quality"]:
            assert float(row["quality_similarity"]) == pytest.approx(cell["quality"]["similarity"])
    secret = WatermarkKey.load(key_file).secret.hex()
    for name in ("results.json", "results.csv", "report.html", PARTIAL_FILE):
        assert secret not in (out / name).read_text()


def test_report_is_self_contained(text_audit):
    out, cells, _, _ = text_audit
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(re.findall(r"<img class=plot", page)) == 2  # one figure per attack
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        png = np.frombuffer(base64.b64decode(source.split(",", 1)[1]), np.uint8)
        assert cv2.imdecode(png, cv2.IMREAD_COLOR) is not None
    assert "Forging success" in page and page.count("<pre>") == len(cells)  # text examples, one per cell


def test_resume_does_no_work(text_audit):
    out, _, key_file, _ = text_audit
    partial = (out / PARTIAL_FILE).read_text()

    class Untouchable(TextTarget):
        def make(self, n, seed):
            raise AssertionError("a finished audit must not make items again")

    target = Untouchable("kgw", WatermarkKey.load(key_file), tokens=TOKENS)
    again = run_audit([target], [SCRAMBLE, SPLICE], out, strengths=STRENGTHS, n=N, fpr=0.01, progress=False)
    assert [c["cell_key"] for c in again] == [c["cell_key"] for c in read_partial(out).values()]
    assert (out / PARTIAL_FILE).read_text() == partial
    # another fpr is another cell: the same target now has work to do
    with pytest.raises(AssertionError, match="must not make items"):
        run_audit([target], [SCRAMBLE], out, strengths=[1.0], n=N, fpr=0.05, progress=False)


def test_fresh_key_is_private(tmp_path):
    """No --key and none in OUT: a fresh key is kept there with mode 0600, and its secret is printed nowhere."""
    out = tmp_path / "fresh"
    result = CliRunner().invoke(_group(), ["audit", "--modality", "text", "--schemes", "kgw", "--attacks", SCRAMBLE,
                                           "--strengths", "1", "--n", "1", "--tokens", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    key = WatermarkKey.load(out / "key.json")
    assert stat.S_IMODE((out / "key.json").stat().st_mode) == 0o600
    assert key.key_id in result.output and key.secret.hex() not in result.output
    assert key.secret.hex() not in (out / "results.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["--schemes", "kgw", "--attacks", "no-such-attack"], "unknown attack"),
    (["--schemes", "no-such-scheme", "--attacks", SCRAMBLE], "unknown text watermark scheme"),
    (["--schemes", "kgw", "--attacks", SCRAMBLE, "--strengths", "2"], "outside attack"),
    (["--schemes", "kgw", "--attacks", SCRAMBLE, "--strengths", "1", "--levels", "3"], "not both"),
    (["--schemes", "kgw", "--attacks", IMAGE_NOISE], "is for image, not text"),
    (["--schemes", "kgw", "--attacks", SCRAMBLE, "--strengths", "a,b"], "comma-separated finite numbers"),
])
def test_audit_cli_errors(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(_group(), ["audit", "--modality", "text", *args, "--n", "2", "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()  # nothing written, no key made


def test_audit_cli_video_knows_only_videomark(tmp_path):
    result = CliRunner().invoke(_group(), ["audit", "--modality", "video", "--schemes", "tree-ring", "--attacks",
                                           REVERSE, "--out", str(tmp_path / "v")])
    assert result.exit_code == 2 and "unknown video scheme 'tree-ring'" in result.output
    assert not (tmp_path / "v").exists()


@pytest.mark.slow
def test_video_audit_end_to_end(tmp_path):
    """VideoMark on the reference video model, 2 clips of 8 frames: detected before and after reversal, twins not."""
    from attacks.audit_targets import VideoTarget

    cells = run_audit([VideoTarget(WatermarkKey.from_seed(7), steps=10)], [REVERSE], tmp_path, strengths=[1.0], n=2,
                      progress=False)
    for cell in (_cells_by(cells, "none")[0], _cells_by(cells, REVERSE, 1.0)[0]):
        assert cell["tpr"] >= 0.5 and cell["fpr_attacked"] == 0.0


def test_attack_cli_single_files(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one two three four five six seven eight", encoding="utf-8")
    out = tmp_path / "out.txt"
    run = ["attack", "text", "--name", SCRAMBLE, "--strength", "1", "--seed", "3", str(source), "--out", str(out)]
    assert CliRunner().invoke(_group(), run).exit_code == 0
    assert set(out.read_text().split()) <= set(FILLERS)
    again = CliRunner().invoke(_group(), run)
    assert again.exit_code == 2 and "--force" in again.output
    from image_wm.video.video_io import read_video, write_video

    clip = np.arange(2 * 16 * 16 * 3, dtype=np.uint8).reshape(2, 16, 16, 3)
    video = ["attack", "video", "--name", REVERSE, str(source), "--out", str(tmp_path / "o")]
    wrong = CliRunner().invoke(_group(), video)
    assert wrong.exit_code == 2 and "not a readable video" in wrong.output
    video[4] = str(write_video(tmp_path / "clip", clip))  # a folder of PNG frames: lossless
    assert CliRunner().invoke(_group(), video).exit_code == 0
    assert (read_video(tmp_path / "o").frames == clip[::-1]).all()
    video[3], video[6] = SCRAMBLE, str(tmp_path / "o2")
    wrong = CliRunner().invoke(_group(), video)
    assert wrong.exit_code == 2 and "is for text, not video" in wrong.output
    forge = CliRunner().invoke(_group(), ["attack", "text", "--name", SPLICE, str(source), "--out", str(out) + "2"])
    assert forge.exit_code == 2 and "needs target" in forge.output
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    done = CliRunner().invoke(_group(), ["attack", "image", "--name", IMAGE_NOISE, "--strength", "20", str(image),
                                         "--out", str(tmp_path / "noisy.png")])
    assert done.exit_code == 0 and cv2.imread(str(tmp_path / "noisy.png")).std() > 5


def test_image_quality_metrics():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    brighter = np.clip(image.astype(int) + 5, 0, 255).astype(np.uint8)
    expected = 10 * np.log10(255**2 / np.mean((brighter.astype(float) - image) ** 2))
    assert psnr(image, image) == 100.0 and psnr(image, brighter) == pytest.approx(expected)
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (5, 20, 60)]
    scores = [ssim(image, x) for x in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2] > -1.0
    half = image[::2, ::2]  # an attack that shrinks the image is compared at the original size
    assert 0 < image_quality(image[None], half[None])["ssim"] < 1


class StubImages:
    """A model-free image target: items are given, detection says 'watermarked' for bright images."""

    modality, scheme, key_id, setup_id = "image", "stub", "0" * 16, "stub-weights"

    def __init__(self):
        self.made = 0

    def make(self, n, seed):
        self.made += 1
        rng = np.random.default_rng(seed)
        return Items(rng.integers(200, 256, (n, 24, 24, 3)).astype(np.uint8),
                     rng.integers(0, 41, (n, 24, 24, 3)).astype(np.uint8))

    def detect(self, items, fpr, payload):
        from provenance.result import DetectionResult

        bright = [bool(im.mean() > 128) for im in items]
        return [DetectionResult(b, 0.0 if b else 1.0, float(b), 0.5, fpr, "stub", self.key_id) for b in bright]

    def apply(self, attack_, items, strength, seed, cover):
        from attacks.audit_targets import attack_models

        return attack_(items, strength, seed, **attack_models(attack_, {"target": cover}))

    def quality(self, original, attacked):
        return image_quality(original, attacked)

    def save_example(self, item, path_stem):
        from image_wm.image_io import write_image

        return write_image(path_stem.with_suffix(".png"), item).name


def test_runner_checks_before_work_and_renders_images(tmp_path):
    stub = StubImages()
    with pytest.raises(ValueError, match="is for text, not image"):
        run_audit([stub], [SCRAMBLE], tmp_path, n=2, progress=False)
    with pytest.raises(ValueError, match="outside attack"):
        run_audit([stub], [IMAGE_NOISE], tmp_path, strengths=[99.0], n=2, progress=False)
    assert stub.made == 0
    cells = run_audit([stub], [IMAGE_NOISE, IMAGE_BLEND], tmp_path, levels=3, n=3, progress=False)
    assert stub.made == 1 and len(cells) == 1 + 3 + 3
    blends = _cells_by(cells, IMAGE_BLEND)
    assert [c["forge_success"] for c in blends] == [0.0, 0.0, 1.0]  # 0, 0.5, 1: only the unblended mark is bright
    assert _cells_by(cells, IMAGE_NOISE, 0.0)[0]["quality"]["psnr"] == 100.0
    paths = write_report(cells, tmp_path, {"note": "stub"})
    page = paths["html"].read_text()
    thumbs = re.findall(r'<figure><img src="data:image/png;base64,', page)
    assert len(thumbs) == len(cells)  # before (no attack) and after every cell
    rows = [line for line in paths["markdown"].read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(cells) and sum("| forged 1.00 |" in row for row in rows) == 1  # the unblended forgery


def test_interrupted_run_resumes_identically(tmp_path):
    """A cell whose line was cut off mid-write is redone, and comes out the same (deterministic under the seed)."""
    run_audit([StubImages()], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    lines = (tmp_path / PARTIAL_FILE).read_text().splitlines()
    (tmp_path / PARTIAL_FILE).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    stub = StubImages()
    run_audit([stub], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    again = (tmp_path / PARTIAL_FILE).read_text().splitlines()
    assert stub.made == 1 and len(again) == len(lines)
    before, after = json.loads(lines[-1]), json.loads(again[-1])
    before.pop("seconds"), after.pop("seconds")
    assert after == before


def test_other_setup_redoes_finished_cells(tmp_path):
    """Retrained weights or other settings (another setup id) never reuse a finished cell."""
    run_audit([StubImages()], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    retrained = StubImages()
    retrained.setup_id = "retrained-weights"
    cells = run_audit([retrained], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    assert retrained.made == 1 and {c["setup_id"] for c in cells} == {"retrained-weights"}
    assert len(read_partial(tmp_path)) == 2 * len(cells)  # both setups' cells are kept


def test_setup_id_follows_weights_and_settings():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    first = describe_setup({"steps": 25}, layer, None)
    assert describe_setup({"steps": 25}, layer) == first
    assert describe_setup({"steps": 10}, layer) != first
    with torch.no_grad():
        layer.weight[0, 0] += 1e-3
    assert describe_setup({"steps": 25}, layer) != first


@pytest.mark.slow
def test_image_audit_end_to_end(tmp_path):
    """Gaussian Shading on the reference model, 2 images, 4 steps: clean detection, bit accuracy, forgery."""
    from attacks.audit_targets import LatentImageTarget

    target = LatentImageTarget("gaussian-shading", WatermarkKey.from_seed(5), steps=4)
    cells = run_audit([target], [IMAGE_NOISE, IMAGE_BLEND], tmp_path, strengths=[0.0, 1.0], n=2, progress=False)
    clean = _cells_by(cells, "none")[0]
    assert clean["tpr"] == 1.0 and clean["fpr_attacked"] == 0.0 and clean["bit_accuracy"] == 1.0
    assert _cells_by(cells, IMAGE_BLEND, 1.0)[0]["forge_success"] == 1.0
    assert _cells_by(cells, IMAGE_BLEND, 0.0)[0]["forge_success"] == 0.0
    assert _cells_by(cells, IMAGE_NOISE, 1.0)[0]["quality"]["psnr"] < 100.0
    write_report(cells, tmp_path, {})
    assert len(re.findall(r"<img class=plot", (tmp_path / "report.html").read_text())) == 2


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def test_report_loads_in_headless_browser(text_audit, tmp_path):
    """Every image of report.html decodes in a real browser (headless Chromium; `.ci/run` installs it)."""
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("no Chromium found and none could be installed (Debian package `chromium`)")
    out = text_audit[0]
    probe = ("<script>addEventListener('load', () => { const imgs = [...document.images]; "
             "document.body.setAttribute('data-loaded', imgs.filter(i => i.complete && i.naturalWidth > 0).length + "
             "'/' + imgs.length); });</script></body>")
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", probe), encoding="utf-8")
    # A fresh profile and no background networking: the machine's network is closed, and the
    # page must load from the file alone.
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom"]
    dom = subprocess.run([browser, *flags, page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    loaded, total = re.search(r'data-loaded="(\d+)/(\d+)"', dom).groups()
    assert int(total) >= 2 and loaded == total


# -- one audit per output folder ------------------------------------------------------------
STUB_ARGS = {"--modality": "image", "--schemes": "stub", "--attacks": IMAGE_NOISE, "--strengths": "0,10", "--n": "2",
             "--seed": "0", "--fpr": "0.01"}


@pytest.fixture
def stub_cli(monkeypatch):
    """``provenance audit`` on model-free image targets; ``events`` logs each target's model use
    (``load``: its setup id, which loads the model; ``make``: items made)."""
    events = []

    class Stub(StubImages):
        def __init__(self, scheme, key, model):
            super().__init__()
            self.scheme, self.key_id, self._model = scheme, key.key_id, model

        @property
        def setup_id(self):
            events.append(("load", self.scheme))
            return f"stub-{self._model}"

        def make(self, n, seed):
            events.append(("make", self.scheme))
            return super().make(n, seed)

    def make_targets(modality, schemes, key, *, model=None, steps=None, tokens=None, resync="off"):
        return [Stub(s, key, model) for s in schemes]

    monkeypatch.setattr("attacks.audit_targets.make_targets", make_targets)

    def run(out, *flags, **changes):
        options = {**STUB_ARGS, "--out": str(out), **{f"--{k}": v for k, v in changes.items()}}
        args = [part for k, v in options.items() if v is not None for part in (k, v)]
        return CliRunner().invoke(_group(), ["audit", *args, *flags])

    return run, events


def _snapshot(folder):
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _records(out):
    return [json.loads(line) for line in (out / PARTIAL_FILE).read_text().splitlines()]


def test_rerun_with_same_settings_resumes(stub_cli, tmp_path):
    run, events = stub_cli
    out = tmp_path / "out"
    first = run(out)
    assert first.exit_code == 0, first.output
    recorded = json.loads((out / AUDIT_FILE).read_text())["settings"]
    assert recorded == {"modality": "image", "schemes": ["stub"], "attacks": [IMAGE_NOISE], "strengths": [0.0, 10.0],
                        "levels": None, "n": 2, "fpr": 0.01, "seed": 0, "key_id": WatermarkKey.load(out / "key.json")
                        .key_id, "model": "default", "steps": None, "tokens": None, "resync": None}
    before = _snapshot(out)
    events.clear()
    again = run(out)
    assert again.exit_code == 0, again.output
    assert "reusing the finished cells" in again.output
    assert ("make", "stub") not in events  # no cell recomputed
    after = _snapshot(out)
    for name in (AUDIT_FILE, PARTIAL_FILE, "key.json", "examples/image/stub/none.png"):
        assert after[name] == before[name]
    assert json.loads(after["results.json"])["cells"] == json.loads(before["results.json"])["cells"]  # seconds too


@pytest.mark.parametrize("changes, field", [
    ({"n": "3"}, "n"), ({"seed": "1"}, "seed"), ({"fpr": "0.05"}, "fpr"), ({"strengths": "0,20"}, "strengths"),
    ({"strengths": None, "levels": "2"}, "levels"),
    ({"attacks": f"{IMAGE_NOISE},{IMAGE_BLEND}", "strengths": "0,1"}, "attacks"),
    ({"schemes": "stub,other"}, "schemes"), ({"model": "elsewhere"}, "model"), ({"steps": "3"}, "steps"),
    ({"resync": "fast"}, "resync"),
    ({"key": "OTHER"}, "key_id"),
])
def test_rerun_with_other_settings_is_refused(stub_cli, tmp_path, changes, field):
    """Nothing in OUT changes, and no model loads, when the settings differ from the audit there."""
    run, events = stub_cli
    out = tmp_path / "out"
    assert run(out).exit_code == 0
    if changes.get("key") == "OTHER":
        changes = {"key": str(WatermarkKey.from_seed(99).save(tmp_path / "other.json"))}
    before = _snapshot(out)
    events.clear()
    result = run(out, **changes)
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {out}: holds an audit with other settings (")
    assert f"({field} " in line or f"; {field} " in line
    assert "pass --force to replace it, or choose another --out" in line
    assert events == [] and _snapshot(out) == before


def test_force_starts_afresh(stub_cli, tmp_path):
    run, events = stub_cli
    out = tmp_path / "out"
    assert run(out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    key = (out / "key.json").read_bytes()
    refused = run(out, n="3", strengths="5")
    assert refused.exit_code == 2 and "--force" in refused.output
    events.clear()
    forced = run(out, "--force", n="3", strengths="5")
    assert forced.exit_code == 0, forced.output
    assert ("make", "stub") in events
    assert json.loads((out / AUDIT_FILE).read_text())["settings"]["n"] == 3
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["attack"], c["strength"], c["n"]) for c in cells] == [("none", 0.0, 3), (IMAGE_NOISE, 5.0, 3)]
    assert [r["n"] for r in _records(out)] == [3, 3]  # the old partial results are gone
    assert sorted(p.name for p in (out / "examples/image/stub").iterdir()) == sorted(["none.png",
                                                                                   f"{IMAGE_NOISE}-5.png"])
    assert (out / "key.json").read_bytes() == key and (out / "notes.txt").read_text() == "mine"
    # --force also redoes an audit with the same settings
    events.clear()
    assert run(out, "--force", n="3", strengths="5").exit_code == 0
    assert ("make", "stub") in events


def test_out_folder_of_other_files(stub_cli, tmp_path):
    run, events = stub_cli
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    refused = run(out)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert f"{out}: holds other files (notes.txt) and no audit; pass --force" in refused.output
    assert _snapshot(out) == before and events == []  # no key written either
    assert run(out, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty).exit_code == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for flags in ((), ("--force",)):
        assert run(a_file, *flags).exit_code == 2 and a_file.read_text() == "x"
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_audit_folder(a_file, {}, force=True)


def test_unreadable_or_legacy_audit_settings(stub_cli, tmp_path):
    """A broken audit.json is refused (``--force`` replaces it); an audit from before audit.json is
    judged by its results.json."""
    run, events = stub_cli
    out = tmp_path / "out"
    assert run(out).exit_code == 0
    (out / AUDIT_FILE).write_text("[" * 100_000)
    before = _snapshot(out)
    broken = run(out)
    assert broken.exit_code == 2 and "holds an audit whose settings cannot be read (audit.json: " in broken.output
    assert _snapshot(out) == before
    assert run(out, "--force").exit_code == 0
    (out / AUDIT_FILE).unlink()  # as an older version left it
    events.clear()
    assert run(out, n="3").exit_code == 2
    resumed = run(out)
    assert resumed.exit_code == 0 and ("make", "stub") not in events
    assert json.loads((out / AUDIT_FILE).read_text())["settings"]["n"] == 2
    for name in (AUDIT_FILE, *RESULT_FILES):  # interrupted before it wrote results: resumed by cell key
        (out / name).unlink()
    events.clear()
    assert run(out).exit_code == 0 and ("make", "stub") not in events


def test_audit_without_finished_cells_is_replaced(stub_cli, tmp_path):
    """An audit that started but finished no cell (a model that would not load, say) holds nothing to lose."""
    run, _ = stub_cli
    out = tmp_path / "out"
    start_audit_folder(out, {"modality": "image", "n": 7}, "new")
    (out / PARTIAL_FILE).write_text("")
    assert run(out).exit_code == 0
    assert json.loads((out / AUDIT_FILE).read_text())["settings"]["n"] == 2


def test_corrupt_partial_lines_are_skipped(tmp_path):
    """Lines that are not whole, well-typed records never crash the reader, and the good records are reused."""
    run_audit([StubImages()], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    lines = (tmp_path / PARTIAL_FILE).read_text().splitlines()
    good = [json.loads(line) for line in lines]

    def altered(record, **changes):
        return json.dumps({**record, **changes})

    missing = {k: v for k, v in good[0].items() if k != "example"}
    bad = ["[]", '{"x": 1}', "null", '"text"', "[" * 200_000 + "]" * 200_000, '{"a": ' * 200_000,
           "[" + " " * (5 << 20) + "]", lines[1][: len(lines[1]) // 2], json.dumps(missing),
           altered(good[0], tpr="high"), altered(good[0], n=3),  # a key that disagrees with its fields
           altered(good[0], n=True), altered(good[1], example="../../key.json"),
           altered(good[1], quality={"psnr": "high"}), altered(good[2], tpr=float("nan"))]
    data = b"\n".join([line.encode() for line in [lines[0], *bad[:6], lines[1], *bad[6:], lines[2]]]
                      + [b"\xff\xfe not utf-8", b'{"cut off'])
    (tmp_path / PARTIAL_FILE).write_bytes(data)
    assert read_partial(tmp_path) == {r["cell_key"]: r for r in good}
    stub = StubImages()
    again = run_audit([stub], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    assert stub.made == 0 and again == good
    assert (tmp_path / PARTIAL_FILE).read_text().splitlines() == lines  # rewritten with the good records only
    (tmp_path / PARTIAL_FILE).unlink()
    (tmp_path / PARTIAL_FILE).mkdir()
    with pytest.raises(InputError, match="is a folder"):
        read_partial(tmp_path)


def _disk_full(fd):
    """Stands in for ``os.fsync`` on a full disk: the bytes are written, but never safely."""
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("name", RESULT_FILES)
def test_report_files_are_written_atomically(tmp_path, monkeypatch, name):
    """A write failing before it is safely on disk leaves that report file's old version whole."""
    import attacks.report

    cells = run_audit([StubImages()], [IMAGE_NOISE], tmp_path, levels=2, n=2, progress=False)
    write_report(cells, tmp_path, {"command": "old"})
    old = {n: (tmp_path / n).read_bytes() for n in RESULT_FILES}
    written = []
    real = attacks.report.write_text_atomic

    def writer(path, text, *args):
        written.append(path.name)
        if path.name != name:
            return real(path, text, *args)
        with monkeypatch.context() as patch:
            patch.setattr(files.os, "fsync", _disk_full)
            return real(path, text, *args)

    monkeypatch.setattr(attacks.report, "write_text_atomic", writer)
    newer = [dict(c, seconds=c["seconds"] + 1.0) for c in cells]
    with pytest.raises(OSError, match="No space left"):
        write_report(newer, tmp_path, {"command": "new"})
    assert written[-1] == name and (tmp_path / name).read_bytes() == old[name]
    assert not [p.name for p in tmp_path.iterdir() if ".partial" in p.name]  # no temporary left behind
    for done in written[:-1]:  # the files before it are replaced whole
        assert (tmp_path / done).read_bytes() != old[done]
    monkeypatch.setattr(attacks.report, "write_text_atomic", lambda path, text, *a: written.append(path.name)
                        or real(path, text, *a))
    written.clear()
    write_report(newer, tmp_path, {"command": "new"})
    assert sorted(written) == sorted(RESULT_FILES)  # every report file goes through the atomic writer


def test_text_examples_are_written_atomically(tmp_path, monkeypatch):
    target = TextTarget("kgw", WatermarkKey.from_seed(3), tokens=8)  # no model loads to save an example
    name = target.save_example("the old example", tmp_path / "none")
    assert name == "none.txt"
    monkeypatch.setattr(files.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        target.save_example("a new example that fails halfway", tmp_path / "none")
    assert (tmp_path / "none.txt").read_text() == "the old example"
    assert [p.name for p in tmp_path.iterdir()] == ["none.txt"]


def test_only_unscoreable_content_counts_as_a_miss_and_a_defect_fails_loudly(tokenizer):
    """A text an attack emptied is "not detected"; a detector bug (any other error) is never a miss."""
    target = TextTarget("kgw", WatermarkKey.from_seed(5), lm=object(), tokenizer=tokenizer)
    human = "The harbour lay quiet under a grey sky while the fishing boats came home one by one."
    scored, emptied = target.detect([human, "   "], fpr=0.01, payload=None)
    assert scored.details.get("error") is None and 0.0 < scored.p_value <= 1.0
    assert not emptied.detected and "empty text" in emptied.details["error"]

    class Broken:
        name = "kgw"

        def detect(self, text, key, tokenizer=None, *, fpr=0.01):
            raise ValueError("an index the detector got wrong")

    target.watermark = Broken()
    with pytest.raises(ValueError, match="the detector got wrong"):
        target.detect([human], fpr=0.01, payload=None)


def test_an_audit_recorded_before_resync_existed_still_resumes(stub_cli, tmp_path):
    """Settings fields added later (``resync``) read as their old meaning when a record lacks them."""
    run, events = stub_cli
    out = tmp_path / "out"
    assert run(out).exit_code == 0
    recorded = json.loads((out / AUDIT_FILE).read_text())
    del recorded["settings"]["resync"]
    (out / AUDIT_FILE).write_text(json.dumps(recorded))
    events.clear()
    again = run(out)
    assert again.exit_code == 0 and "reusing the finished cells" in again.output
    assert ("make", "stub") not in events
