"""One registry of attacks on watermarked content: images, videos and text.

Why a registry of small functions: an audit is a grid (scheme x attack x strength), so every
attack must be callable the same way and describe itself (modality, strength range, which
direction is stronger) without the audit knowing any attack. ``attacks.get("jpeg")(image,
strength=50)`` is the whole interface.

Content conventions (what the pipelines and detectors already use):
- image: uint8 RGB array ``(H, W, 3)`` or a batch ``(N, H, W, 3)``; attacks return the same
  layout (sizes may change: a detector resizes to its model's size);
- video: uint8 RGB array ``(F, H, W, 3)``; temporal attacks may change ``F``;
- text: ``str``.

Every call takes ``seed`` (default 0) and is deterministic under it; attacks that need a model
take it as a keyword (``pipe=``, ``captioner=``, ...) or load the reference one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Modality = Literal["image", "video", "text"]
Kind = Literal["removal", "forgery"]


@dataclass(frozen=True)
class Attack:
    """A named attack: ``attack(content, strength=None, seed=0, **models)``.

    ``strength`` lies in ``[low, high]``; ``stronger`` says whether higher (``"up"``) or lower
    (``"down"``, e.g. JPEG quality) values damage more, so plots and grids read the same way.
    """

    name: str
    modality: Modality
    fn: Callable[..., Any]
    low: float
    high: float
    default: float
    stronger: Literal["up", "down"] = "up"
    unit: str = ""
    kind: Kind = "removal"
    description: str = ""

    def check_strength(self, strength: float | None) -> float:
        """``strength`` (the default if ``None``) as a float inside the attack's range."""
        strength = self.default if strength is None else float(strength)
        if not self.low <= strength <= self.high:
            raise ValueError(f"attack {self.name!r}: strength {strength:g} outside [{self.low:g}, {self.high:g}]"
                             + (f" ({self.unit})" if self.unit else ""))
        return strength

    def __call__(self, content: Any, strength: float | None = None, seed: int = 0, **models: Any) -> Any:
        return self.fn(content, self.check_strength(strength), seed, **models)

    def strengths(self, count: int = 5) -> list[float]:
        """``count`` strengths from mildest to strongest, evenly spaced over the range."""
        mild, strong = (self.low, self.high) if self.stronger == "up" else (self.high, self.low)
        if count == 1:
            return [strong]
        return [mild + (strong - mild) * i / (count - 1) for i in range(count)]


_ATTACKS: dict[str, Attack] = {}
# modules whose import registers attacks; imported lazily so naming an attack loads only what it needs
_MODULES = ("attacks.image", "attacks.video", "attacks.text", "attacks.regeneration", "attacks.forgery")


def register(name: str, modality: Modality, low: float, high: float, default: float, *,
             stronger: Literal["up", "down"] = "up", unit: str = "", kind: Kind = "removal"
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn(content, strength, seed, **models)`` becomes attack ``name``.

    The function's docstring's first line is the attack's description.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _ATTACKS[name] = Attack(name, modality, fn, float(low), float(high), float(default), stronger, unit, kind,
                                description)
        return fn

    return wrap


def _load_all() -> None:
    import importlib

    for module in _MODULES:
        importlib.import_module(module)


def get(name: str) -> Attack:
    """The attack called ``name``; ``LookupError`` names the known ones otherwise."""
    _load_all()
    try:
        return _ATTACKS[name]
    except KeyError:
        raise LookupError(f"unknown attack {name!r} (known: {', '.join(sorted(_ATTACKS))})") from None


def names(modality: Modality | None = None) -> list[str]:
    """Registered attack names, optionally only those for one modality."""
    _load_all()
    return sorted(n for n, a in _ATTACKS.items() if modality is None or a.modality == modality)
