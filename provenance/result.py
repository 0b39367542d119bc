"""The one result type every detector returns, with a stable JSON form.

Why a single type: the CLI prints it, audits aggregate it and users archive it, so
every scheme must say the same things in the same words: a decision, the p-value
behind it, the threshold and false-positive rate it was taken at, and (for multi-bit
schemes) the payload and how sure we are of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# The smallest p-value reported as a number: anything smaller (an underflow to 0 included) is
# reported as this bound, with ``details["p_value_below"]`` saying the true value lies below it.
P_VALUE_FLOOR = float(np.finfo(np.float64).tiny)


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars and arrays into JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


class UnscoreableInput(ValueError):
    """Content a detector cannot score at all: empty, shorter than its context, without a single
    eligible word. Callers that count such content as "not detected" (an audit after an attack that
    deleted the text) catch this class only, so a defect raising any other error is never
    mistaken for a miss."""


@dataclass
class DetectionResult:
    """Outcome of one detection.

    ``p_value`` is the probability, under the scheme's stated null hypothesis (content
    not watermarked with this key), of a score at least this extreme. ``detected`` is
    ``p_value <= fpr`` unless the scheme documents a threshold on another scale, in which
    case ``threshold`` is on the scale of ``score``. ``payload`` is a hex string.
    """

    detected: bool
    p_value: float
    score: float
    threshold: float
    fpr: float
    scheme: str
    key_id: str
    payload: str | None = None
    bit_accuracy: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.payload is not None and not self.detected:
            self.details = {**self.details, "decoded_payload": self.payload}
            self.payload = None
        if self.p_value < P_VALUE_FLOOR:
            self.details = {**self.details, "p_value_below": P_VALUE_FLOOR}
            self.p_value = P_VALUE_FLOOR

    @property
    def decoded_payload(self) -> str | None:
        """The payload as read, detected or not (for bit accuracy; never a verdict)."""
        return self.payload if self.payload is not None else self.details.get("decoded_payload")

    def summary(self) -> str:
        """One human-readable line: the verdict, the p-value and the payload of a detected watermark."""
        verdict = "WATERMARKED" if self.detected else "not detected"
        extra = f"  payload={self.payload}" if self.payload else ""
        p_value = f"p<{self.p_value:.3g}" if "p_value_below" in self.details else f"p={self.p_value:.3g}"
        return f"{verdict}  {p_value}  score={self.score:.3f}{extra}"

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DetectionResult":
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "DetectionResult":
        return cls.from_dict(json.loads(text))
