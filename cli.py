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
import signal
import sys
import warnings
from pathlib import Path

import click
from tqdm import tqdm

from attacks.cli import attack, audit
from image_wm import scan as image_scan
from image_wm.cli import (image, image_fpr_option, max_pixels_option, model_options, resync_option,
                          steps_option)
from image_wm.pipeline import check_captioner
from image_wm.schemes import DEFAULT_FPR as LATENT_DEFAULT_FPR
from image_wm.schemes import SCHEME_NAMES as IMAGE_SCHEMES
from image_wm.schemes import get_scheme as get_image_scheme
from image_wm.video import scan as video_scan
from image_wm.video.cli import video
from provenance import __version__
from provenance.cli_support import FiniteFloatRange, attempt, max_text_bytes_option, report
from provenance.device import resolve_device
from provenance.files import check_new_output, write_text_atomic
from provenance.keys import MAX_LABEL_CHARS, WatermarkKey, label_is_valid
from provenance.models import ModelNotFoundError, quiet_libraries
from provenance.readers import InputError, check_jsonl_output, one_line, parse_payload_hex, read_text, read_text_inputs
from provenance.scan.engine import Cluster, run_units, units_of
from provenance.scan.folder import ScanFolder, summarise
from provenance.scan.inputs import expand_inputs, read_spec
from provenance.scan.rows import ScanSpec
from text_wm import scan as text_scan
from text_wm.posthoc_cli import dataset, text_watermark
from text_wm.registry import SCHEME_NAMES as TEXT_SCHEMES
from text_wm.registry import load_key as load_text_key
from text_wm.traps_cli import traps
from text_wm.zeroshot_cli import zeroshot

# Failures that mean "this input or option cannot be used" (exit 2); anything else is a defect (exit 1).
EXPECTED_ERRORS = (ValueError, OSError, LookupError)
DEBUG_VARIABLE = "PROVENANCE_DEBUG"
MAX_THREADS = 1024
LONG_DETECTION_SCHEMES = ("exp", "its")  # permutation tests long enough to show a progress bar
TEXT_DEFAULT_FPR = 0.01
# items per unit of work: 8 images fill one 32-inversion chunk at --resync fast; clips are detected one by one
IMAGE_UNIT, VIDEO_UNIT, TEXT_UNIT = 8, 1, 256


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like an interrupt, so partial outputs are removed."""


def _terminate(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def _debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


class ProvenanceGroup(click.Group):
    """The error boundary: whatever happens, the user sees at most one line ``error: ...``.

    Exit codes: 0 success; 2 bad input or usage (unreadable, malformed, out of range,
    unsupported, too large, an existing output without ``--force``); 1 an internal error (one
    line that says how to see the traceback: ``PROVENANCE_DEBUG=1``); 130 interrupted, 143
    terminated. Library warnings are silenced unless ``PROVENANCE_DEBUG`` is set.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        handlers = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            with warnings.catch_warnings():
                if not _debugging():
                    warnings.simplefilter("ignore")
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return result if isinstance(result, int) and not isinstance(result, bool) else 0
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.ClickException as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) is not None else ""
            return _fail(one_line(exc.format_message(), 400) + hint, 2)
        except (click.exceptions.Abort, KeyboardInterrupt):
            return _fail("interrupted", 130)
        except Terminated as exc:
            return _fail(f"terminated ({exc})", 143)
        except Exception as exc:
            if _debugging():
                raise
            if isinstance(exc, EXPECTED_ERRORS) and not isinstance(exc, KeyError):
                return _fail(one_line(exc, 400), 2)
            return _fail(f"internal error ({exc.__class__.__name__}); run again with {DEBUG_VARIABLE}=1 for the "
                         "traceback, and please report it", 1)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    return code


def _load_key(path: str) -> WatermarkKey:
    return WatermarkKey.load(path)


