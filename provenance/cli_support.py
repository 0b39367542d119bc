"""What every command that scores several inputs shares: one outcome per input, an error record
for each input that could not be scored, and the exit code that says whether all were.

The contract (README, "Errors and exit codes"): a command scores every input it can read. An
input it cannot read or score gets exactly one line ``error: <input>: <what is wrong>`` on
stderr and, with ``--json``, an ``{"input": ..., "error": ...}`` object in place of its verdict
on stdout; it never gets a verdict. The exit code is 0 when every input was scored, 2 when one
or more were not (the others' verdicts are still printed).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from provenance.readers import MAX_TEXT_BYTES, InputError, format_size, one_line

T = TypeVar("T")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
Outcome = tuple[str, Any]  # (input name, a result, or the exception that kept it from one)


def error_line(name: str, exc: BaseException) -> str:
    """``<input>: <what is wrong>`` in one line; an ``InputError`` already names its input."""
    message = one_line(exc, 400)
    if isinstance(exc, InputError) or message.startswith(f"{name}:"):
        return message
    return f"{name}: {message}"


def attempt(name: str, work: Callable[[], T]) -> T | ValueError | OSError:
    """``work()``, or the bad-input error (``ValueError``/``OSError``) it raised for input ``name``."""
    try:
        return work()
    except (ValueError, OSError) as exc:
        return exc


def score_all(inputs: list[tuple[str, Any]],
              score_batch: Callable[[list[Any]], list[T]]) -> list[T | ValueError | OSError]:
    """Score readable inputs in one batch; when the batch fails on some input, score each alone so
    only the inputs that cannot be scored get an error."""
    try:
        scored: list[T | ValueError | OSError] = list(score_batch([content for _, content in inputs])) if inputs else []
        return scored
    except (ValueError, OSError):
        return [attempt(name, functools.partial(_score_one, score_batch, content)) for name, content in inputs]


def _score_one(score_batch: Callable[[list[Any]], list[T]], content: Any) -> T:
    return score_batch([content])[0]


def detect_outcomes(read: list[Outcome], detector: Callable[[], Callable[[list[Any]], list[Any]]]) -> list[Outcome]:
    """Each input's result, or the error that kept it from one. ``read`` holds each input's content
    or its read error; ``detector()`` (which loads the model) is called only when some input was
    readable, and its batch function scores the readable ones."""
    readable = [(name, content) for name, content in read if not isinstance(content, BaseException)]
    scored = iter(score_all(readable, detector()) if readable else [])
    return [(name, content if isinstance(content, BaseException) else next(scored)) for name, content in read]


def report(outcomes: Iterable[Outcome], as_json: bool, describe: Callable[[str, Any], str],
           as_dict: Callable[[Any], dict[str, Any]] = lambda result: result.to_dict()) -> None:
    """Print each outcome in order (a verdict line or JSON object; an error record), then exit 2
    if any input was not scored."""
    failed = 0
    for name, outcome in outcomes:
        if isinstance(outcome, BaseException):
            failed += 1
            line = error_line(name, outcome)
            click.echo(f"error: {line}", err=True)
            if as_json:
                click.echo(json.dumps({"input": name, "error": line}))
        elif as_json:
            click.echo(json.dumps({"input": name, **as_dict(outcome)}))
        else:
            click.echo(describe(name, outcome))
    if failed:
        raise click.exceptions.Exit(2)


class ByteSize(click.ParamType):
    """A size in bytes: ``4096``, ``512K``, ``4M``, ``1G`` (binary units)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        digits = text[: len(text) - len(unit)]
        if not digits.isdigit() or len(digits) > 15 or int(digits) < 1:
            self.fail(f"{value!r} is not a size (a positive number of bytes, or with K, M or G)", param, ctx)
        return int(digits) * _UNITS[unit]


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` (which passes every range comparison) and infinities."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


max_text_bytes_option = click.option(
    "--max-text-bytes", default=MAX_TEXT_BYTES, show_default=format_size(MAX_TEXT_BYTES), type=ByteSize(),
    help="Refuse texts (files or JSON-lines records) larger than this.")
