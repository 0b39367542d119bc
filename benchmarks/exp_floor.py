"""EXP p-values below the permutation floor: detection at small FPRs and false positives on human text.

Run: ``.venv/bin/python benchmarks/exp_floor.py [--n 20]``. Generates ``n`` EXP chat continuations of
200 new tokens on SmolLM2-135M-Instruct (key ``from_seed(2026)``, random key shifts), detects them
with the default 100 resamples, and reports for each FPR level the detection rate of the
permutation p-value alone (the floor of 1/101) and of EXP's reported p-value (the weighted
Bonferroni combination with the analytic tail), the median of each, the time per text, and the
false-positive rate of the reported p-value on the 600 human passages of ``tests/data`` at 1e-2
and 1e-3. Writes the "EXP below the permutation floor" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from benchmarks.report import write_section  # noqa: E402
from benchmarks.text import generate, generation_setup, human_passages, prompts  # noqa: E402
from provenance.keys import WatermarkKey  # noqa: E402
from text_wm.exp_its import EXP  # noqa: E402

LEVELS = (1e-2, 1e-4, 1e-6, 1e-9)


def main() -> None:
    args, model, tokenizer = generation_setup(n=20, batch=10)
    key, scheme = WatermarkKey.from_seed(2026), EXP()
    marked, _ = generate(model, tokenizer, scheme, key, prompts(args.n), args.batch, seed=0)
    start = time.perf_counter()
    results = scheme.detect_batch(marked, key, tokenizer)
    per_text = (time.perf_counter() - start) / len(marked)
    permutation = np.array([r.details["p_value_permutation"] for r in results])
    reported = np.array([r.p_value for r in results])
    human = human_passages()
    human_p = np.array([r.p_value for r in scheme.detect_batch(human, key, tokenizer)])
    rows = ["| FPR | TPR, permutation p-value alone | TPR, EXP's p-value (with the analytic tail) |", "|---|---|---|"]
    rows += [f"| {level:g} | {np.mean(permutation <= level):.2f} | {np.mean(reported <= level):.2f} |" for level in LEVELS]
    body = "\n".join([
        f"`python benchmarks/exp_floor.py --n {args.n}`. SmolLM2-135M-Instruct, {args.n} EXP chat generations of 200 new "
        "tokens (temperature 1, key `from_seed(2026)`, random key shifts), detected from token ids with the default 100 "
        "resamples and the edit-robust statistic.",
        "",
        *rows,
        "",
        f"- Median p-value: permutation alone {np.median(permutation):.2g} (its floor is 1/101), reported "
        f"{np.median(reported):.2g}.",
        f"- Detection time: {1000 * per_text:.0f} ms per 200-token text (the analytic tail adds nothing measurable; "
        "the 100 resampled keys are the cost).",
        f"- False positives of the reported p-value on the {len(human)} human passages: "
        f"{np.mean(human_p <= 1e-2):.4f} at 1e-2, {np.mean(human_p <= 1e-3):.4f} at 1e-3.",
    ])
    print(body)
    write_section("EXP below the permutation floor", body)


if __name__ == "__main__":
    main()
