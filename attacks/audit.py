"""Robustness audits: every scheme x attack x strength cell, resumable, deterministic under a seed.

The schemes come as targets (``attacks.audit_targets``), one per scheme, which make, detect and
attack their own items; this module plans the grid, runs its cells and keeps the partial results.

Per cell (scheme, attack, strength) the runner attacks the watermarked items and their twins with
the same seed and reports, with ``detected = p_value <= fpr`` (the detector's own calibrated
test, never a threshold fitted on the audit's data):
- removal attacks: ``tpr``, the fraction of attacked watermarked items still detected;
- forgery attacks: ``forge_success``, the fraction of forged items the detector accepts (the
  attack gets the watermarked item and, if it asks for a ``target``, another item's unwatermarked
  twin to carry the forged mark);
- both: ``fpr_attacked``, the fraction of attacked twins detected (an empirical FPR after the
  attack; for a forgery, a forger working from unwatermarked content), ``bit_accuracy`` (mean
  fraction of payload bits recovered; an undecoded payload counts as chance, 0.5) when the scheme
  carries a payload, and quality metrics of attacked against original content.
A ``none`` cell (no attack) gives the clean TPR and the empirical FPR on the twins.

Resumable: each finished cell is appended (flushed, fsynced) to ``partial.jsonl`` in the output
folder under a key of (modality, scheme, attack, strength, n, seed, fpr, key id, setup id); a
restarted audit skips those cells, and makes no items for a scheme whose cells are all done. The
setup id (``AuditTarget.setup_id``) hashes the model weights and the generation settings, so
retrained weights, another model or other step counts never reuse a finished cell. Items are remade
after a restart (they are deterministic under the seed), not stored. A partial file is read
leniently but strictly per line: a line that is not a whole, well-typed record (another tool's
JSON, a cut-off write, nesting too deep, a record whose key disagrees with its own fields) is
skipped, never trusted, and its cell is run again.

One output folder holds one audit, and an existing audit is never silently replaced. The command
line (``provenance audit``) records the audit's settings (``audit_settings``: modality, schemes,
attacks, strengths or levels, n, seed, fpr, key id, model, steps, tokens; not the version) in
``audit.json``, written atomically before any cell runs, and on every start decides by
``check_audit_folder``, before any model loads and before anything in the folder is written:
- no folder, an empty one, or one holding only ``key.json``: a new audit;
- an audit with the same settings: resumed (its finished cells are reused);
- an audit with other settings, or one whose ``audit.json`` cannot be read: refused with one line
  naming the settings that differ, unless ``--force`` (an audit that was started but finished no
  cell, say a mistyped ``--model``, holds nothing to lose and is replaced);
- files that are not an audit's (and no audit): refused unless ``--force``, which writes the
  audit beside them and leaves them alone;
- a file where the folder should be: refused, ``--force`` or not.
With ``--force`` the audit starts afresh (``start_audit_folder``): the old ``audit.json``, partial
results, results, report, summary and examples are removed before the new settings are recorded.
``OUT/key.json`` is never removed: the key is the audit's identity, and without ``--key`` an audit
keeps using the folder's key (it may be the only copy of a secret), forced or not.
Audits made before ``audit.json`` existed are judged by the config in their ``results.json``; one
interrupted before it wrote results (only ``partial.jsonl`` and examples) is resumed by cell key.
Every output file (``audit.json``, the partial file when rewritten, results, report, summary and
examples) is written atomically: a reader or a crash sees the old file or the new one.

``run_audit`` itself (the Python API) knows only the partial file: it reuses cells by key, so
several audits may share a folder there, and the folder rule above is the caller's to apply.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from attacks.audit_targets import COVER_PARAM, DEFAULT_TEXT_TOKENS, AuditTarget, Items, make_targets
from attacks.registry import Attack, Modality, get
from provenance.files import write_text_atomic
from provenance.keys import WatermarkKey
from provenance.readers import InputError, open_regular_file, parse_json, read_json_file
from provenance.result import DetectionResult
from provenance.scan.engine import Cluster, Unit, UnitScorer, run_units
from provenance.stats import check_fpr

NO_ATTACK = "none"
PARTIAL_FILE = "partial.jsonl"
EXAMPLES_DIR = "examples"
AUDIT_FILE = "audit.json"
KEY_FILE = "key.json"
RESULT_FILES = ("results.json", "results.csv", "report.html", "summary.md")
# what an audit writes into its folder; key.json is its key, kept across --force
AUDIT_OUTPUTS = (AUDIT_FILE, PARTIAL_FILE, *RESULT_FILES, EXAMPLES_DIR)
SETTING_FIELDS = ("modality", "schemes", "attacks", "strengths", "levels", "n", "fpr", "seed", "key_id", "model",
                  "steps", "tokens", "resync")
# fields added after audits were first recorded, with the value an older record means by leaving them out
LATER_FIELDS = {"resync": None}
MAX_PARTIAL_BYTES = 1 << 30  # a partial file is streamed line by line; this caps the whole file
MAX_RECORD_BYTES = 4 << 20  # a record is a few KiB; a longer line is skipped unread
MAX_AUDIT_FILE_BYTES = 1 << 20
MAX_RESULTS_BYTES = 256 << 20


def payload_bit_accuracy(result: DetectionResult, payload: bytes | None) -> float | None:
    """The scheme's own figure if it gave one, else decoded bits vs ``payload``; undecoded = 0.5 (chance)."""
    if payload is None:
        return None
    if result.bit_accuracy is not None:
        return float(result.bit_accuracy)
    if not result.decoded_payload:
        return 0.5
    truth = np.unpackbits(np.frombuffer(payload, np.uint8))
    got = np.unpackbits(np.frombuffer(bytes.fromhex(result.decoded_payload), np.uint8))
    if got.size != truth.size:
        return 0.5
    return float(np.mean(got == truth))