def _check_environment() -> None:
    """Environment variables are options too: parsed before anything else runs."""
    threads = os.environ.get("PROVENANCE_THREADS")
    if threads is not None:
        try:
            count = int(threads)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_THREADS:
            raise InputError("PROVENANCE_THREADS", f"must be a whole number from 1 to {MAX_THREADS}, got {threads[:40]!r}")
        import torch

        torch.set_num_threads(count)
    device = os.environ.get("PROVENANCE_DEVICE")
    if device is not None:
        try:
            resolve_device(device)
        except ValueError as exc:
            raise InputError("PROVENANCE_DEVICE", str(exc)) from None


@click.group(cls=ProvenanceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provenance")
def main() -> None:
    """Watermark and detect AI-generated content with calibrated p-values."""
    _check_environment()


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
    if not label_is_valid(label):
        raise InputError("--label", f"at most {MAX_LABEL_CHARS} printable characters")
    check_new_output(out, force)
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
    """Text watermarks: token-level (KGW, EXP, ITS, MajorMark, MajorMark+, SynthID), post-hoc black-box, zero-shot detection."""


def _scheme_option(generation: bool = False):
    from text_wm.registry import GENERATION_SCHEMES, SCHEME_NAMES

    names = GENERATION_SCHEMES if generation else SCHEME_NAMES
    return click.option("--scheme", required=True, type=click.Choice(names), help="Watermark scheme.")


_synthid_config_option = click.option(
    "--synthid-config", default=None, type=click.Path(dir_okay=False),
    help="synthid only: transformers' SynthIDTextWatermarkingConfig as JSON (its to_json_file; the keys are secret).")


def _text_key(scheme: str, key_file: str | None, synthid_config: str | None):
    """The key ``scheme`` runs with: SynthID's config file for synthid, a key file for the rest."""
    wanted, given = ("--synthid-config", synthid_config) if scheme == "synthid" else ("--key", key_file)
    other = key_file if scheme == "synthid" else synthid_config
    if given is None or other is not None:
        raise click.UsageError(f"--scheme {scheme} takes {wanted} FILE" + (" (and not --key)" if scheme == "synthid"
                                                                           else " (--synthid-config is for synthid)"))
    return load_text_key(scheme, given)


def _read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if (prompt is None) == (prompts_file is None):
        raise click.UsageError("give exactly one of --prompt or --prompts")
    source = "--prompt" if prompt is not None else prompts_file
    lines = [prompt] if prompt is not None else read_text(prompts_file).splitlines()
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InputError(source, "no prompt given (empty prompt text)")
    return prompts


def _payload_for(watermark, payload: str | None) -> str | None:
    """The checked hex payload: required by multi-bit text schemes, refused by zero-bit ones."""
    payload_bytes = getattr(watermark, "payload_bytes", 0)
    parsed = parse_payload_hex(payload, payload_bytes, watermark.name)
    if payload_bytes and parsed is None:
        raise InputError("--payload", f"{watermark.name} embeds a {payload_bytes}-byte message: give it as "
                                      f"{2 * payload_bytes} hex digits")
    return None if parsed is None else parsed.hex()


@text.command("synthid-config")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Config file to write (mode 0600).")
@click.option("--depth", default=30, show_default=True, type=click.IntRange(1, 64), help="Tournament layers (one key each).")
@click.option("--ngram-len", default=5, show_default=True, type=click.IntRange(2, 16), help="Tokens per hashed n-gram.")
@click.option("--force", is_flag=True, help="Overwrite an existing file (the old config is lost).")
def text_synthid_config(out, depth, ngram_len, force):
    """Write a fresh SynthID-Text config with random keys, as transformers' to_json_file lays it out."""
    from text_wm.synthid import SynthIDKey

    key = SynthIDKey.generate(depth=depth, ngram_len=ngram_len)
    key.save(out, overwrite=force)
    click.echo(f"wrote SynthID config {key.key_id} ({depth} layers, {ngram_len}-grams) to {out}", err=True)


@text.command("generate")
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False), help="Key file (every scheme but synthid).")
@_synthid_config_option
@_scheme_option(generation=True)
@click.option("--payload", default=None, help="Hex payload for multi-bit schemes (majormark).")
@click.option("--model", default=None, type=click.Path(), help="Local causal LM directory or .gguf file.")
@click.option("--prompt", default=None, help="One prompt.")
@click.option("--prompts", "prompts_file", default=None, type=click.Path(dir_okay=False), help="File, one prompt a line.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=1.0, show_default=True, type=FiniteFloatRange(0.05, 5.0))
@click.option("--chat/--no-chat", default=True, show_default=True, help="Wrap prompts in the model's chat template.")
@click.option("--seed", default=None, type=int, help="Sampling seed for reproducible output.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the generation records here (.jsonl) instead of the texts to stdout.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--compile", "compile_kernels", is_flag=True,
              help="Fuse the watermark's per-step work with torch.compile (KGW, MajorMark): 10-25 s once, then faster.")
def text_generate(key_file, synthid_config, scheme, payload, model, prompt, prompts_file, max_new_tokens, temperature,
                  chat, seed, out, force, compile_kernels):
    """Generate watermarked text with a local LLM (default SmolLM2-135M); synthid through transformers'
    own generate(watermarking_config=...)."""
    quiet_libraries()
    from provenance.models import load_text_model
    from text_wm.generate import generate_watermarked
    from text_wm.registry import get_scheme

    key = _text_key(scheme, key_file, synthid_config)
    prompts = _read_prompts(prompt, prompts_file)
    out_path = Path(out) if out else None
    if out_path is not None:
        check_jsonl_output(out_path, force, "generation records")
    watermark = get_scheme(scheme)
    checked_payload = _payload_for(watermark, payload)
    processor_kwargs = {"payload": checked_payload} if checked_payload is not None else {}
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


@text.command("detect")
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False), help="Key file (every scheme but synthid).")
@_synthid_config_option
@_scheme_option()
@click.option("--model", default=None, type=click.Path(), help="Local model whose tokenizer generated the text.")
@click.option("--fpr", default=TEXT_DEFAULT_FPR, show_default=True, type=FiniteFloatRange(1e-12, 0.5, min_open=True))
@max_text_bytes_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.argument("files", nargs=-1, required=True)
def text_detect(key_file, synthid_config, scheme, model, fpr, max_text_bytes, as_json, files):
    """Test FILES (plain text; .jsonl/.ndjson files hold one record a line, as `text generate --out`
    writes them) for the watermark, as received and in canonical form (NFKC, homoglyphs folded,
    invisible characters and emoji removed; Bonferroni over the two). Every readable text gets a
    verdict, every unreadable one an error line (exit 2)."""
    quiet_libraries()
    from provenance.models import load_tokenizer
    from text_wm.canonical import detect_forms
    from text_wm.registry import get_scheme

    key = _text_key(scheme, key_file, synthid_config)
    watermark = get_scheme(scheme)
    inputs = read_text_inputs(files, max_text_bytes)
    tokenizer = load_tokenizer(model) if any(i.error is None for i in inputs) else None
    options = {"progress": True} if scheme in LONG_DETECTION_SCHEMES else {}

    def detect(texts, level):
        return [watermark.detect(text, key, tokenizer, fpr=level, **options) for text in texts]

    outcomes = [(i.name, i.error or attempt(i.name, lambda i=i: detect_forms(detect, [i.text], fpr)[0])) for i in inputs]
    report(outcomes, as_json, lambda name, result: f"{name}: {result.summary()}")


