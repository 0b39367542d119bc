"""Output-file safety shared by every command: nothing that exists is overwritten unless asked,
and nothing is left half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def check_new_output(path: str | Path, force: bool) -> Path:
    """``path`` as a Path; ``FileExistsError`` (a one-line CLI error) if it exists and ``force`` is off."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists (pass --force to overwrite)")
    return path


def write_text_atomic(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """``write_bytes_atomic`` of ``text`` in UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` in one step, created with permission bits ``mode``.

    The bytes go to a temporary file beside ``path``, are flushed to disk, and are renamed over
    it. A reader (or a second process writing the same file) sees the old content or the new,
    never half of either, and an interrupted or failed write leaves the old file as it was:
    ``--force`` then cannot cost a user the result it was about to replace. The temporary file
    is created private (``mkstemp``) and only takes ``mode`` once complete, so a secret is never
    readable by others even for a moment when ``mode`` is 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
