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
after a restart (they are deterministic under the seed), not stored.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from attacks.audit_targets import COVER_PARAM, AuditTarget, Items
from attacks.registry import Attack, Modality, get
from provenance.files import write_text_atomic
from provenance.result import DetectionResult
from provenance.stats import check_fpr

NO_ATTACK = "none"
PARTIAL_FILE = "partial.jsonl"
EXAMPLES_DIR = "examples"


def payload_bit_accuracy(result: DetectionResult, payload: bytes | None) -> float | None:
    """The scheme's own figure if it gave one, else decoded bits vs ``payload``; undecoded = 0.5 (chance)."""
    if payload is None:
        return None
    if result.bit_accuracy is not None:
        return float(result.bit_accuracy)
    if not result.payload:
        return 0.5
    truth = np.unpackbits(np.frombuffer(payload, np.uint8))
    got = np.unpackbits(np.frombuffer(bytes.fromhex(result.payload), np.uint8))
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


def read_partial(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished cells by key; a last line cut off by an interrupted write is ignored."""
    path = out_dir / PARTIAL_FILE
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
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


def run_audit(targets: Sequence[AuditTarget], attack_names: Sequence[str], out_dir: str | os.PathLike, *,
              strengths: Sequence[float] | None = None, levels: int = 5, n: int = 100, seed: int = 0,
              fpr: float = 0.01, resume: bool = True, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or finish) the grid and return its cell records in report order.

    With ``resume`` finished cells found in ``out_dir/partial.jsonl`` are reused; without it the
    partial file is started afresh. All arguments are checked before any model is loaded.
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
        for target, attack, spec in todo:
            bar.set_postfix_str(f"{spec.scheme} {spec.attack} {spec.strength:g}")
            if spec.scheme not in made:
                made = {spec.scheme: target.make(n, seed)}  # one scheme's items in memory at a time
            record = run_cell(target, attack, spec, made[spec.scheme], out)
            append_partial(out, record)
            done[spec.key] = record
            bar.update(1)
    return [done[c[2].key] for c in cells]
