"""Output-file safety shared by every command: nothing that exists is overwritten unless asked."""

from __future__ import annotations

from pathlib import Path


def check_new_output(path: str | Path, force: bool) -> Path:
    """``path`` as a Path; ``FileExistsError`` (a one-line CLI error) if it exists and ``force`` is off."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists (pass --force to overwrite)")
    return path
