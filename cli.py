"""The ``provenance`` command line: keys, model info, text and image watermark generation and detection.

Why a thin layer: every command only parses arguments, calls the public Python API and
prints; anything a command can do, a script can do with the same calls. Bad input
(unreadable files, wrong keys, empty text, unknown schemes, missing models) ends with a
one-line ``error: ...`` on stderr and exit code 2, never a traceback, and nothing that
exists is overwritten unless asked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from provenance import __version__
from provenance.files import check_new_output, write_text_atomic
from provenance.keys import KeyFileError, WatermarkKey
from provenance.models import ModelNotFoundError, quiet_libraries

EXPECTED_ERRORS = (ValueError, OSError, KeyFileError, ModelNotFoundError, LookupError)


class ProvenanceGroup(click.Group):
    """A click group that turns expected failures into one-line errors with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except EXPECTED_ERRORS as exc:
            message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            click.echo(f"error: {message}", err=True)
            ctx.exit(2)


def _load_key(path: str) -> WatermarkKey:
    return WatermarkKey.load(path)


@click.group(cls=ProvenanceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provenance")
def main() -> None:
    """Watermark and detect AI-generated content with calibrated p-values."""
    threads = os.environ.get("PROVENANCE_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


# -- info -----------------------------------------------------------------------------
@main.command()
def info() -> None:
    """Show the compute device, library versions and where the default models are."""
    import torch

    from provenance.device import resolve_device
    from provenance.models import cache_dir, default_embedder, default_text_model

    click.echo(f"provenance {__version__}")
    click.echo(f"torch {torch.__version__}, device: {resolve_device()}")
    for label, locate in (("text model", default_text_model), ("sentence embedder", default_embedder)):
        try:
            location = locate()
            where = location.path / location.gguf_file if location.gguf_file else location.path
            click.echo(f"{label}: {location.name} found at {where}")
        except ModelNotFoundError as exc:
            click.echo(f"{label}: NOT FOUND ({exc})")
    click.echo(f"model cache: {cache_dir()}")


# -- keys -----------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Create and inspect secret watermark keys (and development signing certificates)."""


@keys.command("new")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Key file to write (mode 0600).")
@click.option("--label", default=None, help="A public label stored with the key.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file (the old key is lost).")
def keys_new(out: str, label: str | None, force: bool) -> None:
    """Generate a new random key and write it to OUT."""
    key = WatermarkKey.generate(label=label)
    key.save(out, overwrite=force)
    click.echo(f"wrote key {key.key_id} to {out}")


@keys.command("show")
@click.argument("key_file", type=click.Path(dir_okay=False))
def keys_show(key_file: str) -> None:
    """Print a key's public id, label and creation time (never the secret)."""
    import datetime

    key = _load_key(key_file)
    created = datetime.datetime.fromtimestamp(key.created, tz=datetime.timezone.utc).isoformat()
    click.echo(f"key id:  {key.key_id}\nlabel:   {key.label or '-'}\ncreated: {created}")


@keys.command("dev-cert")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for ca.pem, chain.pem and signer-key.pem (mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite existing files in --out.")
def keys_dev_cert(out: str, force: bool) -> None:
    """Create a development certificate chain for `provenance image sign` (trusted by no one:
    for trying Content Credentials out; production signing needs a C2PA-trusted certificate)."""
    from provenance.dev_certificates import write_development_certificates

    paths = write_development_certificates(out, force=force)
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


# -- text -----------------------------------------------------------------------------
@main.group()
def text() -> None:
    """Text watermarks: token-level (KGW, EXP, ITS, MajorMark, MajorMark+), post-hoc black-box, zero-shot detection."""


def _scheme_option(generation: bool = False):
    from text_wm.registry import GENERATION_SCHEMES, SCHEME_NAMES

    names = GENERATION_SCHEMES if generation else SCHEME_NAMES
    return click.option("--scheme", required=True, type=click.Choice(names), help="Watermark scheme.")


def _read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if (prompt is None) == (prompts_file is None):
        raise click.UsageError("give exactly one of --prompt or --prompts")
    if prompt is not None:
        prompts = [prompt]
    else:
        prompts = [line.strip() for line in Path(prompts_file).read_text(encoding="utf-8").splitlines()]
        prompts = [p for p in prompts if p]
    if not prompts or not all(p.strip() for p in prompts):
        raise ValueError("no prompt given (empty prompt text)")
    return prompts


@text.command("generate")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@_scheme_option(generation=True)
@click.option("--payload", default=None, help="Hex payload for multi-bit schemes (majormark).")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM directory or .gguf file.")
@click.option("--prompt", default=None, help="One prompt.")
@click.option("--prompts", "prompts_file", default=None, type=click.Path(dir_okay=False), help="File, one prompt a line.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(0.05, 5.0))
@click.option("--chat/--no-chat", default=True, show_default=True, help="Wrap prompts in the model's chat template.")
@click.option("--seed", default=None, type=int, help="Sampling seed for reproducible output.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write JSON lines here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--compile", "compile_kernels", is_flag=True,
              help="Fuse the watermark's per-step work with torch.compile (KGW, MajorMark): 10-25 s once, then faster.")
def text_generate(key_file, scheme, payload, model, prompt, prompts_file, max_new_tokens, temperature, chat, seed, out,
                  force, compile_kernels):
    """Generate watermarked text with a local LLM (default SmolLM2-135M)."""
    quiet_libraries()
    from provenance.models import load_text_model
    from text_wm.generate import generate_watermarked
    from text_wm.registry import get_scheme

    key = _load_key(key_file)
    prompts = _read_prompts(prompt, prompts_file)
    out_path = Path(out) if out else None
    if out_path is not None:
        check_new_output(out_path, force)
    watermark = get_scheme(scheme)
    processor_kwargs = {"payload": payload} if payload is not None else {}
    if compile_kernels:
        processor_kwargs["compile"] = True
    lm, tokenizer = load_text_model(model)
    records = generate_watermarked(
        lm, tokenizer, prompts, watermark, key, chat=chat, seed=seed,
        processor_kwargs=processor_kwargs, max_new_tokens=max_new_tokens, do_sample=True,
        temperature=temperature, top_k=0, top_p=1.0,
    )
    lines = [json.dumps(record.to_dict()) for record in records]
    if out_path is not None:
        write_text_atomic(out_path, "\n".join(lines) + "\n")
        click.echo(f"wrote {len(records)} watermarked text(s) to {out_path}", err=True)
    else:
        for record in records:
            click.echo(record.text)


def _read_text_inputs(files: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each FILE is plain text, or JSON lines from `text generate --out` (one text per line)."""
    inputs = []
    for name in files:
        content = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        rows = [line for line in content.splitlines() if line.strip()]
        try:
            records = [json.loads(line) for line in rows]
            if rows and all(isinstance(r, dict) and "text" in r for r in records):
                inputs.extend((f"{name}:{i + 1}", r["text"]) for i, r in enumerate(records))
                continue
        except json.JSONDecodeError:
            pass
        if not content.strip():
            raise ValueError(f"{name}: empty text")
        inputs.append((name, content))
    return inputs


@text.command("detect")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Key file.")
@_scheme_option()
@click.option("--model", default=None, type=click.Path(), help="Local model whose tokenizer generated the text.")
@click.option("--fpr", default=0.01, show_default=True, type=click.FloatRange(1e-12, 0.5, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.argument("files", nargs=-1, required=True)
def text_detect(key_file, scheme, model, fpr, as_json, files):
    """Test FILES (plain text, or JSON lines from `text generate`) for the watermark."""
    quiet_libraries()
    from provenance.models import load_tokenizer
    from text_wm.registry import get_scheme

    key = _load_key(key_file)
    inputs = _read_text_inputs(files)
    tokenizer = load_tokenizer(model)
    watermark = get_scheme(scheme)
    for name, content in inputs:
        result = watermark.detect(content, key, tokenizer, fpr=fpr)
        if as_json:
            click.echo(json.dumps({"input": name, **result.to_dict()}))
        else:
            click.echo(f"{name}: {result.summary()}")


def _register_modalities() -> None:
    from attacks.cli import attack, audit
    from image_wm.cli import image
    from image_wm.video.cli import video
    from text_wm.posthoc_cli import dataset, text_watermark
    from text_wm.zeroshot_cli import zeroshot

    for command in (image, video, audit, attack, dataset):
        main.add_command(command)
    for command in (text_watermark, zeroshot):
        text.add_command(command)


_register_modalities()

if __name__ == "__main__":
    main()
