"""Scheme names for the CLI and scripts, resolved lazily so naming a scheme imports only it."""

from __future__ import annotations

import importlib
from typing import Any

from provenance.keys import WatermarkKey
from text_wm.base import TokenWatermark

# name -> (module, class, default keyword arguments)
_SCHEMES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "kgw": ("text_wm.kgw", "KGW", {}),
    "exp": ("text_wm.exp_its", "EXP", {}),
    "its": ("text_wm.exp_its", "ITS", {}),
    "majormark": ("text_wm.majormark", "MajorMark", {}),
    "majormark+": ("text_wm.majormark", "MajorMarkPlus", {}),
    "blackbox": ("text_wm.blackbox", "BlackBoxWatermark", {}),  # post-hoc: `text watermark`, no sampler
    "synthid": ("text_wm.synthid", "SynthIDText", {}),  # keyed by transformers' config file, not a key file
}
SCHEME_NAMES = tuple(_SCHEMES)
GENERATION_SCHEMES = tuple(name for name in _SCHEMES if name != "blackbox")


def get_scheme(name: str, **overrides: Any) -> TokenWatermark:
    """A configured scheme by name; ``overrides`` replace its defaults."""
    try:
        module, cls, defaults = _SCHEMES[name]
    except KeyError:
        raise LookupError(f"unknown text watermark scheme {name!r} (known: {', '.join(SCHEME_NAMES)})") from None
    return getattr(importlib.import_module(module), cls)(**{**defaults, **overrides})


def load_key(name: str, path: str) -> Any:
    """The key ``name`` detects with: SynthID's is transformers' config file (``text_wm.synthid.SynthIDKey``),
    every other scheme's a watermark key file."""
    if name == "synthid":
        return importlib.import_module("text_wm.synthid").SynthIDKey.load(path)
    return WatermarkKey.load(path)
