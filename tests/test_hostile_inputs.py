"""Hostile input, table-driven: the real CLI in subprocesses, over generated bad inputs for every command.

Each case asserts the contract of the README ("Errors and exit codes"): the exit code, exactly
one ``error: ...`` line on stderr per bad input that names it, no traceback, no verdict for
anything unreadable (verdicts only for the readable inputs of a partly bad batch), and the
folder of inputs byte-identical afterwards (no output written, nothing overwritten, no
``.partial`` files). The cases run two at a time in one fixture, each in its own process
(``tests/cli_processes.py``); each case is then its own test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from cli_processes import run_many
from provenance.keys import WatermarkKey

VERDICT = re.compile(r"WATERMARKED|not detected|MODEL-GENERATED|\"p_value\"|\"verdict\"")
HUMAN = ("The harbour lay quiet under a grey sky while the fishing boats came home one by one, "
         "their engines loud across the water and the gulls following close behind them.")


@dataclass(frozen=True)
class Case:
    """One hostile invocation: ``args`` (``{key}`` etc. are files of the fixture folder)."""

    id: str
    args: tuple[str, ...]
    fragment: str  # a piece of the expected error line
    code: int = 2
    errors: int = 1  # error lines expected on stderr
    verdicts: int = 0  # verdict lines expected on stdout (readable inputs of a partly bad batch)
    env: dict[str, str] = field(default_factory=dict)


def case(id: str, *args: str, fragment: str, **kwargs) -> Case:
    return Case(id, args, fragment, **kwargs)


KEY = ("--key", "key.json")
TEXT = ("text", "detect", *KEY, "--scheme", "kgw")
IMAGE = ("image", "detect", *KEY, "--scheme", "prc")
VIDEO = ("video", "detect", *KEY)
GEN = ("text", "generate", *KEY)
IGEN = ("image", "generate", *KEY, "--prompt", "a red star")

CASES = [
    # -- key files ---------------------------------------------------------------------
    case("key-dev-zero", "keys", "show", "/dev/zero", fragment="/dev/zero: not a regular file"),
    case("key-fifo", "keys", "show", "fifo", fragment="fifo: not a regular file"),
    case("key-folder", "keys", "show", "folder", fragment="'folder' is a directory"),
    case("key-missing", "keys", "show", "missing.json", fragment="missing.json: no such key file"),
    case("key-huge", "keys", "show", "huge.json", fragment="huge.json: key file is 1 MiB, over the 64 KiB limit"),
    case("key-created-400-digits", "keys", "show", "created_digits.json", fragment="malformed creation time"),
    case("key-created-1e400", "keys", "show", "created_inf.json", fragment="malformed creation time"),
    case("key-created-nan", "keys", "show", "created_nan.json", fragment="NaN, which is not a number"),
    case("key-created-bool", "keys", "show", "created_bool.json", fragment="malformed creation time"),
    case("key-created-negative", "keys", "show", "created_negative.json", fragment="malformed creation time"),
    case("key-deep-nesting", "keys", "show", "deep.json", fragment="nested deeper than"),
    case("key-deep-over-cap", "keys", "show", "deep_big.json", fragment="over the 64 KiB limit"),
    case("key-binary", "keys", "show", "binary.json", fragment="not UTF-8"),
    case("key-truncated", "keys", "show", "truncated.json", fragment="not valid JSON"),
    case("key-empty", "keys", "show", "empty.txt", fragment="not valid JSON"),
    case("key-wrong-format", "keys", "show", "wrong_format.json", fragment="not a provenance watermark key"),
    case("key-short-secret", "keys", "show", "short_secret.json", fragment="malformed secret"),
    case("key-id-mismatch", "keys", "show", "mismatch.json", fragment="key id does not match"),
    case("key-label-control", "keys", "show", "label_control.json", fragment="malformed label"),
    case("key-version", "keys", "show", "version.json", fragment="unsupported key file version"),
    case("key-new-exists", "keys", "new", "--out", "key.json", fragment="key.json: already exists"),
    case("key-new-label", "keys", "new", "--out", "new.json", "--label", "a\x1bb", fragment="--label"),
    case("key-for-detect", *TEXT[:2], "--key", "deep.json", "--scheme", "kgw", "human.txt",
         fragment="deep.json: JSON nested"),
    # -- texts -------------------------------------------------------------------------
    case("text-jsonl-bad-line", *TEXT, "mixed.jsonl", fragment="mixed.jsonl:2: not valid JSON", verdicts=2),
    case("text-jsonl-null", *TEXT, "null.jsonl", fragment="null.jsonl:1: \"text\" must be a string, not null"),
    case("text-jsonl-ids", *TEXT, "ids.jsonl", fragment="ids.jsonl:1: \"text\" must be a string, not list"),
    case("text-jsonl-deep", *TEXT, "deep_line.jsonl", fragment="deep_line.jsonl:1: JSON nested deeper"),
    case("text-jsonl-empty", *TEXT, "blank.jsonl", fragment="blank.jsonl: no records"),
    case("text-not-utf8", *TEXT, "latin1.txt", fragment="latin1.txt: not UTF-8 text"),
    case("text-binary", *TEXT, "nul.txt", fragment="nul.txt: binary content"),
    case("text-empty", *TEXT, "empty.txt", fragment="empty.txt: empty text"),
    case("text-too-big", *TEXT, "--max-text-bytes", "1K", "long.txt", fragment="long.txt: text file is"),
    case("text-bad-size", *TEXT, "--max-text-bytes", "lots", "human.txt", fragment="--max-text-bytes"),
    case("text-missing-and-good", *TEXT, "missing.txt", "human.txt", fragment="missing.txt: no such", verdicts=1),
    case("text-dev-zero", *TEXT, "/dev/zero", fragment="/dev/zero: not a regular file"),
    case("text-unknown-scheme", "text", "detect", *KEY, "--scheme", "nope", "human.txt", fragment="--scheme"),
    case("text-fpr-range", *TEXT, "--fpr", "0.9", "human.txt", fragment="--fpr"),
    case("text-fpr-nan", *TEXT, "--fpr", "nan", "human.txt", fragment="--fpr"),
    case("text-zeroshot-bad", "text", "zeroshot", "nul.txt", fragment="nul.txt: binary content"),
    case("gen-payload-zero-bit", *GEN, "--scheme", "kgw", "--payload", "beef", "--prompt", "hi",
         fragment="--payload: kgw is a zero-bit scheme"),
    case("gen-payload-not-hex", *GEN, "--scheme", "majormark", "--payload", "zzzz", "--prompt", "hi",
         fragment="--payload: must be hex"),
    case("gen-payload-length", *GEN, "--scheme", "majormark", "--payload", "beefbeef", "--prompt", "hi",
         fragment="--payload: majormark carries exactly 2 bytes"),
    case("gen-payload-missing", *GEN, "--scheme", "majormark", "--prompt", "hi", fragment="--payload: majormark embeds"),
    case("gen-out-suffix", *GEN, "--scheme", "kgw", "--prompt", "hi", "--out", "out.txt", fragment="out.txt: generation"),
    case("gen-prompts-dev-zero", *GEN, "--scheme", "kgw", "--prompts", "/dev/zero", fragment="/dev/zero"),
    case("gen-empty-prompt", *GEN, "--scheme", "kgw", "--prompt", "  ", fragment="--prompt: no prompt"),
    case("gen-both-prompts", *GEN, "--scheme", "kgw", "--prompt", "a", "--prompts", "human.txt",
         fragment="exactly one of --prompt"),
    case("watermark-out-exists", "text", "watermark", "--scheme", "blackbox", *KEY, "--out", "human.txt", "human.txt",
         fragment="human.txt: already exists"),
    case("watermark-nothing-eligible", "text", "watermark", "--scheme", "blackbox", *KEY, "--out", "marked.txt",
         "digits.txt", fragment="digits.txt: no word in the text is eligible"),
    case("dataset-bad-line", "dataset", "mark", "mixed.jsonl", "--out", "marked.jsonl",
         fragment="mixed.jsonl:2: not valid JSON"),
    case("dataset-out-suffix", "dataset", "mark", "docs.jsonl", "--out", "marked.txt", fragment="marked.txt: marked"),
    case("dataset-verify-bad", "dataset", "verify", "--suspect", "null.jsonl", "--reference", "docs.jsonl",
         fragment="null.jsonl:1"),
    # -- images ------------------------------------------------------------------------
    case("image-truncated-jpeg", *IMAGE, "cut.jpg", fragment="cut.jpg: truncated"),
    case("image-truncated-png", *IMAGE, "cut.png", fragment="cut.png: truncated"),
    case("image-random-bytes", *IMAGE, "noise.png", fragment="noise.png: not a readable image"),
    case("image-gray", *IMAGE, "gray.png", fragment="gray.png: grayscale"),
    case("image-gray-alpha", *IMAGE, "gray_alpha.png", fragment="gray_alpha.png: grayscale"),
    case("image-translucent", *IMAGE, "translucent.png", fragment="translucent.png: has transparency"),
    case("image-16-bit", *IMAGE, "deep.png", fragment="deep.png: 16-bit"),
    case("image-cmyk", *IMAGE, "cmyk.jpg", fragment="cmyk.jpg: CMYK"),
    case("image-animated", *IMAGE, "animated.gif", fragment="animated.gif: animated"),
    case("image-tiny", *IMAGE, "tiny.png", fragment="tiny.png: image is 8x8"),
    case("image-pixel-cap", *IMAGE, "--max-pixels", "100", "good.png", fragment="good.png:"),
    case("image-folder", *IMAGE, "folder", fragment="'folder' is a directory"),
    case("image-empty", *IMAGE, "empty.png", fragment="empty.png:"),
    case("image-out-suffix", *IGEN, "--scheme", "prc", "--out", "out.xyz", fragment="out.xyz: unsupported image format"),
    case("image-out-no-suffix", *IGEN, "--scheme", "prc", "--out", "out", fragment="out: unsupported image format"),
    case("image-payload-zero-bit", *IGEN, "--scheme", "tree-ring", "--payload", "beef", "--out", "o.png",
         fragment="--payload: tree-ring is a zero-bit scheme"),
    case("image-payload-not-hex", *IGEN, "--scheme", "prc", "--payload", "zz!!", "--out", "o.png",
         fragment="--payload: must be hex"),
    case("image-out-exists", *IGEN, "--scheme", "prc", "--out", "good.png", fragment="good.png: already exists"),
    case("image-verify-anchors", "image", "verify", "--trust-anchors", "/dev/zero", "good.png", fragment="/dev/zero"),
    case("image-verify-format", "image", "verify", "good.bmp", fragment="good.bmp: Content Credentials support"),
    case("image-sign-cert", "image", "sign", *KEY, "--scheme", "prc", "--cert", "human.txt", "--private-key",
         "human.txt", "--out", "signed.png", "good.png", fragment="human.txt: holds no PEM certificate"),
    case("image-model-not-a-pipeline", *IMAGE, "--model", "folder", "good.png",
         fragment="folder is not a local diffusers pipeline folder"),
    case("image-captioner-not-a-model", *IGEN, "--scheme", "seal", "--captioner", "folder", "--out", "o.png",
         fragment="folder is not a local transformers image-to-text folder"),
    case("image-dtype", *IMAGE, "--dtype", "half", "good.png", fragment="--dtype"),
    case("image-inspect-model", "image", "inspect", "--model", "folder",
         fragment="folder is not a local diffusers pipeline folder"),
    case("image-inspect-missing-model", "image", "inspect", "--model", "missing",
         fragment="missing is not a local diffusers pipeline folder"),
    case("image-inspect-device", "image", "inspect", "--device", "bogus", fragment="unknown device 'bogus'"),
    case("image-inspect-dtype", "image", "inspect", "--dtype", "float8", fragment="--dtype"),
    # -- videos ------------------------------------------------------------------------
    case("video-png", *VIDEO, "good.png", fragment="good.png: an image, not a video"),
    case("video-png-renamed", *VIDEO, "image.mp4", fragment="image.mp4: an image, not a video"),
    case("video-truncated-mp4", *VIDEO, "cut.mp4", fragment="cut.mp4:"),
    case("video-random-bytes", *VIDEO, "noise.mp4", fragment="noise.mp4:"),
    case("video-empty", *VIDEO, "empty.mp4", fragment="empty.mp4:"),
    case("video-empty-folder", *VIDEO, "folder", fragment="folder:"),
    case("video-frame-cap", *VIDEO, "--max-frames", "2", "clip.mp4", fragment="clip.mp4:"),
    case("video-fifo", *VIDEO, "fifo", fragment="fifo: not a regular file"),
    case("video-out-suffix", "video", "generate", *KEY, "--prompt", "a red star", "--out", "out.avi",
         fragment="out.avi: unsupported video format"),
    case("video-verify-gif", "video", "verify", "clip.gif", fragment="clip.gif: Content Credentials support"),
    case("video-model-not-a-pipeline", *VIDEO, "--model", "folder", "clip.mp4",
         fragment="folder is not a local diffusers pipeline folder"),
    case("video-device", *VIDEO, "--device", "bogus", "clip.mp4", fragment="unknown device 'bogus'"),
    # -- attacks -----------------------------------------------------------------------
    case("attack-unknown", "attack", "image", "--name", "nope", "--out", "o.png", "good.png", fragment="nope"),
    case("attack-strength", "attack", "image", "--name", "jpeg", "--strength", "500", "--out", "o.png", "good.png",
         fragment="strength 500 outside"),
    case("attack-strength-nan", "attack", "image", "--name", "jpeg", "--strength", "nan", "--out", "o.png", "good.png",
         fragment="strength nan outside"),
    case("attack-wrong-modality", "attack", "text", "--name", "jpeg", "--out", "o.txt", "human.txt",
         fragment="'jpeg' is for image"),
    case("attack-image-out-suffix", "attack", "image", "--name", "jpeg", "--out", "o.xyz", "good.png",
         fragment="o.xyz: unsupported image format"),
    case("attack-image-truncated", "attack", "image", "--name", "jpeg", "--out", "o.png", "cut.jpg",
         fragment="cut.jpg: truncated"),
    case("attack-video-out-suffix", "attack", "video", "--name", "frame-drop", "--out", "o.avi", "clip.mp4",
         fragment="o.avi: unsupported video format"),
    case("attack-text-empty", "attack", "text", "--name", "word-deletion", "--out", "o.txt", "empty.txt",
         fragment="empty.txt: empty text"),
    case("attack-text-out-exists", "attack", "text", "--name", "word-deletion", "--out", "human.txt", "human.txt",
         fragment="human.txt: already exists"),
    # -- audits ------------------------------------------------------------------------
    case("audit-strengths", "audit", "--modality", "image", "--schemes", "prc", "--attacks", "jpeg", "--strengths",
         "a,b", "--n", "1", "--out", "audit", fragment="--strengths"),
    case("audit-scheme", "audit", "--modality", "image", "--schemes", "nope", "--attacks", "jpeg", "--n", "1",
         "--out", "audit", fragment="nope"),
    case("audit-attack-modality", "audit", "--modality", "text", "--schemes", "kgw", "--attacks", "jpeg", "--n", "1",
         "--out", "audit", fragment="'jpeg' is for image"),
    case("audit-levels", "audit", "--modality", "image", "--schemes", "prc", "--attacks", "jpeg", "--levels", "0",
         "--out", "audit", fragment="--levels"),
    case("audit-out-is-file", "audit", "--modality", "image", "--schemes", "prc", "--attacks", "jpeg", "--n", "1",
         "--out", "human.txt", fragment="human.txt"),
    # -- environment and usage ---------------------------------------------------------
    case("env-threads-zero", "keys", "show", "key.json", env={"PROVENANCE_THREADS": "0"}, fragment="PROVENANCE_THREADS"),
    case("env-threads-text", "keys", "show", "key.json", env={"PROVENANCE_THREADS": "many"},
         fragment="PROVENANCE_THREADS"),
    case("env-device-bogus", "keys", "show", "key.json", env={"PROVENANCE_DEVICE": "bogus"},
         fragment="PROVENANCE_DEVICE: unknown device"),
    case("env-device-no-cuda", "keys", "show", "key.json", env={"PROVENANCE_DEVICE": "cuda"},
         fragment="PROVENANCE_DEVICE"),
    case("usage-unknown-option", "keys", "show", "--bogus", "key.json", fragment="--bogus"),
    case("usage-missing-option", "text", "detect", "--scheme", "kgw", "human.txt", fragment="--key"),
    case("usage-extra-argument", "keys", "new", "--out", "x.json", "extra", fragment="extra"),
    case("usage-unknown-command", "frobnicate", fragment="frobnicate"),
]


def _key_variants(folder: Path) -> None:
    key = WatermarkKey.from_seed("hostile")
    key.save(folder / "key.json")
    good = json.loads((folder / "key.json").read_text())

    def write(name: str, text: str) -> None:
        (folder / name).write_text(text, encoding="utf-8")

    write("created_digits.json", json.dumps({**good, "created": 0}).replace('"created": 0', '"created": ' + "9" * 400))
    write("created_inf.json", json.dumps({**good, "created": 0}).replace('"created": 0', '"created": 1e400'))
    write("created_nan.json", json.dumps({**good, "created": 0}).replace('"created": 0', '"created": NaN'))
    write("created_bool.json", json.dumps({**good, "created": True}))
    write("created_negative.json", json.dumps({**good, "created": -5}))
    write("deep.json", "[" * 30_000 + "]" * 30_000)
    write("deep_big.json", "[" * 200_000 + "]" * 200_000)
    write("truncated.json", (folder / "key.json").read_text()[:40])
    write("wrong_format.json", json.dumps({**good, "format": "something-else"}))
    write("short_secret.json", json.dumps({**good, "secret": "00ff", "key_id": None}))
    write("mismatch.json", json.dumps({**good, "key_id": "0" * 16}))
    write("label_control.json", json.dumps({**good, "label": "evil\x1b[2J"}))
    write("version.json", json.dumps({**good, "version": 2}))
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00\x01" * 10)
    with open(folder / "huge.json", "wb") as handle:
        handle.truncate(1 << 20)


def _texts(folder: Path) -> None:
    (folder / "human.txt").write_text(HUMAN, encoding="utf-8")
    (folder / "long.txt").write_text(HUMAN * 20, encoding="utf-8")
    (folder / "empty.txt").write_text(" \n\t\n", encoding="utf-8")
    (folder / "digits.txt").write_text("1234 5678, 90.\n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "nul.txt").write_bytes(b"plain words\x00and a NUL byte")
    (folder / "mixed.jsonl").write_text(f'{json.dumps({"text": HUMAN})}\n{{"text": \n"{HUMAN}"\n', encoding="utf-8")
    (folder / "null.jsonl").write_text('{"text": null}\n', encoding="utf-8")
    (folder / "ids.jsonl").write_text('{"text": [1, 2, 3]}\n', encoding="utf-8")
    (folder / "deep_line.jsonl").write_text("[" * 200_000 + "]" * 200_000 + "\n", encoding="utf-8")
    (folder / "blank.jsonl").write_text("\n\n", encoding="utf-8")
    (folder / "docs.jsonl").write_text("\n".join(json.dumps(HUMAN[i:]) for i in range(3)) + "\n", encoding="utf-8")


def _images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "good.png"), rgb)
    cv2.imwrite(str(folder / "good.bmp"), rgb)
    _, jpeg = cv2.imencode(".jpg", rgb)
    (folder / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    png = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "image.mp4").write_bytes(png)
    (folder / "noise.png").write_bytes(rng.bytes(4096))
    (folder / "empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "gray.png"), rgb[..., 0])
    Image.fromarray(np.stack([rgb[..., 0], np.full((64, 64), 255, np.uint8)], -1), "LA").save(folder / "gray_alpha.png")
    translucent = np.concatenate([rgb, np.full((64, 64, 1), 128, np.uint8)], -1)
    cv2.imwrite(str(folder / "translucent.png"), translucent)
    cv2.imwrite(str(folder / "deep.png"), rgb.astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    frames = [Image.fromarray(np.roll(rgb, i, axis=0)) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    cv2.imwrite(str(folder / "tiny.png"), rgb[:8, :8])


def _videos(folder: Path) -> None:
    rng = np.random.default_rng(1)
    frames = (rng.random((8, 64, 64, 3)) * 255).astype(np.uint8)
    for name, codec, pixel_format in (("clip.mp4", "libx264", "yuv420p"), ("clip.gif", "gif", "rgb8")):
        with av.open(str(folder / name), mode="w") as container:
            stream = container.add_stream(codec, rate=8)
            stream.width, stream.height, stream.pix_fmt = 64, 64, pixel_format
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    data = (folder / "clip.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    (folder / "noise.mp4").write_bytes(rng.bytes(8192))
    (folder / "empty.mp4").write_bytes(b"")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones included) with a digest of its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        out[name] = ("dir" if path.is_dir() else "fifo" if path.is_fifo()
                     else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once, two at a time, against one folder of hostile inputs; the folder's
    snapshots before and after."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "folder").mkdir()
    os.mkfifo(folder / "fifo")
    _key_variants(folder)
    _texts(folder)
    _images(folder)
    _videos(folder)
    before = _snapshot(folder)
    completed = run_many(folder, [(c.args, {"PROVENANCE_THREADS": "1", **c.env}) for c in CASES])
    return dict(zip((c.id for c in CASES), completed)), before, _snapshot(folder)


def test_the_table_covers_every_command_family():
    families = {c.args[0] if c.args[0] != "keys" or c.env else "keys" for c in CASES}
    assert {"keys", "text", "image", "video", "attack", "audit", "dataset"} <= families
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("hostile", CASES, ids=lambda c: c.id)
def test_hostile_input_gets_one_error_line_and_no_verdict(outcomes, hostile):
    ran, _, _ = outcomes
    result = ran[hostile.id]
    stderr_lines = result.stderr.strip().splitlines()
    assert result.returncode == hostile.code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    assert len(stderr_lines) == hostile.errors and all(line.startswith("error: ") for line in stderr_lines), \
        result.stderr[-2000:]
    assert hostile.fragment in result.stderr, result.stderr
    assert len(VERDICT.findall(result.stdout)) == hostile.verdicts, result.stdout
    assert WatermarkKey.from_seed("hostile").secret.hex() not in result.stdout + result.stderr


def test_hostile_inputs_leave_every_file_as_it_was(outcomes):
    _, before, after = outcomes
    assert after == before
