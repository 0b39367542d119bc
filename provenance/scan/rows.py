"""One scan row per item and watermark: what was tested, under which settings, and the verdict or
the reason there is none.

Why a settings id: a row is only reusable by a later scan that would compute the same thing, so
each (scheme, key, detection settings) gets a short hash of its canonical settings; an item is
skipped on a rerun when its content hash already has a verdict under that id.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provenance.cli_support import error_line, score_all
from provenance.result import DetectionResult

# column order of the JSONL log and the Parquet table
ROW_FIELDS = ("item", "content_hash", "modality", "scheme", "key_id", "settings_id", "detected", "p_value",
              "score", "payload", "bit_accuracy", "transform", "error")


def content_hash(data: bytes) -> str:
    """The SHA-256 of an item's bytes (a file's bytes, a text's UTF-8), hex."""
    return hashlib.sha256(data).hexdigest()


def settings_id(settings: Mapping[str, Any]) -> str:
    """16 hex characters naming the canonical JSON of ``settings`` (key order does not matter)."""
    canonical = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScanSpec:
    """One watermark to scan for: the scheme, the key file a worker loads it from (only its path and
    public id travel, never the secret), and the detection settings that name its rows."""

    modality: str
    scheme: str
    key_file: str
    key_id: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def settings_id(self) -> str:
        return settings_id({"modality": self.modality, "scheme": self.scheme, "key_id": self.key_id, **self.settings})

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "scheme": self.scheme, "key_file": self.key_file, "key_id": self.key_id,
                "settings": self.settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanSpec:
        return cls(data["modality"], data["scheme"], data["key_file"], data["key_id"], dict(data["settings"]))


def _row(item: str, digest: str | None, spec: ScanSpec, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in ROW_FIELDS}
    row.update(item=item, content_hash=digest, modality=spec.modality, scheme=spec.scheme, key_id=spec.key_id,
               settings_id=spec.settings_id, **values)
    return row


def result_row(item: str, digest: str, spec: ScanSpec, result: DetectionResult) -> dict[str, Any]:
    """The row of a verdict (``transform``: the geometric edit a resync search undid, if any)."""
    resync = result.details.get("resync") or {}
    return _row(item, digest, spec, detected=bool(result.detected), p_value=float(result.p_value),
                score=_finite(result.score), payload=result.decoded_payload,
                bit_accuracy=None if result.bit_accuracy is None else float(result.bit_accuracy),
                transform=resync.get("found"))


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def error_row(item: str, digest: str | None, spec: ScanSpec, message: str) -> dict[str, Any]:
    """The row of an item that could not be scored: no verdict, the reason in ``error``."""
    return _row(item, digest, spec, error=message)


Read = tuple[str, "str | None", Any]  # (item, content hash or None, content or the error that kept it unread)


def spec_rows(spec: ScanSpec, read: Sequence[Read], done: Mapping[str, set[str]],
              detect: Callable[[list[Any]], list[DetectionResult]]) -> list[dict[str, Any]]:
    """``spec``'s rows for one unit's items, already read: an error row for each item that could
    not be read; a verdict for each readable item not yet scored under ``spec`` (``done``: hashes
    per settings id), all detected in one batch by ``detect`` (an item the batch fails on is
    scored alone, and gets an error row if it still fails)."""
    scored = done.get(spec.settings_id, set())
    todo = [(item, digest, content) for item, digest, content in read
            if isinstance(content, BaseException) or digest not in scored]
    readable = [(item, content) for item, _, content in todo if not isinstance(content, BaseException)]
    scored_now: list[DetectionResult | ValueError | OSError] = []
    if readable:
        scored_now = score_all(readable, detect)
    results = iter(scored_now)
    rows = []
    for item, digest, content in todo:
        outcome = content if isinstance(content, BaseException) else next(results)
        rows.append(error_row(item, digest, spec, error_line(item, outcome)) if isinstance(outcome, BaseException)
                    else result_row(item, str(digest), spec, outcome))
    return rows
