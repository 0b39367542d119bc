"""Pick the torch device: cuda, then mps, then cpu, unless the caller or PROVENANCE_DEVICE says otherwise.

Why an override: a user with a busy GPU, or a test that must run on the CPU, needs a way
to choose without code changes; everything else follows the pipeline's device.
"""

from __future__ import annotations

import os
import re

import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def parse_device(choice: str) -> str:
    """``choice`` if it names a device this toolkit runs on (auto, cpu, cuda, cuda:N, mps), else ValueError."""
    text = str(choice).strip().lower()
    if not DEVICE_PATTERN.fullmatch(text):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise ValueError(f"unknown device {shown!r} (use auto, cpu, cuda, cuda:N or mps)")
    return text


def resolve_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return ``preferred`` if given, else ``$PROVENANCE_DEVICE``, else the best available device."""
    choice = preferred if preferred is not None else os.environ.get("PROVENANCE_DEVICE")
    if isinstance(choice, str):
        choice = parse_device(choice)
    if choice is not None and str(choice) != "auto":
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but no CUDA device is available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
