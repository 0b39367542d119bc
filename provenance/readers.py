"""Strict, bounded readers for everything a user hands the toolkit: key files, texts, JSON lines.

Why strict: a detector that scores what it could not read properly gives a verdict on content
it never saw. Every reader here either returns exactly what the file holds or raises
``InputError`` with one line that names the input (``<path>: <what is wrong>``).

Why bounded: input comes from anyone. Every read is capped before the bytes are read (a 1 GB
"key file", ``/dev/zero`` or a FIFO never reaches memory or hangs), JSON is depth-capped, and
only regular files are opened. The caps are the ``MAX_*`` constants below; commands that read
large content offer options to raise theirs.

Media readers (images, videos) live beside their decoders (``image_wm.image_io``,
``image_wm.video.video_io``) and open files through ``open_regular_file`` here.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from provenance.files import check_new_output

MAX_KEY_BYTES = 64 * 1024
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_JSONL_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 64
STDIN = "-"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# C0 controls other than tab, newline, carriage return and form feed mark binary content, not text.
_BINARY_CONTROLS = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D}


class InputError(ValueError):
    """Input that cannot be used as given: unreadable, malformed, out of range or too large.

    The message is one line that starts with the input's name (a path, ``file:line`` or an
    option) and never quotes secret material.
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def one_line(message: object, limit: int = 200) -> str:
    """``message`` (an exception, a library's complaint) as one short printable line for an error
    message: whitespace collapsed, control characters replaced, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = message.__class__.__name__
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def format_size(n_bytes: int) -> str:
    """``n_bytes`` as a short human figure (``4 MiB``, ``512 KiB``, ``17 bytes``)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= size and n_bytes % size == 0:
            return f"{n_bytes // size} {unit}"
    return f"{n_bytes} bytes"