def cell_seed(seed: int, attack: str, strength: float) -> int:
    """The attack's seed for one cell: the same for every scheme (paired comparison), never from the key."""
    digest = hashlib.sha256(f"{seed}|{attack}|{strength!r}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# -- the grid ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CellSpec:
    """One cell of the grid; ``key`` identifies it in the partial file (public values only)."""

    modality: str
    scheme: str
    attack: str
    strength: float
    n: int
    seed: int
    fpr: float
    key_id: str
    setup_id: str

    @property
    def key(self) -> str:
        return json.dumps([self.modality, self.scheme, self.attack, self.strength, self.n, self.seed, self.fpr,
                           self.key_id, self.setup_id])


def resolve_attacks(modality: Modality, names: Sequence[str]) -> list[Attack]:
    """Registered attacks by name, each checked to be of ``modality``."""
    resolved = [get(name) for name in names]
    for attack in resolved:
        if attack.modality != modality:
            raise ValueError(f"attack {attack.name!r} is for {attack.modality}, not {modality}")
    return resolved


def grid_strengths(attack: Attack, strengths: Sequence[float] | None, levels: int) -> list[float]:
    """The given strengths (each checked against the attack's range) or ``levels`` spread over it, mildest first."""
    if strengths is None:
        if levels < 1:
            raise ValueError("levels must be at least 1")
        return attack.strengths(levels)
    for s in strengths:
        if not attack.low <= s <= attack.high:
            raise ValueError(f"strength {s:g} outside attack {attack.name!r}'s range [{attack.low:g}, {attack.high:g}]"
                             + (f" ({attack.unit})" if attack.unit else ""))
    return [float(s) for s in strengths]


def plan(targets: Sequence[AuditTarget], attacks: Sequence[Attack], strengths: Sequence[float] | None, levels: int,
         n: int, seed: int, fpr: float) -> list[tuple[AuditTarget, Attack | None, CellSpec]]:
    """Every cell in report order: per scheme, the no-attack cell, then each attack mildest to strongest."""
    if n < 1:
        raise ValueError("n must be at least 1")
    check_fpr(fpr)
    per_attack = [(a, grid_strengths(a, strengths, levels)) for a in attacks]
    cells = []
    for target in targets:
        def spec(name: str, strength: float) -> CellSpec:
            return CellSpec(target.modality, target.scheme, name, float(strength), n, seed, float(fpr), target.key_id,
                            target.setup_id)

        cells.append((target, None, spec(NO_ATTACK, 0.0)))
        cells.extend((target, a, spec(a.name, s)) for a, values in per_attack for s in values)
    return cells


_NUMBER = (int, float)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "cell_key": (str,), "modality": (str,), "scheme": (str,), "attack": (str,), "kind": (str,),
    "strength": _NUMBER, "unit": (str,), "stronger": (str,), "n": (int,), "seed": (int,), "fpr": _NUMBER,
    "key_id": (str,), "setup_id": (str,), "tpr": (*_NUMBER, type(None)), "forge_success": (*_NUMBER, type(None)),
    "fpr_attacked": _NUMBER, "median_log10_p": _NUMBER, "bit_accuracy": (*_NUMBER, type(None)),
    "quality": (dict, type(None)), "example": (str,), "seconds": _NUMBER,
}


