"""``provenance audit`` (scheme x attack x strength grids) and ``provenance attack`` (one file).

Registered on the top-level ``provenance`` group (``cli.py``), whose error handling turns bad
input (unknown schemes or attacks, strengths out of range, unreadable files) into a one-line
error with exit code 2. Arguments are checked before any model loads.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from attacks.audit import KEY_FILE
from image_wm.resync import RESYNC_MODES
from provenance import __version__
from provenance.cli_support import FiniteFloatRange
from provenance.files import check_new_output, write_text_atomic
from provenance.readers import InputError, read_text

MODALITIES = ("image", "video", "text")
DEFAULT_LEVELS = 5


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _strengths(value: str | None) -> list[float] | None:
    """``--strengths``: comma-separated finite numbers (at least one), or None when not given."""
    if value is None:
        return None
    shown = value if len(value) <= 40 else value[:40] + "..."
    try:
        parsed = [float(part) for part in _split(value)]
    except ValueError:
        parsed = []
    if not parsed or not all(math.isfinite(v) for v in parsed):
        raise InputError("--strengths", f"must be comma-separated finite numbers, got {shown!r}")
    return parsed


def _audit_key(key_file: str | None, out: Path):
    """The given key, else the out folder's own key; ``fresh`` says it is new and still to be saved.

    The key is the audit's identity (its id is one of the audit's settings), so ``OUT/key.json``
    is reused whenever no ``--key`` is given, also with ``--force``, and never removed or replaced.
    """
    from provenance.keys import WatermarkKey

    if key_file is not None:
        return WatermarkKey.load(key_file), False
    if (out / KEY_FILE).exists():
        return WatermarkKey.load(out / KEY_FILE), False
    return WatermarkKey.generate(label="audit"), True


@click.command("audit")
@click.option("--modality", required=True, type=click.Choice(MODALITIES))
@click.option("--schemes", required=True, help="Comma-separated scheme names.")
@click.option("--attacks", "attack_names", required=True, help="Comma-separated attack names.")
@click.option("--strengths", default=None, help="Comma-separated strengths for every attack (default: --levels).")
@click.option("--levels", default=None, type=click.IntRange(1, 50),
              help="Strengths per attack, evenly over its range (default 5); not with --strengths.")
@click.option("--n", "n", default=100, show_default=True, type=click.IntRange(1, 100_000), help="Items per cell.")
@click.option("--fpr", default=0.01, show_default=True, type=FiniteFloatRange(0, 0.5, min_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False),
              help="Key file (default: OUT/key.json, made fresh if OUT has none).")
@click.option("--model", default=None, type=click.Path(), help="Local model folder (diffusers or causal LM).")
@click.option("--steps", default=None, type=click.IntRange(1, 1000),
              help="Image generation and DDIM inversion steps (default 25).")
@click.option("--tokens", default=200, show_default=True, type=click.IntRange(8, 4096),
              help="New tokens per generated text.")
@click.option("--resync", default="off", show_default=True, type=click.Choice(RESYNC_MODES),
              help="Latent image schemes: undo geometric edits before inversion (image detect --resync).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0, 100_000),
              help="Run the cells on this many Ray actors (one model load each); 0: in this process.")
@click.option("--address", default=None,
              help="With --workers: join this Ray cluster (auto, HOST:PORT or ray://...); default: a local Ray.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: new, empty, or holding this same audit (then resumed).")
@click.option("--force", is_flag=True,
              help="Start afresh: replace the audit in OUT (its results, report and examples; OUT/key.json is kept) "
                   "or write beside other files in OUT.")
def audit(modality, schemes, attack_names, strengths, levels, n, fpr, seed, key_file, model, steps, tokens, resync,
          workers, address, out, force):
    """Run a scheme x attack x strength audit; writes results.json, results.csv, report.html and summary.md to OUT.

    OUT records the audit's settings in audit.json. Run again with the same settings, the audit
    resumes (finished cells are reused); with other settings it is refused unless --force, which
    starts afresh. A folder of other files is refused unless --force.
    """
    from attacks.audit import (TargetRecipe, audit_settings, check_audit_folder, grid_strengths, resolve_attacks,
                               run_audit, start_audit_folder)
    from provenance.scan.engine import Cluster
    from attacks.audit_targets import make_targets
    from attacks.report import write_report

    scheme_names, names = _split(schemes), _split(attack_names)
    if not scheme_names or not names:
        raise ValueError("--schemes and --attacks need at least one name each")
    if strengths is not None and levels is not None:
        raise ValueError("give --strengths or --levels, not both")
    levels = DEFAULT_LEVELS if levels is None else levels
    values = _strengths(strengths)
    out_dir = Path(out)
    # names and strengths are checked before the out folder or a key file is written
    for chosen in resolve_attacks(modality, names):
        grid_strengths(chosen, values, levels)
    key, fresh = _audit_key(key_file, out_dir)
    targets = make_targets(modality, scheme_names, key, model=model, steps=steps, tokens=tokens, resync=resync)
    grid = f"--strengths {','.join(f'{v:g}' for v in values)}" if values else f"--levels {levels}"
    command = (f"provenance audit --modality {modality} --schemes {','.join(scheme_names)} --attacks {','.join(names)} "
               f"{grid} --n {n} --fpr {fpr:g} --seed {seed}" + (f" --model {model}" if model else "")
               + (f" --steps {steps}" if steps else "") + (f" --tokens {tokens}" if modality == "text" else "")
               + (f" --resync {resync}" if resync != "off" else ""))
    config = {"command": command, "version": __version__, "modality": modality, "schemes": scheme_names,
              "attacks": names, "strengths": values, "levels": None if values else levels, "n": n, "fpr": fpr,
              "seed": seed, "key_id": key.key_id, "model": model or "default", "steps": steps,
              "tokens": tokens if modality == "text" else None,
              "resync": resync if modality == "image" and resync != "off" else None}
    # OUT is judged before any model loads and before anything in it is written (attacks.audit)
    settings = audit_settings(config)
    how = check_audit_folder(out_dir, settings, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fresh:  # mode 0600; the secret is never printed
        key.save(out_dir / KEY_FILE)
        click.echo(f"new key {key.key_id} stored in {out_dir / KEY_FILE}", err=True)
    start_audit_folder(out_dir, settings, how)
    if how == "resume":
        click.echo(f"reusing the finished cells of the audit in {out_dir}", err=True)
    t0 = time.perf_counter()
    recipe = TargetRecipe(modality, str(key_file or out_dir / KEY_FILE), model=model, steps=steps, tokens=tokens,
                          resync=resync)
    cells = run_audit(targets, names, out_dir, strengths=values, levels=levels, n=n, seed=seed, fpr=fpr,
                      resume=how == "resume", cluster=Cluster(workers, address), recipe=recipe)
    paths = write_report(cells, out_dir, config)
    click.echo(f"{len(cells)} cells in {time.perf_counter() - t0:.0f} s: "
               + ", ".join(str(p) for p in paths.values()))


# -- single files -----------------------------------------------------------------------
def _single_file_attack(modality: str, name: str):
    """The attack, refusing ones that need more than the content (a cover, say) with a clear message."""
    from attacks.registry import get

    attack = get(name)
    if attack.modality != modality:
        raise ValueError(f"attack {name!r} is for {attack.modality}, not {modality}")
    required = [p.name for p in list(inspect.signature(attack.fn).parameters.values())[3:]
                if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise ValueError(f"attack {name!r} needs {', '.join(required)}; use it from Python or an audit")
    return attack


def _attack_options(fn):
    for option in reversed([
        click.option("--name", required=True, help="Attack name (see attacks.names())."),
        click.option("--strength", default=None, type=float, help="Attack strength (default: the attack's default)."),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--out", required=True, type=click.Path(), help="File to write (video: a folder means PNG frames)."),
        click.option("--force", is_flag=True, help="Overwrite --out if it exists."),
        click.argument("source", type=click.Path()),
    ]):
        fn = option(fn)
    return fn


@click.group("attack")
def attack() -> None:
    """Apply one registered attack to one file."""


def _attack_file(modality: str, name: str, strength: float | None, seed: int, out: str, check_output: Callable[[], Any],
                 load: Callable[[], tuple[Any, Callable[[Any], Any]]]) -> None:
    """Check the attack, its strength and the output, then load the content (with the function
    that saves an attacked copy), attack it and save: every argument is refused before the
    (possibly slow) attack runs."""
    chosen = _single_file_attack(modality, name)
    chosen.check_strength(strength)
    check_output()
    content, save = load()
    save(chosen(content, strength, seed))
    click.echo(f"wrote {out}")


@attack.command("image")
@_attack_options
def attack_image(name, strength, seed, out, force, source):
    """Attack an image file; OUT's suffix picks the format (.png keeps the result lossless)."""
    from image_wm.image_io import check_image_output, read_image, write_image

    _attack_file("image", name, strength, seed, out, lambda: check_image_output(out, force),
                 lambda: (read_image(source), lambda image: write_image(out, image)))


@attack.command("video")
@_attack_options
def attack_video(name, strength, seed, out, force, source):
    """Attack a video file (.mp4, .webm, .gif, ...) or frame folder; writes OUT by its suffix (a path
    without one is a folder of PNG frames, replaced whole with --force); keeps the frame rate."""
    from image_wm.video.video_io import check_video_output, read_video, write_video

    def load():
        clip = read_video(source)
        return clip.frames, lambda frames: write_video(out, frames, clip.fps, overwrite=force)

    _attack_file("video", name, strength, seed, out, lambda: check_video_output(out, force), load)


@attack.command("text")
@_attack_options
def attack_text(name, strength, seed, out, force, source):
    """Attack a UTF-8 text file (``-`` reads standard input)."""
    _attack_file("text", name, strength, seed, out, lambda: check_new_output(out, force),
                 lambda: (read_text(source), lambda text: write_text_atomic(out, text)))