def _scan_specs(pairs: list[tuple[str, str]], image_settings: dict, video_settings: dict, text_settings: dict,
                fpr: float | None) -> list[ScanSpec]:
    """One ``ScanSpec`` per (scheme, key file): the key file read (and checked) here, its secret left
    behind; each modality's settings, with the scheme's own default FPR unless ``--fpr``."""
    specs = []
    for scheme, key_file in pairs:
        key_id = (load_text_key(scheme, key_file) if scheme in TEXT_SCHEMES else _load_key(key_file)).key_id
        if scheme == video_scan.SCHEME:
            specs.append(ScanSpec(video_scan.MODALITY, scheme, key_file, key_id,
                                  {**video_settings, "fpr": LATENT_DEFAULT_FPR if fpr is None else fpr}))
        elif scheme in IMAGE_SCHEMES:
            level = get_image_scheme(scheme).default_fpr if fpr is None else fpr
            specs.append(ScanSpec(image_scan.MODALITY, scheme, key_file, key_id, {**image_settings, "fpr": level}))
        elif scheme in TEXT_SCHEMES:
            specs.append(ScanSpec(text_scan.MODALITY, scheme, key_file, key_id,
                                  {**text_settings, "fpr": TEXT_DEFAULT_FPR if fpr is None else fpr}))
        else:
            raise InputError("--scheme", f"unknown scheme {scheme!r} (images: {', '.join(IMAGE_SCHEMES)}; "
                                         f"videos: {video_scan.SCHEME}; texts: {', '.join(TEXT_SCHEMES)})")
    if len({spec.settings_id for spec in specs}) < len(specs):
        raise InputError("--scheme", "the same scheme and key are named twice")
    return specs


