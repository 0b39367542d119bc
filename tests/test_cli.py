import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import cli
from provenance.keys import WatermarkKey

ROOT = Path(__file__).resolve().parents[1]


def run(*args, input=None):
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def test_help_and_version_work_as_module_and_script():
    out = subprocess.run([sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "keys" in out.stdout and "text" in out.stdout
    assert "0.1.0" in run("--version").output


def test_keys_new_and_show_never_print_the_secret(tmp_path):
    path = tmp_path / "k.json"
    created = run("keys", "new", "--out", str(path), "--label", "newsroom")
    assert created.exit_code == 0, created.output
    key = WatermarkKey.load(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    shown = run("keys", "show", str(path))
    assert shown.exit_code == 0
    assert key.key_id in shown.output and "newsroom" in shown.output
    for output in (created.output, shown.output):
        assert key.secret.hex() not in output


def test_keys_new_refuses_to_overwrite(tmp_path):
    path = tmp_path / "k.json"
    assert run("keys", "new", "--out", str(path)).exit_code == 0
    before = path.read_bytes()
    again = run("keys", "new", "--out", str(path))
    assert again.exit_code == 2
    assert again.output.strip().startswith("error:") and len(again.output.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_malformed_and_missing_key_files_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "provenance-watermark-key", "version": 1, "secret": "00"}')
    for target in (bad, tmp_path / "missing.json"):
        result = run("keys", "show", str(target))
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:")


def test_info_finds_default_models():
    result = run("info")
    assert result.exit_code == 0
    assert "SmolLM2-135M-Instruct found" in result.output
    assert "all-MiniLM-L6-v2 found" in result.output


def test_text_detect_rejects_bad_input(tmp_path):
    key = tmp_path / "k.json"
    WatermarkKey.generate().save(key)
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    result = run("text", "detect", "--key", str(key), "--scheme", "kgw", str(empty))
    assert result.exit_code == 2 and "empty" in result.output
    unknown = run("text", "detect", "--key", str(key), "--scheme", "nope", str(empty))
    assert unknown.exit_code == 2
    missing = run("text", "detect", "--key", str(tmp_path / "nokey.json"), "--scheme", "kgw", str(empty))
    assert missing.exit_code == 2 and "no such key file" in missing.output


def test_text_detect_json_shape(tmp_path):
    # A seeded key: with a fresh random key this human passage is flagged at the stated 1% rate,
    # which made the assertion below fail one CI run in a hundred.
    key = tmp_path / "k.json"
    WatermarkKey.from_seed("cli-json-shape").save(key)
    human = tmp_path / "human.txt"
    human.write_text(json.loads((ROOT / "tests/data/human_passages.jsonl").read_text().splitlines()[0]))
    result = run("text", "detect", "--key", str(key), "--scheme", "kgw", "--json", str(human))
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert {"detected", "p_value", "score", "threshold", "payload", "bit_accuracy", "scheme", "key_id"} <= set(row)
    assert row["detected"] is False


def test_an_internal_error_is_one_line_with_exit_1_and_the_traceback_on_request(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a defect, not bad input")

    monkeypatch.setattr(WatermarkKey, "load", broken)
    result = CliRunner().invoke(cli.main, ["keys", "show", str(tmp_path / "k.json")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: internal error (KeyError); run again with PROVENANCE_DEBUG=1 for the traceback, and please report it"]
    monkeypatch.setenv("PROVENANCE_DEBUG", "1")
    debug = CliRunner().invoke(cli.main, ["keys", "show", str(tmp_path / "k.json")])
    assert isinstance(debug.exception, KeyError)


def test_usage_errors_are_one_line(tmp_path):
    for args in (["keys", "show"], ["keys", "show", "--nope", "x"], ["text", "detect", "x.txt"], ["frobnicate"]):
        result = CliRunner().invoke(cli.main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert "Usage:" not in result.output


def test_sigterm_while_writing_a_key_leaves_no_partial_file(tmp_path, monkeypatch):
    import signal

    real_fsync = os.fsync

    def terminated_mid_write(fd):
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", terminated_mid_write)
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(cli.main, ["keys", "new", "--out", str(tmp_path / "k.json")])
    assert result.exit_code == 143 and result.output.strip() == "error: terminated (SIGTERM)"
    assert list(tmp_path.iterdir()) == []  # neither the key nor its temporary file
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_a_payload_shown_only_for_a_detected_watermark_and_no_zero_p_value():
    from provenance.result import P_VALUE_FLOOR, DetectionResult

    undetected = DetectionResult(False, 0.97, 0.1, 3.0, 1e-6, "prc", "id", payload="beef")
    assert undetected.payload is None and undetected.details["decoded_payload"] == "beef"
    assert undetected.decoded_payload == "beef" and "payload=" not in undetected.summary()
    assert json.loads(undetected.to_json())["payload"] is None
    underflow = DetectionResult(True, 0.0, 40.0, 3.0, 1e-6, "seal", "id")
    assert underflow.p_value == P_VALUE_FLOOR > 0 and underflow.details["p_value_below"] == P_VALUE_FLOOR
    assert "p<2.23e-308" in underflow.summary()
    assert DetectionResult.from_dict(underflow.to_dict()) == underflow
