"""Write one named section of docs/benchmarks.md, leaving the other sections as they are."""

from __future__ import annotations

import datetime
import platform
import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh the numbers.\n"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section with ``body`` plus a provenance line."""
    stamp = (
        f"_Measured {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {'cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'})._"
    )
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n\n{stamp}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