@main.command()
@click.option("--scheme", "schemes", multiple=True, help="Watermark to scan for (repeat, each with its --key).")
@click.option("--key", "key_files", multiple=True, type=click.Path(dir_okay=False), help="Key file of each --scheme.")
@click.option("--spec", "spec_file", default=None, type=click.Path(dir_okay=False),
              help="YAML or JSON list of {scheme: NAME, key: KEY_FILE} (in place of --scheme/--key).")
@model_options()
@steps_option
@image_fpr_option
@resync_option
@max_pixels_option
@click.option("--video-model", default=None, type=click.Path(file_okay=False),
              help="Local diffusers text-to-video folder for videomark (default: the reference video model).")
@click.option("--text-model", default=None, type=click.Path(),
              help="Local model whose tokenizer made the texts (default: the default LM).")
@click.option("--text-column", default="text", show_default=True, help="Text column of CSV, Parquet and JSONL datasets.")
@max_text_bytes_option
@click.option("--batch", default=None, type=click.IntRange(1, 100_000),
              help=f"Items per unit of work (default: {IMAGE_UNIT} images, {VIDEO_UNIT} video, {TEXT_UNIT} texts).")
@click.option("--workers", default=None, type=click.IntRange(0, 100_000),
              help="Ray actors, one model load each (default: this machine's cores); 0: in this process, no Ray.")
@click.option("--address", default=None,
              help="Join this Ray cluster (auto, HOST:PORT or ray://HOST:PORT); default: a local Ray for the run.")
@click.option("--gpus-per-worker", default=None, type=FiniteFloatRange(0, 64),
              help="GPUs reserved per actor (default: 1 with --device cuda, else 0).")
