"""``provenance traps make|inject``: copyright traps for a corpus (``text_wm.traps``).

Registered on the top-level group (``cli.py``), which turns ``ValueError`` and friends into one
``error: ...`` line with exit code 2. Outputs are new files, written atomically, never over an
existing file without ``--force``: the user's own documents are only read.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from provenance.cli_support import FiniteFloatRange
from provenance.files import check_new_output, write_text_atomic
from provenance.readers import InputError, check_jsonl_output, is_jsonl, read_documents, read_text


def _read_traps(path: str) -> list:
    """Every trap of a file from ``traps make``; anything else is one ``InputError`` naming the file."""
    from text_wm.traps import Trap

    try:
        return [Trap.from_dict(row) for row in read_documents(path)[1]]
    except (KeyError, TypeError) as exc:
        raise InputError(path, f"not a traps file from `traps make` ({exc.__class__.__name__})") from None


@click.group()
def traps() -> None:
    """Copyright traps: make trap sequences, insert them into your documents (then verify a model)."""


@traps.command("make")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file (traps are keyed).")
@click.option("--count", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="Member traps to make (as many non-members are kept back).")
@click.option("--length", default=50, show_default=True, type=click.IntRange(4, 512), help="Tokens per trap.")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM that samples the traps.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Traps to write (.jsonl).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def traps_make(key_file, count, length, model, out, force):
    """Sample trap sequences at several temperatures, deduplicated, bucketed by perplexity, keyed ids."""
    from provenance.keys import WatermarkKey
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.traps import make_traps

    quiet_libraries()
    key = WatermarkKey.load(key_file)
    out_path = check_jsonl_output(out, force, "traps")
    lm, tokenizer = load_text_model(model)
    made = make_traps(lm, tokenizer, key, count, length)
    write_text_atomic(out_path, "".join(json.dumps(trap.to_dict()) + "\n" for trap in made))
    click.echo(f"wrote {count} member and {len(made) - count} held-out traps of {length} tokens to {out_path}", err=True)


@traps.command("inject")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file (placement is keyed).")
@click.option("--traps", "traps_file", required=True, type=click.Path(dir_okay=False), help="Traps from `traps make`.")
@click.option("--repetitions", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Copies of each member trap.")
@click.option("--fuzzy", default=0, show_default=True, type=click.IntRange(0, 512),
              help="Tokens replaced in each copy by plausible alternatives (0: exact copies).")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM that proposes the alternatives.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="New documents (same format as IN).")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="Where each copy went (.json).")
@click.option("--force", is_flag=True, help="Overwrite --out and --manifest if they exist.")
@click.argument("in_file", metavar="IN")
def traps_inject(key_file, traps_file, repetitions, fuzzy, model, out, manifest, force, in_file):
    """Insert each member trap REPETITIONS times at keyed random whitespace positions of IN (.jsonl or text)."""
    from provenance.keys import WatermarkKey
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.traps import fuzzy_copies, inject

    quiet_libraries()
    key = WatermarkKey.load(key_file)
    jsonl = is_jsonl(in_file)
    out_path = check_jsonl_output(out, force, "documents") if jsonl else check_new_output(out, force)
    manifest_path = check_new_output(manifest, force)
    if Path(manifest_path).resolve() == Path(out_path).resolve():
        raise InputError(manifest, "the manifest and --out must be different files")
    members = [trap for trap in _read_traps(traps_file) if trap.member]
    if not members:
        raise InputError(traps_file, "no member traps")
    documents, rows = read_documents(in_file) if jsonl else ([read_text(in_file)], [None])
    lm, tokenizer = load_text_model(model) if fuzzy else (None, None)
    copies = {trap.trap_id: fuzzy_copies(lm, tokenizer, trap, repetitions, fuzzy, key) if fuzzy
              else [trap.text] * repetitions for trap in members}
    trapped, placements = inject(documents, copies, key)
    if jsonl:
        body = "".join(json.dumps({**row, "text": text} if isinstance(row, dict) else text) + "\n"
                       for row, text in zip(rows, trapped))
    else:
        body = trapped[0]
    write_text_atomic(out_path, body)
    record = {"traps": traps_file, "repetitions": repetitions, "fuzzy": fuzzy, "key_id": key.key_id,
              "placements": [asdict(p) for p in placements]}
    write_text_atomic(manifest_path, json.dumps(record, indent=1) + "\n")
    click.echo(f"inserted {len(placements)} copies of {len(members)} traps into {len(documents)} document(s): "
               f"{out_path}, manifest {manifest_path}", err=True)


@traps.command("verify")
@click.option("--traps", "traps_file", required=True, type=click.Path(dir_okay=False), help="Traps from `traps make`.")
@click.option("--model", required=True, type=click.Path(), help="The suspect model (local folder or .gguf).")
@click.option("--reference", default=None, type=click.Path(),
              help="Reference model for the Ratio score (default: the default LM, SmolLM2-135M).")
@click.option("--fpr", default=0.01, show_default=True, type=FiniteFloatRange(1e-12, 0.5, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="The verdict as one JSON object.")
def traps_verify(traps_file, model, reference, fpr, as_json):
    """Test whether the suspect MODEL was trained on the trapped documents (members against held-out traps)."""
    from provenance.models import load_text_model, quiet_libraries
    from text_wm.traps import verify_traps

    quiet_libraries()
    made = _read_traps(traps_file)
    suspect, _ = load_text_model(model)
    baseline, _ = load_text_model(reference)
    verdict = verify_traps(suspect, baseline, made, fpr=fpr)
    click.echo(json.dumps(verdict.to_dict()) if as_json else verdict.summary())
