"""Output-file safety shared by every command: nothing that exists is overwritten unless asked,
and nothing is ever left half-written under the user's name.

Three writers cover every kind of output: ``write_bytes_atomic`` for bytes made in memory (keys,
texts, JSON, encoded images), ``atomic_file`` for a library that insists on writing to a path
itself (a video muxer), and ``atomic_folder`` for a folder of files (video frames). Each builds
the output beside its destination and renames it into place in one step, so a reader sees the
old output or the new one, never a mixture, and a failure leaves the old output whole. Errors
name the user's path, never a temporary one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

def check_new_output(path: str | os.PathLike[str], force: bool) -> Path:
    """``path`` as a Path; ``FileExistsError`` (a one-line CLI error) if it exists and ``force`` is off."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise FileExistsError(f"{path}: already exists (pass --force to overwrite)")
    return path


def write_text_atomic(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """``write_bytes_atomic`` of ``text`` in UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def _write_error(path: Path, exc: OSError) -> OSError:
    return OSError(f"{path}: cannot write ({exc.strerror or exc.__class__.__name__})")


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` in one step, created with permission bits ``mode``.

    The bytes go to a private temporary sibling (``mkstemp``: mode 0600 until complete, so a
    secret is never readable by others even for a moment), are flushed to disk, and are renamed
    over ``path`` at once. Any failure, an interrupt or a termination signal (the CLI turns
    SIGTERM and SIGHUP into exceptions) removes the temporary file; only a SIGKILL between the
    write and the rename, a few system calls, can leave one behind. A reader, or a second
    process writing the same file, sees the old content or the new, never half of either.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so format-by-suffix writers still work) to
    write to; renamed over ``path`` when the block ends normally, removed when it raises."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    temporary = path.parent / f".{path.stem}.{secrets.token_hex(6)}.partial{path.suffix}"
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``path`` to fill; swapped in for ``path`` when the block ends normally
    (an existing folder at ``path`` is replaced whole, never merged), removed when it raises."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield building
        _swap_in(building, path)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise _write_error(path, exc) from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _swap_in(building: Path, path: Path) -> None:
    """Put ``building`` at ``path``; an old folder there is moved aside first and deleted after."""
    if not (path.exists() or path.is_symlink()):
        os.replace(building, path)
        return
    if not path.is_dir() or path.is_symlink():
        path.unlink()
        os.replace(building, path)
        return
    old = path.parent / f".{path.name}.{secrets.token_hex(6)}.old"
    os.replace(path, old)
    try:
        os.replace(building, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
