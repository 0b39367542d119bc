"""The scan folder: ``scan.json`` (what it is), ``rows.jsonl`` (every row, appended as each unit
of work comes back) and ``results.parquet`` (the rows, one per item and watermark, latest first
wins, rewritten atomically at the end of each scan).

Why an append-only log: a scan of a million items is interrupted sooner or later. Each unit's
rows are appended in one write and flushed to disk before the next is taken, so an interruption
loses at most the units in flight; a half-written last line (the process killed mid-write) is
ignored when the log is read back. A rerun reads the log, skips every item whose content hash
already has a verdict under the same settings id, and retries the items that had errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from provenance.files import atomic_file, write_text_atomic
from provenance.readers import InputError
from provenance.scan.rows import ROW_FIELDS

MANIFEST = "scan.json"
LOG = "rows.jsonl"
TABLE = "results.parquet"
FORMAT = "provenance-scan/1"


class ScanFolder:
    """An output folder holding one scan's rows, resumed by every later scan into it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], force: bool = False) -> ScanFolder:
        """A new or empty folder, or one holding a scan (resumed). A folder of other files, or a file,
        is refused unless ``force``, which starts afresh (removing only the scan's own files)."""
        folder = cls(path)
        where = folder.path
        if where.exists() and not where.is_dir():
            raise InputError(where, "exists and is not a folder")
        present = sorted(p.name for p in where.iterdir()) if where.is_dir() else []
        ours = (MANIFEST, LOG, TABLE)
        if present and MANIFEST not in present and not force:
            raise InputError(where, f"holds other files ({', '.join(present[:3])}); use a new folder or --force")
        if force:
            for name in ours:
                (where / name).unlink(missing_ok=True)
        try:
            where.mkdir(parents=True, exist_ok=True)
            if not (where / MANIFEST).exists():
                write_text_atomic(where / MANIFEST, json.dumps({"format": FORMAT}) + "\n")
        except OSError as exc:
            raise InputError(where, f"cannot write: {exc.strerror or exc}") from None
        return folder

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def table(self) -> Path:
        return self.path / TABLE

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row of the log, in the order written."""
        if not self.log.exists():
            return []
        rows = []
        with open(self.log, "rb") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by an interruption
                if isinstance(row, dict) and set(row) == set(ROW_FIELDS):
                    rows.append(row)
        return rows

    def done(self) -> dict[str, set[str]]:
        """Content hashes with a verdict, per settings id."""
        scored: dict[str, set[str]] = {}
        for row in self.rows():
            if row["error"] is None and row["content_hash"]:
                scored.setdefault(row["settings_id"], set()).add(row["content_hash"])
        return scored

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add ``rows`` to the log in one write, on disk before this returns."""
        if not rows:
            return
        data = "".join(json.dumps({name: row[name] for name in ROW_FIELDS}, allow_nan=False) + "\n" for row in rows)
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def latest(self) -> list[dict[str, Any]]:
        """One row per item and settings id: the last one written."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.rows():
            key = (row["item"], row["settings_id"])
            latest.pop(key, None)
            latest[key] = row
        return list(latest.values())

    def export(self) -> Path:
        """Write ``results.parquet`` (the latest rows) atomically and return its path."""
        table = pa.Table.from_pylist(self.latest(), schema=arrow_schema())
        with atomic_file(self.table) as temporary:
            pq.write_table(table, temporary)
        return self.table


def arrow_schema() -> pa.Schema:
    """The Parquet columns, in ``ROW_FIELDS`` order."""
    types = {"detected": pa.bool_(), "p_value": pa.float64(), "score": pa.float64(), "bit_accuracy": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in ROW_FIELDS])


def summarise(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per scheme and key: items scored, detected, errors."""
    counts: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        tally = counts.setdefault((row["scheme"], row["key_id"]), [0, 0, 0])
        if row["error"] is not None:
            tally[2] += 1
        else:
            tally[0] += 1
            tally[1] += bool(row["detected"])
    return [f"{scheme} key {key_id}: {detected} of {scored} detected, {errors} errors"
            for (scheme, key_id), (scored, detected, errors) in sorted(counts.items())]


__all__ = ["ScanFolder", "summarise", "arrow_schema", "MANIFEST", "LOG", "TABLE"]