def open_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading, after checking it is a regular file of at most ``max_bytes``.

    Opened non-blocking, so a FIFO swapped in after the check cannot hang the reader, and checked
    on the open descriptor, so the file read is the file checked.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not a {what}") from None
    except OSError as exc:
        raise InputError(path, f"cannot open {what} ({exc.strerror or exc.__class__.__name__})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, f"is a folder, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, f"not a regular file (a device, pipe or socket cannot be a {what})")
        if info.st_size > max_bytes:
            raise InputError(path, f"{what} is {format_size(info.st_size)}, over the {format_size(max_bytes)} limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited_bytes(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """All bytes of a regular file of at most ``max_bytes`` (a file growing past the cap is refused too)."""
    with open_regular_file(path, max_bytes, what) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(path, f"cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise InputError(path, f"{what} is over the {format_size(max_bytes)} limit")
    return data


def _read_stdin(max_bytes: int) -> bytes:
    data = sys.stdin.buffer.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError("<stdin>", f"over the {format_size(max_bytes)} limit")
    return data


def decode_text(data: bytes, source: object) -> str:
    """Strict UTF-8 text (a leading byte-order mark dropped); binary content is refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    binary = next((i for i, ch in enumerate(text) if ord(ch) in _BINARY_CONTROLS), None)
    if binary is not None:
        raise InputError(source, f"binary content, not text (control character U+{ord(text[binary]):04X} "
                                 f"at character {binary})")
    return text


def read_text(name: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A non-empty UTF-8 text file (or ``-`` for standard input) of at most ``max_bytes``."""
    source = "<stdin>" if str(name) == STDIN else name
    data = _read_stdin(max_bytes) if str(name) == STDIN else read_limited_bytes(name, max_bytes, "text file")
    text = decode_text(data, source)
    if not text.strip():
        raise InputError(source, "empty text")
    return text


def parse_json(text: str | bytes, source: object, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One JSON value, refusing what Python's parser would take but no user means: ``NaN`` and
    infinities, numbers too long to be numbers, and nesting deeper than ``max_depth``."""
    def refuse_constant(name: str) -> Any:
        raise InputError(source, f"JSON holds {name}, which is not a number")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise InputError(source, f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise InputError(source, "not UTF-8 text") from None
    except ValueError as exc:  # Python's cap on the digits of an integer
        raise InputError(source, f"JSON holds a number too long to read ({str(exc).split(';')[0]})") from None
    if _depth(value) > max_depth:
        raise InputError(source, f"JSON nested deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_json_file(path: str | os.PathLike, max_bytes: int, what: str = "JSON file") -> Any:
    """One JSON value from a bounded regular file."""
    data = read_limited_bytes(path, max_bytes, what)
    return parse_json(decode_text(data, path), path)


@dataclass(frozen=True)
class TextInput:
    """One text to score: ``name`` is the file, or ``file:line`` for a JSON-lines record.

    Exactly one of ``text`` and ``error`` is set: an input that could not be read carries the
    reason and is never scored.
    """

    name: str
    text: str | None = None
    error: InputError | None = None


def is_jsonl(name: str | os.PathLike) -> bool:
    """JSON lines are recognised by the file name alone (``.jsonl``, ``.ndjson``), never by trying to
    parse: a plain text that happens to look like JSON is scored as the text it is."""
    return Path(str(name)).suffix.lower() in JSONL_SUFFIXES


def check_jsonl_output(path: str | os.PathLike, force: bool, what: str) -> Path:
    """An output of ``what`` (records, documents) checked before any work: a JSON-lines name, and no
    existing file unless ``force``."""
    if not is_jsonl(path):
        raise InputError(path, f"{what} are JSON lines: name the file {' or '.join(JSONL_SUFFIXES)}")
    return check_new_output(path, force)


def iter_jsonl(name: str | os.PathLike, data: str, field: str = "text") -> Iterator[tuple[int, Any, str | InputError]]:
    """``(line number, parsed row, text or error)`` for each non-blank line of a JSON-lines document.

    A row is a JSON string, or an object whose ``field`` is a string; any other line is an error
    naming ``file:line``, reported in place of that record (the other records are unaffected).
    """
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{name}:{number}"
        try:
            row = parse_json(line, source)
        except InputError as exc:
            yield number, None, exc
            continue
        if isinstance(row, str):
            text: Any = row
        elif isinstance(row, dict) and field in row:
            text = row[field]
            if not isinstance(text, str):
                kind = "null" if text is None else type(text).__name__
                yield number, row, InputError(source, f"\"{field}\" must be a string, not {kind}")
                continue
        else:
            yield number, row, InputError(source, f"expected a JSON string or an object with a \"{field}\" field")
            continue
        yield number, row, (text if text.strip() else InputError(source, "empty text"))


def read_text_inputs(names: Sequence[str], max_bytes: int = MAX_TEXT_BYTES) -> list[TextInput]:
    """Every text in ``names``: plain text files (``-`` for standard input) and JSON-lines files
    (``.jsonl``/``.ndjson``, one record per line, e.g. from ``text generate --out``).

    A plain file that cannot be read, or a JSON-lines line that is malformed, becomes one error
    input; nothing is dropped silently. ``max_bytes`` caps each plain text and each record's
    text; a JSON-lines file may hold up to ``MAX_JSONL_BYTES``.
    """
    inputs: list[TextInput] = []
    for name in names:
        try:
            if not is_jsonl(name):
                inputs.append(TextInput(str(name), read_text(name, max_bytes)))
                continue
            data = decode_text(read_limited_bytes(name, MAX_JSONL_BYTES, "JSON-lines file"), name)
        except InputError as exc:
            inputs.append(TextInput("<stdin>" if name == STDIN else str(name), error=exc))
            continue
        records = 0
        for number, _, text in iter_jsonl(name, data):
            records += 1
            source = f"{name}:{number}"
            if isinstance(text, InputError):
                inputs.append(TextInput(source, error=text))
            elif len(text.encode("utf-8")) > max_bytes:
                inputs.append(TextInput(source, error=InputError(source, f"text is over the {format_size(max_bytes)} limit")))
            else:
                inputs.append(TextInput(source, text))
        if not records:
            inputs.append(TextInput(str(name), error=InputError(name, "no records (the JSON-lines file is empty)")))
    return inputs


def read_documents(name: str | os.PathLike, max_bytes: int = MAX_JSONL_BYTES) -> tuple[list[str], list[Any]]:
    """All records of a JSON-lines corpus (strings, or objects with a ``"text"`` field) and the raw
    rows; the first malformed line is an error naming ``file:line`` (a corpus is used whole or not)."""
    data = decode_text(read_limited_bytes(name, max_bytes, "JSON-lines file"), name)
    texts, rows = [], []
    for _, row, text in iter_jsonl(name, data):
        if isinstance(text, InputError):
            raise text
        texts.append(text)
        rows.append(row)
    if not rows:
        raise InputError(name, "no documents")
    return texts, rows


def parse_payload_hex(value: str | None, payload_bytes: int, scheme: str, option: str = "--payload") -> bytes | None:
    """A payload given as hex for ``scheme``, which carries ``payload_bytes`` bytes (0: none).

    Checked before any model loads: a payload for a zero-bit scheme, non-hex digits and a wrong
    length are each an ``InputError`` naming the option.
    """
    if value is None:
        return None
    if payload_bytes == 0:
        raise InputError(option, f"{scheme} is a zero-bit scheme and carries no payload")
    digits = value.strip()
    shown = digits if len(digits) <= 40 else digits[:40] + "..."
    if len(digits) != 2 * payload_bytes:
        raise InputError(option, f"{scheme} carries exactly {payload_bytes} bytes ({2 * payload_bytes} hex digits), "
                                 f"got {len(digits)} characters")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise InputError(option, f"must be hex digits, got {shown!r}") from None