def _is_record(row: Any) -> bool:
    """A whole cell record as ``run_cell`` writes it, whose ``cell_key`` is the key of its own fields."""
    if not isinstance(row, dict):
        return False
    for name, types in _RECORD_TYPES.items():
        if name not in row:
            return False
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return False
    if not all(isinstance(m, str) and isinstance(v, _NUMBER) and not isinstance(v, bool)
               for m, v in (row["quality"] or {}).items()):
        return False
    example = row["example"]
    if example in ("", ".", "..") or Path(example).name != example or "\\" in example:
        return False  # a plain file name in the cell's examples folder, never a path out of it
    spec = CellSpec(row["modality"], row["scheme"], row["attack"], row["strength"], row["n"], row["seed"],
                    row["fpr"], row["key_id"], row["setup_id"])
    return spec.key == row["cell_key"]


def _bounded_lines(handle: Any, limit: int):
    """The file's lines, each at most ``limit`` bytes; a longer line is skipped without holding it."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            while line and not line.endswith(b"\n"):
                line = handle.readline(limit + 1)
            continue
        yield line


def read_partial(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished cells by key. The file is streamed (at most ``MAX_PARTIAL_BYTES``); a line that is
    not a whole record (cut off by an interrupted write, another tool's JSON, nested too deep, of
    the wrong types) is skipped. A partial file that is not a regular file is an ``InputError``."""
    path = Path(out_dir) / PARTIAL_FILE
    done: dict[str, dict[str, Any]] = {}
    if not (path.exists() or path.is_symlink()):
        return done
    with open_regular_file(path, MAX_PARTIAL_BYTES, "partial results file") as handle:
        for number, line in enumerate(_bounded_lines(handle, MAX_RECORD_BYTES), start=1):
            try:
                record = parse_json(line.decode("utf-8"), f"{path}:{number}")
            except (InputError, UnicodeDecodeError):
                continue
            if _is_record(record):
                done[record["cell_key"]] = record
    return done


