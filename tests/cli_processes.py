"""Test plumbing: run the real CLI in many separate processes without paying its import each time.

Each run is a fresh process with its own file descriptors, working folder, environment and exit
status, as from a shell; it is forked from a server process (``multiprocessing`` forkserver) that
imported the CLI once, because the import (torch, transformers, diffusers) is what costs seconds.
The server itself never runs a model, so forking it is safe. ``tests/test_cli.py`` still runs
``cli.py`` cold once.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 240


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _child(folder: str, args: Sequence[str], env: Mapping[str, str], out: str, err: str, status: str) -> None:
    """In the forked process: the shell's view (cwd, environment, fds 0-2), then the CLI's own main.

    The exit code the CLI chose is also written to ``status``: the forkserver reports a child's
    exit status through a pipe that can come back empty (multiprocessing then says 255)."""
    os.chdir(folder)
    for name in [n for n in os.environ if n.startswith("PROVENANCE_")]:
        del os.environ[name]
    os.environ.update(env)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    import cli

    try:
        cli.main(list(args), prog_name="provenance")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        Path(status).write_text(str(code))
        raise


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cli"])
    return context


def run_many(folder: Path, runs: Sequence[tuple[Sequence[str], Mapping[str, str]]], workers: int = 2) -> list[Completed]:
    """Run ``cli`` with each ``(args, env)`` in ``folder``, ``workers`` at a time; results in order."""
    context = _context()

    def one(run: tuple[Sequence[str], Mapping[str, str]]) -> Completed:
        args, env = run
        with tempfile.TemporaryDirectory() as scratch:
            out, err, status = Path(scratch) / "out", Path(scratch) / "err", Path(scratch) / "status"
            out.touch()
            err.touch()
            process = context.Process(target=_child, args=(str(folder), list(args), dict(env), str(out), str(err),
                                                           str(status)))
            process.start()
            process.join(TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
                return Completed(-9, out.read_text(errors="replace"), err.read_text(errors="replace") + "\nTIMEOUT")
            code = int(status.read_text()) if status.is_file() and status.read_text() else process.exitcode
            return Completed(code, out.read_text(errors="replace"), err.read_text(errors="replace"))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, runs))
