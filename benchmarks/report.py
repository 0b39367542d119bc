"""Write one named section of a file under docs/ (benchmarks.md by default), leaving the rest as it is."""

from __future__ import annotations

import datetime
import platform
import re
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh the numbers.\n"


def cpu_name() -> str:
    """The CPU model (benchmark figures on AVX2-only and AMX CPUs differ several-fold)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_section(title: str, body: str, doc: str = "benchmarks.md") -> None:
    """Replace (or append) the ``## title`` section of ``docs/<doc>`` with ``body`` plus a provenance line."""
    stamp = (
        f"_Measured {datetime.date.today().isoformat()} on {cpu_name()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {'cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'})._"
    )
    path = DOCS / doc
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n\n{stamp}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
