"""Strict, bounded readers (provenance.readers): what each refuses, in one line naming the input."""

from __future__ import annotations

import os

import pytest

from provenance.readers import InputError, parse_json, read_documents, read_limited_bytes, read_text, read_text_inputs


@pytest.mark.timeout(20)
def test_special_files_are_refused_without_reading_or_waiting(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, fragment in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                           (tmp_path, "is a folder"), (tmp_path / "none", "no such file")):
        with pytest.raises(InputError, match=fragment) as refused:
            read_limited_bytes(path, 1024)
        assert str(refused.value).startswith(f"{path}: ")


def test_a_file_over_its_cap_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:
        handle.truncate(5 << 20)
    with pytest.raises(InputError, match="5 MiB, over the 4 MiB limit"):
        read_text(big)
    assert read_limited_bytes(big, 5 << 20)[:4] == b"\0\0\0\0"


def test_json_refuses_depth_nan_and_endless_digits():
    assert parse_json("[[1]]", "x") == [[1]]
    with pytest.raises(InputError, match="nested deeper than 64"):
        parse_json("[" * 65 + "]" * 65, "x")
    with pytest.raises(InputError, match="nested deeper than 64"):
        parse_json("[" * 100_000 + "]" * 100_000, "x")  # past the interpreter's recursion limit
    with pytest.raises(InputError, match="NaN, which is not a number"):
        parse_json('{"a": NaN}', "x")
    with pytest.raises(InputError, match="number too long"):
        parse_json("9" * 5000, "x")


def test_jsonl_lines_are_inputs_of_their_own(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"text": "one"}\n\n{"text": 3}\n"two"\n{"other": 1}\n', encoding="utf-8")
    inputs = read_text_inputs([str(path)])
    assert [(i.name.rsplit(":", 1)[1], i.text) for i in inputs] == [("1", "one"), ("3", None), ("4", "two"),
                                                                   ("5", None)]
    assert "\"text\" must be a string, not int" in str(inputs[1].error)
    with pytest.raises(InputError, match=r"records.jsonl:3: \"text\" must be a string"):
        read_documents(path)


def test_standard_input_is_bounded(monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * 2048)))
    with pytest.raises(InputError, match="<stdin>: over the 1 KiB limit"):
        read_text("-", max_bytes=1024)