@click.option("--out", required=True, type=click.Path(), help="Scan folder: new, empty, or an earlier scan (resumed).")
@click.option("--force", is_flag=True, help="Start afresh in a folder holding other files or an earlier scan.")
@click.argument("inputs", nargs=-1, required=True)
def scan(schemes, key_files, spec_file, choice, steps, fpr, resync, max_pixels, video_model, text_model, text_column,
         max_text_bytes, batch, workers, address, gpus_per_worker, out, force, inputs):
    """Scan INPUTS (image and video files, folders, globs; text datasets as .jsonl, .csv or .parquet) for one
    or several watermarks on Ray. Writes OUT/rows.jsonl (each row as it is scored) and
    OUT/results.parquet: one row per item and watermark, with the p-value, verdict and payload,
    or the error that kept the item from a verdict. A rerun into OUT scores only items not yet
    scored under the same settings."""
    if spec_file is not None and (schemes or key_files):
        raise InputError("--spec", "give either --spec or --scheme/--key pairs, not both")
    if spec_file is None and (not schemes or len(schemes) != len(key_files)):
        raise InputError("--scheme", "give each --scheme its --key (or a --spec file)")
    pairs = read_spec(spec_file) if spec_file is not None else list(zip(schemes, key_files))
    image_settings = {"model": choice.model or "reference", "dtype": choice.dtype, "captioner": choice.captioner,
                      "steps": steps, "resync": resync}
    video_settings = {"model": video_model or "reference", "dtype": choice.dtype, "steps": steps, "resync": resync}
    specs = _scan_specs(pairs, image_settings, video_settings, {"model": text_model or "default"}, fpr)
    for spec in specs:
        if spec.modality == image_scan.MODALITY:
            check_captioner(get_image_scheme(spec.scheme), choice.model or "reference",
                            choice.model is None or choice.captioner is not None)
    files = expand_inputs(inputs, lambda path: image_scan.is_image(path) or video_scan.is_video(path)
                          or text_scan.is_text_dataset(path))
    cluster = Cluster((os.cpu_count() or 1) if workers is None else workers, address,
                      gpus=(1.0 if (choice.device or "").startswith("cuda") else 0.0)
                      if gpus_per_worker is None else gpus_per_worker)
    units, scorers = [], {}
    image_specs = [spec.to_dict() for spec in specs if spec.modality == image_scan.MODALITY]
    images = [{"modality": image_scan.MODALITY, "item": path} for path in files if image_scan.is_image(path)]
    if images and image_specs:
        units += units_of(images, batch or IMAGE_UNIT)
        scorers[image_scan.MODALITY] = (image_scan.ImageScorer, {
            "specs": image_specs, "max_pixels": max_pixels,
            "model": {"model": choice.model, "dtype": choice.dtype, "device": choice.device,
                      "captioner": choice.captioner}})
    video_specs = [spec.to_dict() for spec in specs if spec.modality == video_scan.MODALITY]
    videos = [{"modality": video_scan.MODALITY, "item": path} for path in files if video_scan.is_video(path)]
    if videos and video_specs:
        units += units_of(videos, batch or VIDEO_UNIT)
        scorers[video_scan.MODALITY] = (video_scan.VideoScorer, {
            "specs": video_specs, "max_pixels": max_pixels,
            "model": {"model": video_model, "dtype": choice.dtype, "device": choice.device}})
    text_specs = [spec.to_dict() for spec in specs if spec.modality == text_scan.MODALITY]
    texts = [{"modality": text_scan.MODALITY, **item} for path in files if text_scan.is_text_dataset(path)
             for item in text_scan.read_dataset(path, text_column, max_text_bytes)]
    if texts and text_specs:
        units += units_of(texts, batch or TEXT_UNIT)
        scorers[text_scan.MODALITY] = (text_scan.TextScorer, {"specs": text_specs, "model": text_model})
    if not units:
        raise InputError("scan", "no input matches a scheme scanned for (image schemes scan images, videomark "
                                 "videos, text schemes text datasets)")
    folder = ScanFolder.open(out, force)
    wanted = {spec.settings_id for spec in specs}
    done = {settings: sorted(hashes) for settings, hashes in folder.done().items() if settings in wanted}
    for _, arguments in scorers.values():
        arguments["done"] = done
    quiet_libraries()
    new_rows: list[dict] = []

    def take(rows: list[dict], items: int) -> None:
        folder.append(rows)
        new_rows.extend(rows)
        bar.update(items)

    with tqdm(total=sum(len(unit) for unit in units), desc="scan", unit="item") as bar:
        run_units(units, scorers, cluster, take)
    folder.export()
    expected = sum(len(unit) * len(scorers[unit[0]["modality"]][1]["specs"]) for unit in units)
    errors = dict.fromkeys(row["error"] for row in new_rows if row["error"] is not None)
    failed = sum(row["error"] is not None for row in new_rows)
    for line in summarise(new_rows):
        click.echo(line)
    click.echo(f"{len(new_rows) - failed} scored, {failed} errors, {expected - len(new_rows)} skipped (already "
               f"scored under the same settings): {folder.table}")
    for message in errors:
        click.echo(f"error: {message}", err=True)
    if errors:
        raise click.exceptions.Exit(2)


for _command in (image, video, audit, attack, dataset, traps):
    main.add_command(_command)
for _command in (text_watermark, zeroshot):
    text.add_command(_command)

if __name__ == "__main__":
    main()
