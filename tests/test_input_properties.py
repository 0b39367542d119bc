"""Property-based tests (hypothesis, derandomised: the same examples every run) for the input
parsers and the detectors' input validation.

The properties: a parser given anything returns a well-formed value or raises its one
``InputError`` (never another exception, never a traceback); valid input round-trips exactly;
random bytes handed to the CLI as an image, a video or a text never produce a verdict.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from attacks.cli import _strengths
from image_wm.image_io import decode_image
from image_wm.video.video_io import read_video
from provenance.cli_support import ByteSize
from provenance.keys import KeyFileError, WatermarkKey
from provenance.readers import InputError, is_jsonl, parse_payload_hex, read_text, read_text_inputs

PARSER_EXAMPLES = 300
MEDIA_EXAMPLES = 100
CLI_EXAMPLES = 25
parsers = settings(max_examples=PARSER_EXAMPLES, derandomize=True, deadline=None, database=None)
media = settings(max_examples=MEDIA_EXAMPLES, derandomize=True, deadline=None, database=None)
commands = settings(max_examples=CLI_EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
GOOD_KEY = WatermarkKey.from_seed("properties").to_dict()


def _file(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hypothesis-"))
    (folder / name).write_bytes(data)
    return folder / name


@parsers
@given(st.binary(max_size=600))
def test_key_file_of_random_bytes_is_a_key_or_one_key_file_error(data):
    try:
        key = WatermarkKey.load(_file(data, "key.json"))
    except KeyFileError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith(str(exc.source))
    else:
        assert len(key.secret) == 32


@parsers
@given(st.sampled_from(sorted(GOOD_KEY)), json_values)
def test_key_file_with_any_field_replaced_loads_only_when_still_valid(field, value):
    data = json.dumps({**GOOD_KEY, field: value}).encode()
    try:
        key = WatermarkKey.load(_file(data, "key.json"))
    except KeyFileError as exc:
        assert len(str(exc).splitlines()) == 1 and GOOD_KEY["secret"] not in str(exc)
    else:  # it loaded: every field it kept is one a key may have
        assert key.to_dict()["secret"] == GOOD_KEY["secret"] or field == "secret"
        assert 0 <= key.created <= 253402300799 and (key.label is None or key.label.isprintable())


@parsers
@given(st.lists(st.text(max_size=60).filter(str.strip), min_size=1, max_size=6))
def test_jsonl_records_round_trip_exactly(texts):
    rows = [json.dumps(t) if i % 2 else json.dumps({"text": t, "other": i}) for i, t in enumerate(texts)]
    path = _file("\n".join(rows).encode(), "records.jsonl")
    inputs = read_text_inputs([str(path)])
    assert [i.name for i in inputs] == [f"{path}:{n}" for n in range(1, len(texts) + 1)]
    assert [i.text for i in inputs] == texts and all(i.error is None for i in inputs)


@parsers
@given(st.binary(max_size=400))
def test_jsonl_of_random_bytes_gives_exactly_one_of_text_or_error_per_input(data):
    for item in read_text_inputs([str(_file(data, "random.jsonl"))]):
        assert (item.text is None) != (item.error is None)
        if item.error is not None:
            assert len(str(item.error).splitlines()) == 1 and str(item.error).startswith(item.name)
        else:
            assert isinstance(item.text, str) and item.text.strip()


@parsers
@given(st.text(max_size=40), st.integers(0, 8))
def test_payload_hex_parses_to_exactly_its_bytes_or_one_error(value, size):
    try:
        payload = parse_payload_hex(value, size, "scheme")
    except InputError as exc:
        assert exc.source == "--payload" and len(str(exc).splitlines()) == 1
    else:
        assert len(payload) == size and payload.hex() == value.strip().lower()


@parsers
@given(st.binary(min_size=1, max_size=8))
def test_payload_hex_round_trips(payload):
    assert parse_payload_hex(payload.hex(), len(payload), "scheme") == payload
    assert parse_payload_hex(payload.hex().upper(), len(payload), "scheme") == payload


@parsers
@given(st.text(max_size=40))
def test_strengths_are_finite_numbers_or_one_error(value):
    try:
        parsed = _strengths(value)
    except InputError as exc:
        assert exc.source == "--strengths"
    else:
        assert parsed and all(np.isfinite(parsed))


@parsers
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=5))
def test_strengths_round_trip(values):
    assert _strengths(",".join(repr(float(v)) for v in values)) == [float(v) for v in values]


@parsers
@given(st.text(max_size=12))
def test_byte_sizes_parse_or_fail_as_usage_errors(value):
    import click

    try:
        size = ByteSize().convert(value, None, None)
    except click.BadParameter:
        pass
    else:
        assert isinstance(size, int) and size >= 1


@parsers
@given(st.binary(max_size=300))
def test_random_bytes_as_text_are_text_or_one_error(data):
    try:
        text = read_text(_file(data, "in.txt"))
    except InputError as exc:
        assert len(str(exc).splitlines()) == 1
    else:
        assert text.strip() and data.decode("utf-8-sig") == text


@media
@given(st.binary(max_size=2000), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                                  b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II*\x00"]))
def test_random_bytes_as_an_image_never_decode(data, magic):
    try:
        decode_image(magic + data, "random")
    except InputError as exc:
        assert str(exc).startswith("random: ") and len(str(exc).splitlines()) == 1
    else:
        raise AssertionError("random bytes decoded as an image")


@media
@given(st.binary(max_size=3000), st.sampled_from([b"", b"\x00\x00\x00\x18ftypisom", b"\x1aE\xdf\xa3", b"GIF89a"]))
def test_random_bytes_as_a_video_never_decode(data, magic):
    path = _file(magic + data, "random.mp4")
    try:
        read_video(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and len(str(exc).splitlines()) == 1
    else:
        raise AssertionError("random bytes decoded as a video")


@commands
@given(st.binary(max_size=1500), st.sampled_from(["image", "video"]))
def test_cli_gives_random_media_an_error_and_no_verdict(data, modality):
    key = _file(json.dumps(GOOD_KEY).encode(), "key.json")
    path = _file(data, "input.png" if modality == "image" else "input.mp4")
    args = ["image", "detect", "--scheme", "prc"] if modality == "image" else ["video", "detect"]
    result = CliRunner().invoke(cli.main, [*args, "--key", str(key), "--json", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "p_value" not in result.output
    record = json.loads(result.stdout)
    assert set(record) == {"input", "error"} and record["input"] == str(path)


def test_a_file_is_json_lines_by_its_name_only():
    assert is_jsonl("a.jsonl") and is_jsonl("b.NDJSON") and not is_jsonl("c.json") and not is_jsonl("d.txt")
    with tempfile.TemporaryDirectory() as folder:
        looks_like_json = Path(folder) / "plain.txt"
        looks_like_json.write_text('{"text": "scored as the JSON text it is"}\n', encoding="utf-8")
        [item] = read_text_inputs([str(looks_like_json)])
        assert item.text == looks_like_json.read_text(encoding="utf-8")
