"""Foundation benchmark: SmolLM2 load time cold (GGUF conversion) vs warm (safetensors cache).

Run: ``.venv/bin/python benchmarks/foundation.py``. Uses a fresh temporary cache so the
first load really converts; prints a table and updates docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.report import write_section  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from provenance.models import load_text_model

    with tempfile.TemporaryDirectory() as cache:
        os.environ["PROVENANCE_CACHE"] = cache
        timings = []
        for label in ("first load (GGUF -> safetensors cache)", "second load (from cache)"):
            start = time.perf_counter()
            load_text_model(device="cpu")
            timings.append((label, time.perf_counter() - start))
    ratio = timings[1][1] / timings[0][1]
    rows = [f"| {label} | {seconds:.2f} s |" for label, seconds in timings]
    table = "\n".join(["| SmolLM2-135M load | time |", "|---|---|", *rows, f"| second / first | {ratio:.3f} |"])
    print(table)
    write_section("Model loading (foundation)", "`python benchmarks/foundation.py`, 2 CPU threads.\n\n" + table)


if __name__ == "__main__":
    main()
