"""``provenance text watermark`` (post-hoc black-box marking) and ``provenance dataset mark|verify`` (LexiMark).

Registered on the top-level ``provenance`` group (``cli.py``): ``text_watermark`` goes into
the ``text`` group, ``dataset`` onto ``main``. The top-level group turns ``ValueError`` and
friends into a one-line ``error: ...`` with exit code 2; nothing existing is overwritten
without ``--force``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from provenance.cli_support import FiniteFloatRange
from provenance.files import check_new_output, write_text_atomic
from provenance.readers import InputError, check_jsonl_output, read_documents, read_text


@click.command("watermark")
@click.option("--scheme", required=True, type=click.Choice(["blackbox"]), help="Post-hoc watermark scheme.")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM that proposes synonyms.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Watermarked text to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.argument("in_file", metavar="IN")
def text_watermark(scheme, key_file, model, out, force, in_file):
    """Watermark existing text IN (from any source) by keyed synonym substitution."""
    from provenance.keys import WatermarkKey
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.blackbox import BlackBoxWatermark, markable_words
    from text_wm.synonyms import SynonymProposer

    quiet_libraries()
    key = WatermarkKey.load(key_file)
    out_path = Path(out)
    check_new_output(out_path, force)
    text = read_text(in_file)
    try:
        markable_words(text)
    except ValueError as exc:
        raise InputError(in_file, str(exc)) from None
    lm, tokenizer = load_text_model(model)
    marked = BlackBoxWatermark(SynonymProposer(lm, tokenizer)).watermark(text, key)
    write_text_atomic(out_path, marked.text)
    click.echo(
        f"wrote {out_path}: {scheme} watermark, changed {marked.n_changed} of {marked.n_words} words "
        f"({marked.fraction_changed:.1%}), MiniLM similarity {marked.similarity:.3f}",
        err=True,
    )


@click.group("dataset")
def dataset() -> None:
    """Dataset watermarks (LexiMark): mark a corpus, later verify a model trained on it."""


@dataset.command("mark")
@click.argument("in_file", metavar="IN.jsonl", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Marked JSON lines to write.")
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 50), help="Rare words replaced per sentence.")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM that proposes synonyms.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def dataset_mark(in_file, out, k, model, force):
    """Replace the K rarest words of each sentence with rarer synonyms, consistently across IN.jsonl."""
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.leximark import LEXIMARK_FLUENCY_MARGIN, LexiMark
    from text_wm.synonyms import SynonymProposer

    quiet_libraries()
    out_path = check_jsonl_output(out, force, "marked documents")
    texts, rows = read_documents(in_file)
    lm, tokenizer = load_text_model(model)
    lexi = LexiMark(SynonymProposer(lm, tokenizer, fluency_margin=LEXIMARK_FLUENCY_MARGIN), k=k)
    marked = lexi.mark_dataset(texts)
    lines = [
        json.dumps(m.text if isinstance(row, str) else {**row, "text": m.text}, ensure_ascii=False)
        for m, row in zip(marked, rows)
    ]
    write_text_atomic(out_path, "\n".join(lines) + "\n")
    changed = sum(len(m.replacements) for m in marked)
    click.echo(f"wrote {len(marked)} marked document(s) to {out_path}: {changed} substitutions, "
               f"{len(lexi.replacement_map)} distinct words replaced", err=True)


@dataset.command("verify")
@click.option("--model", default=None, type=click.Path(), help="The suspect model (local causal LM directory or .gguf).")
@click.option("--suspect", required=True, type=click.Path(dir_okay=False), help="Marked documents that were published.")
@click.option("--reference", required=True, type=click.Path(dir_okay=False), help="Marked documents kept back.")
@click.option("--k-percent", default=20.0, show_default=True, type=FiniteFloatRange(0, 100, min_open=True))
@click.option("--fpr", default=0.01, show_default=True, type=FiniteFloatRange(0, 0.5, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def dataset_verify(model, suspect, reference, k_percent, fpr, as_json):
    """Test whether a model was trained on the suspect documents (Min-K%++, Mann-Whitney U)."""
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.leximark import verify

    quiet_libraries()
    suspect_docs, _ = read_documents(suspect)
    reference_docs, _ = read_documents(reference)
    lm, tokenizer = load_text_model(model)
    result = verify(lm, tokenizer, suspect_docs, reference_docs, k_percent=k_percent, fpr=fpr)
    click.echo(json.dumps(result.to_dict()) if as_json else result.summary())
