"""Latent-noise image watermarks, one readable file each, behind one registry.

``get_scheme("tree-ring" | "gaussian-shading" | "prc" | "seal", **overrides)`` imports only
the scheme named; every scheme follows ``image_wm.schemes.base.LatentWatermark``.
"""

from __future__ import annotations

import importlib
from typing import Any

from image_wm.schemes.base import DEFAULT_FPR, GeneratesItsOwnImages, GenerationHost, LatentWatermark, PipelineCalibrated

# name -> (module, class)
_SCHEMES: dict[str, tuple[str, str]] = {
    "tree-ring": ("image_wm.schemes.tree_ring", "TreeRing"),
    "gaussian-shading": ("image_wm.schemes.gaussian_shading", "GaussianShading"),
    "prc": ("image_wm.schemes.prc", "PRCWatermark"),
    "seal": ("image_wm.schemes.seal", "SEAL"),
}
SCHEME_NAMES = tuple(_SCHEMES)

__all__ = ["DEFAULT_FPR", "GeneratesItsOwnImages", "GenerationHost", "LatentWatermark", "PipelineCalibrated",
           "SCHEME_NAMES", "get_scheme"]


def get_scheme(name: str, **overrides: Any) -> LatentWatermark:
    """A configured image scheme by name; ``overrides`` replace its defaults."""
    try:
        module, cls = _SCHEMES[name]
    except KeyError:
        raise LookupError(f"unknown image watermark scheme {name!r} (known: {', '.join(SCHEME_NAMES)})") from None
    return getattr(importlib.import_module(module), cls)(**overrides)
