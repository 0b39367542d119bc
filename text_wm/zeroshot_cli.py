"""``provenance text zeroshot`` and the command that builds its empirical null.

Registered on the ``text`` group of ``cli.py`` (whose error handling turns ``ValueError`` and
missing models into a one-line error with exit code 2). Standalone, for building the null:

    python -m text_wm.zeroshot_cli calibrate tests/data/human_passages.jsonl \
        --out text_wm/data/zeroshot_null_smollm2.json

(scores 300 passages x 65 tokens with SmolLM2-135M: about 7 minutes on one busy CPU core).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from provenance.cli_support import FiniteFloatRange, max_text_bytes_option, report, score_all
from provenance.files import check_new_output, write_text_atomic
from provenance.readers import read_documents, read_text_inputs


@click.command("zeroshot")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM to test against (default SmolLM2-135M).")
@click.option("--fpr", default=0.01, show_default=True, type=FiniteFloatRange(1e-12, 0.5, min_open=True))
@max_text_bytes_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.argument("files", nargs=-1, required=True)
def zeroshot(model, fpr, max_text_bytes, as_json, files):
    """Test whether the model itself plausibly wrote FILES (plain text, or .jsonl records; no
    watermark, no key). Unreadable inputs get an error line and no verdict (exit 2)."""
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.zeroshot import ZeroShotDetector

    quiet_libraries()
    inputs = read_text_inputs(files, max_text_bytes)
    readable = [(i.name, i.text) for i in inputs if i.error is None]
    detector = ZeroShotDetector(*load_text_model(model)) if readable else None
    scored = iter(score_all(readable, lambda texts: detector.detect(texts, fpr=fpr)))

    def describe(name: str, result) -> str:
        verdict = "MODEL-GENERATED" if result.detected else "not detected"
        return (f"{name}: {verdict}  p={result.p_value:.3g}  score={result.score:.3f}  "
                f"calibration={result.details['calibration']}")

    report([(i.name, i.error or next(scored)) for i in inputs], as_json, describe)


@click.command("calibrate")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM (default SmolLM2-135M).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Null file to write (JSON).")
@click.option("--force", is_flag=True, help="Overwrite --out.")
@click.argument("passages", type=click.Path(exists=True, dir_okay=False))
def zeroshot_calibrate(model, out, force, passages):
    """Build the empirical null from human PASSAGES (JSON lines, one string each; calibration half only)."""
    from provenance.models import default_text_model, load_text_model, quiet_libraries
    from text_wm.zeroshot import calibrate_null

    quiet_libraries()
    out_path = check_new_output(out, force)
    texts, _ = read_documents(passages)
    lm, tokenizer = load_text_model(model)
    null = calibrate_null(lm, tokenizer, texts, model_name=default_text_model().name if model is None else Path(model).name,
                          source=Path(passages).name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_path, json.dumps(null) + "\n")
    click.echo(f"wrote the null of {len(null['calibration_indices'])} passages to {out_path}", err=True)


@click.group()
def main() -> None:
    """Zero-shot detector commands (``provenance text zeroshot`` is the same detection command)."""


main.add_command(zeroshot)
main.add_command(zeroshot_calibrate)

if __name__ == "__main__":
    main()
