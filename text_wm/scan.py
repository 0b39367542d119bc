"""Texts in a dataset scan (``provenance scan``): reading text datasets (JSON lines, CSV, Parquet)
row by row, and the Ray actor that runs the text watermark detectors on them.

A dataset is read in the driver, strictly: a file that cannot be read at all is one error item,
a row whose text is missing, not a string, empty or over the size cap is an error item naming
``file:row``; every other row is a text item. Sampler watermarks score each unit in one
vectorised pass (``detect_batch``, equal to ``detect`` per text); the black-box watermark scores
text by text.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from provenance.cli_support import error_line
from provenance.models import load_tokenizer
from provenance.readers import (InputError, decode_text, format_size, iter_jsonl, open_regular_file,
                                read_limited_bytes)
from provenance.result import DetectionResult
from provenance.scan.engine import Unit, UnitScorer
from provenance.scan.rows import ScanSpec, content_hash, spec_rows
from text_wm.base import TokenWatermark
from text_wm.canonical import detect_forms
from text_wm.registry import get_scheme, load_key

MODALITY = "text"
DATASET_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")
MAX_DATASET_BYTES = 1 << 30  # one dataset file, read whole in the driver


def is_text_dataset(path: str | Path) -> bool:
    return Path(path).suffix.lower() in DATASET_SUFFIXES


def _column(table: pa.Table, name: str, source: object) -> list[Any]:
    if name not in table.column_names:
        raise InputError(source, f"no column {name!r} (columns: {', '.join(table.column_names[:8])})")
    return table.column(name).to_pylist()


def _rows(path: str, column: str) -> Iterator[tuple[str, str | InputError]]:
    """``(file:row, text or error)`` for each row of one dataset file (rows numbered from 1: the line
    of a JSON-lines file, the data row of a CSV or Parquet file)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        data = decode_text(read_limited_bytes(path, MAX_DATASET_BYTES, "JSON-lines file"), path)
        for number, _, text in iter_jsonl(path, data, field=column):
            yield f"{path}:{number}", text
        return
    with open_regular_file(path, MAX_DATASET_BYTES, "dataset") as handle:
        try:
            table = pq.read_table(handle, columns=[column]) if suffix == ".parquet" else \
                pa_csv.read_csv(handle, convert_options=pa_csv.ConvertOptions(include_columns=[column],
                                                                            column_types={column: pa.string()}))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError, OSError) as exc:
            raise InputError(path, f"not a readable {suffix[1:].upper()} dataset with a {column!r} column: "
                                   f"{str(exc).splitlines()[0][:120]}") from None
    for number, text in enumerate(_column(table, column, path), start=1):
        source = f"{path}:{number}"
        if not isinstance(text, str):
            yield source, InputError(source, f"{column!r} must be a string, not {type(text).__name__}")
        else:
            yield source, text if text.strip() else InputError(source, "empty text")


def read_dataset(path: str, column: str, max_text_bytes: int) -> list[dict[str, Any]]:
    """The items of one dataset file: ``{"item", "text"}`` or ``{"item", "error"}`` each; a file that
    cannot be read at all, or holds no rows, is one error item."""
    items = []
    try:
        for source, text in _rows(path, column):
            if not isinstance(text, InputError) and len(text.encode("utf-8")) > max_text_bytes:
                text = InputError(source, f"text is over the {format_size(max_text_bytes)} limit")
            items.append({"item": source, "error": error_line(source, text)} if isinstance(text, InputError)
                         else {"item": source, "text": text})
    except (ValueError, OSError) as exc:
        return [{"item": path, "error": error_line(path, exc)}]
    return items or [{"item": path, "error": f"{path}: no rows"}]


class TextScorer(UnitScorer):
    """Detects every text watermark of ``specs`` in each unit of text items; ``model`` is the folder
    whose tokenizer made the texts (None: the default LM); ``done`` as for ``ImageScorer``."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], model: str | None, done: Mapping[str, Sequence[str]],
                 threads: int = 1) -> None:
        super().__init__(threads)
        self.specs = [ScanSpec.from_dict(spec) for spec in specs]
        self.model = model
        self.done = {settings: set(hashes) for settings, hashes in done.items()}
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model)
        return self._tokenizer

    def detect(self, spec: ScanSpec, texts: list[str]) -> list[DetectionResult]:
        """``spec``'s verdicts on ``texts`` as received and in canonical form (``text_wm.canonical``):
        one vectorised pass a form for sampler watermarks."""
        watermark, key = get_scheme(spec.scheme), load_key(spec.scheme, spec.key_file)

        def detect(batch: Sequence[str], level: float) -> list[DetectionResult]:
            if isinstance(watermark, TokenWatermark):
                return watermark.detect_batch(batch, key, self.tokenizer, fpr=level)
            return [watermark.detect(text, key, self.tokenizer, fpr=level) for text in batch]

        return detect_forms(detect, texts, spec.settings["fpr"])

    def score(self, items: Unit) -> list[dict[str, Any]]:
        read = [(item["item"], None, ValueError(item["error"])) if "error" in item
                else (item["item"], content_hash(item["text"].encode("utf-8")), item["text"]) for item in items]
        return [row for spec in self.specs for row in spec_rows(spec, read, self.done,
                                                                functools.partial(self.detect, spec))]


__all__ = ["TextScorer", "read_dataset", "is_text_dataset"]