def rewrite_partial(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """Keep only whole records (drops a line an interrupted write cut off), atomically."""
    write_text_atomic(out_dir / PARTIAL_FILE, "".join(json.dumps(r) + "\n" for r in records))


def append_partial(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / PARTIAL_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# -- the output folder ------------------------------------------------------------------
def audit_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of an audit's ``config`` that make it this audit (``SETTING_FIELDS``), as JSON
    gives them back (so a recorded copy compares equal)."""
    return json.loads(json.dumps({name: config.get(name) for name in SETTING_FIELDS}))


def _recorded_settings(out: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The settings the audit in ``out`` recorded, or why they cannot be read; ``(None, None)`` if
    it recorded none (no ``audit.json`` and no ``results.json``)."""
    for name, cap, pick in ((AUDIT_FILE, MAX_AUDIT_FILE_BYTES, lambda v: v.get("settings")),
                            ("results.json", MAX_RESULTS_BYTES, lambda v: v.get("config"))):
        path = out / name
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            value = read_json_file(path, cap, "audit file")
        except InputError as exc:
            return None, f"{name}: {exc.problem}"
        recorded = pick(value) if isinstance(value, dict) else None
        if isinstance(recorded, dict):
            recorded = {**LATER_FIELDS, **recorded}
        if not isinstance(recorded, dict) or not set(SETTING_FIELDS) <= set(recorded):
            return None, f"{name} holds no audit settings"
        return {field: recorded[field] for field in SETTING_FIELDS}, None
    return None, None


def _show(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _has_results(out: Path) -> bool:
    """Whether ``out`` holds anything an audit computed: a finished cell, an example or a result file."""
    partial = out / PARTIAL_FILE
    return (any((out / name).exists() or (out / name).is_symlink() for name in (*RESULT_FILES, EXAMPLES_DIR))
            or partial.is_symlink() or (partial.exists() and (not partial.is_file() or partial.stat().st_size > 0)))


def _foreign(out: Path) -> list[str]:
    """Names in ``out`` that no audit writes (an atomic writer's leftover temporaries aside)."""
    ours = {*AUDIT_OUTPUTS, KEY_FILE}
    return sorted(p.name for p in out.iterdir()
                  if p.name not in ours and not (p.name.startswith(".") and ".partial" in p.name))


def check_audit_folder(out: str | os.PathLike, settings: dict[str, Any], force: bool = False) -> str:
    """How an audit with ``settings`` may use ``out``: ``"new"``, ``"resume"`` or ``"replace"``
    (``force`` over another audit or foreign files). Reads only; refusals are one-line ``InputError``s
    naming ``out`` (the rule is in the module docstring)."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return "new"
    if not out.is_dir():
        raise InputError(out, "is a file, not a folder; choose another --out")
    settings = audit_settings(settings)
    audit_files = [name for name in AUDIT_OUTPUTS if (out / name).exists() or (out / name).is_symlink()]
    if force:  # afresh, whatever the folder holds
        return "replace" if audit_files else "new"
    recorded, unreadable = _recorded_settings(out)
    if recorded is not None:
        differ = [f"{name} {_show(recorded[name])} there, {_show(settings[name])} now"
                  for name in SETTING_FIELDS if recorded[name] != settings[name]]
        if not differ:
            return "resume"
        if not _has_results(out):  # started, but not one cell finished: nothing to lose
            return "replace"
        raise InputError(out, f"holds an audit with other settings ({'; '.join(differ)}); pass --force to replace "
                              "it, or choose another --out")
    if unreadable is not None:
        raise InputError(out, f"holds an audit whose settings cannot be read ({unreadable}); pass --force to replace "
                              "it, or choose another --out")
    if set(audit_files) - {PARTIAL_FILE, EXAMPLES_DIR}:  # a report without its results.json
        raise InputError(out, f"holds audit files ({', '.join(audit_files)}) but no audit settings; pass --force to "
                              "replace them, or choose another --out")
    if audit_files:  # an audit interrupted before audit.json existed: resumed by cell key
        return "resume"
    foreign = _foreign(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(out, f"holds other files ({shown}) and no audit; pass --force to write the audit beside "
                              "them, or choose another --out")
    return "new"


def start_audit_folder(out: str | os.PathLike, settings: dict[str, Any], how: str) -> Path:
    """Make ``out`` ready for the audit ``check_audit_folder`` judged ``how``: for ``"replace"`` the
    old audit's files go first (never ``key.json`` or foreign files); then the settings are
    recorded in ``audit.json`` (atomically) unless a resumed audit already holds them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if how == "replace":
        for name in AUDIT_OUTPUTS:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    path = out / AUDIT_FILE
    if how != "resume" or not path.exists():
        from provenance import __version__

        record = {"audit": 1, "version": __version__, "settings": audit_settings(settings)}
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def _rate(results: Sequence[DetectionResult], fpr: float) -> float:
    return float(np.mean([r.p_value <= fpr for r in results]))


def _median_log10_p(results: Sequence[DetectionResult]) -> float:
    return float(np.median([math.log10(max(r.p_value, 1e-300)) for r in results]))


def _example_stem(out_dir: Path, spec: CellSpec) -> Path:
    folder = out_dir / EXAMPLES_DIR / spec.modality / spec.scheme
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (spec.attack if spec.attack == NO_ATTACK else f"{spec.attack}-{spec.strength:g}")


def run_cell(target: AuditTarget, attack: Attack | None, spec: CellSpec, items: Items, out_dir: Path) -> dict[str, Any]:
    """Attack, detect and measure one cell; returns its JSON-ready record (one example item saved)."""
    t0 = time.perf_counter()
    n = spec.n
    cover_index = [(i + 1) % n for i in range(n)]  # another item's unwatermarked twin
    cover = (items.twins[cover_index] if isinstance(items.twins, np.ndarray)
             else [items.twins[i] for i in cover_index])
    if attack is None:
        attacked, attacked_twins, kind = items.marked, items.twins, NO_ATTACK
    else:
        seed = cell_seed(spec.seed, spec.attack, spec.strength)
        attacked = target.apply(attack, items.marked, spec.strength, seed, cover)
        attacked_twins = target.apply(attack, items.twins, spec.strength, seed, cover)
        kind = attack.kind
    marked_results = target.detect(attacked, spec.fpr, items.payload)
    twin_results = target.detect(attacked_twins, spec.fpr, items.payload)
    detection = _rate(marked_results, spec.fpr)
    accuracies = [payload_bit_accuracy(r, items.payload) for r in marked_results]
    # a forgery is judged against the content it was made on: the cover when it took one
    took_cover = attack is not None and COVER_PARAM in inspect.signature(attack.fn).parameters
    reference = cover if took_cover else items.marked
    quality = None if attack is None else target.quality(reference, attacked)
    example = target.save_example(attacked[0], _example_stem(out_dir, spec))
    return {
        "cell_key": spec.key, "modality": spec.modality, "scheme": spec.scheme, "attack": spec.attack,
        "kind": kind, "strength": spec.strength, "unit": attack.unit if attack else "",
        "stronger": attack.stronger if attack else "up", "n": n, "seed": spec.seed, "fpr": spec.fpr,
        "key_id": spec.key_id, "setup_id": spec.setup_id,
        "tpr": None if kind == "forgery" else detection,
        "forge_success": detection if kind == "forgery" else None,
        "fpr_attacked": _rate(twin_results, spec.fpr),
        "median_log10_p": _median_log10_p(marked_results),
        "bit_accuracy": None if items.payload is None else float(np.mean(accuracies)),
        "quality": quality, "example": example, "seconds": round(time.perf_counter() - t0, 3),
    }


@dataclass(frozen=True)
class TargetRecipe:
    """How a Ray worker rebuilds an audit's targets: public settings and the key file's path (the
    secret itself never travels)."""

    modality: str
    key_file: str
    model: str | None = None
    steps: int | None = None
    tokens: int = DEFAULT_TEXT_TOKENS
    resync: str = "off"

    def target(self, scheme: str) -> AuditTarget:
        (target,) = make_targets(self.modality, [scheme], WatermarkKey.load(self.key_file), model=self.model,
                                 steps=self.steps, tokens=self.tokens, resync=self.resync)
        return target


class AuditShards(UnitScorer):
    """A Ray actor running shards of an audit: a shard is some cells of one scheme, whose items it
    makes once (``target.make``, seeded as in the serial run) before running each cell."""

    def __init__(self, recipe: dict[str, Any], attack_names: Sequence[str], strengths: Sequence[float] | None,
                 levels: int, n: int, seed: int, fpr: float, out_dir: str, threads: int = 1) -> None:
        super().__init__(threads)
        self.recipe = TargetRecipe(**recipe)
        self.grid = (resolve_attacks(self.recipe.modality, attack_names), strengths, levels, n, seed, fpr)
        self.out = Path(out_dir)

    def score(self, items: Unit) -> list[dict[str, Any]]:
        target = self.recipe.target(items[0]["scheme"])
        cells = {spec.key: (attack, spec) for _, attack, spec in plan([target], *self.grid)}
        made = target.make(self.grid[3], self.grid[4])
        return [run_cell(target, *cells[item["cell"]], made, self.out) for item in items]


def shards(todo: Sequence[tuple[AuditTarget, Attack | None, CellSpec]], workers: int) -> list[Unit]:
    """The cells to run, one shard per scheme, each split so that there are at least ``workers``
    shards when there are that many cells (a split shard makes its scheme's items again)."""
    by_scheme: dict[str, list[CellSpec]] = {}
    for _, _, spec in todo:
        by_scheme.setdefault(spec.scheme, []).append(spec)
    pieces = max(1, -(-workers // max(1, len(by_scheme))))
    out = []
    for scheme, specs in by_scheme.items():
        size = -(-len(specs) // pieces)
        out += [[{"modality": spec.modality, "scheme": scheme, "cell": spec.key} for spec in specs[i:i + size]]
                for i in range(0, len(specs), size)]
    return out


def run_audit(targets: Sequence[AuditTarget], attack_names: Sequence[str], out_dir: str | os.PathLike, *,
              strengths: Sequence[float] | None = None, levels: int = 5, n: int = 100, seed: int = 0,
              fpr: float = 0.01, resume: bool = True, progress: bool = True, cluster: Cluster | None = None,
              recipe: TargetRecipe | None = None) -> list[dict[str, Any]]:
    """Run (or finish) the grid and return its cell records in report order.

    With ``resume`` finished cells found in ``out_dir/partial.jsonl`` are reused; without it the
    partial file is started afresh. All arguments are checked before any model is loaded. With a
    ``cluster`` of workers the cells run as shards on Ray (``AuditShards``, targets rebuilt from
    ``recipe``); each record is appended as its shard comes back, so resuming works the same.
    """
    out = Path(out_dir)
    modalities = {t.modality for t in targets}
    if len(modalities) != 1:
        raise ValueError("an audit covers one modality at a time")
    attacks = resolve_attacks(modalities.pop(), attack_names)
    cells = plan(targets, attacks, strengths, levels, n, seed, fpr)
    out.mkdir(parents=True, exist_ok=True)
    done = read_partial(out) if resume else {}
    rewrite_partial(out, list(done.values()))
    todo = [c for c in cells if c[2].key not in done]
    made: dict[str, Items] = {}
    with tqdm(total=len(cells), initial=len(cells) - len(todo), desc="audit", unit="cell",
              disable=not progress) as bar:
        if cluster is not None and cluster.workers > 0 and todo:
            if recipe is None:
                raise ValueError("an audit on Ray needs the recipe of its targets")

            def take(records: list[dict[str, Any]], count: int) -> None:
                for record in records:
                    append_partial(out, record)
                    done[record["cell_key"]] = record
                bar.update(count)

            arguments = {"recipe": asdict(recipe), "attack_names": list(attack_names),
                         "strengths": None if strengths is None else list(strengths), "levels": levels, "n": n,
                         "seed": seed, "fpr": fpr, "out_dir": str(out)}
            run_units(shards(todo, cluster.workers), {recipe.modality: (AuditShards, arguments)}, cluster, take)
            todo = []
        for target, attack, spec in todo:
            bar.set_postfix_str(f"{spec.scheme} {spec.attack} {spec.strength:g}")
            if spec.scheme not in made:
                made = {spec.scheme: target.make(n, seed)}  # one scheme's items in memory at a time
            record = run_cell(target, attack, spec, made[spec.scheme], out)
            append_partial(out, record)
            done[spec.key] = record
            bar.update(1)
    return [done[c[2].key] for c in cells]
