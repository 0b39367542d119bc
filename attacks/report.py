"""Audit results as ``results.json``, ``results.csv``, a self-contained ``report.html`` and ``summary.md``.

Why self-contained: a report is mailed, archived and opened offline, so every plot (matplotlib
PNG) and example image is embedded as a base64 ``data:`` URI and nothing is fetched. The HTML is
plain markup (no scripts). Plots put the mildest strength on the left, also for attacks whose
strength falls as they get stronger (JPEG quality): those axes are inverted.

Every file is built in memory and written atomically (``provenance.files.write_text_atomic``):
a reader, or a crash mid-write, sees the old file or the new one, never half a report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from attacks.audit import EXAMPLES_DIR, NO_ATTACK
from provenance.files import write_text_atomic

CSV_FIELDS = ("modality", "scheme", "attack", "kind", "strength", "unit", "n", "seed", "fpr", "key_id", "tpr",
              "forge_success", "fpr_attacked", "median_log10_p", "bit_accuracy", "example", "seconds")
THUMB_PX = 96


def csv_rows(cells: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat rows: the fixed columns plus ``quality_<metric>`` for each quality metric present."""
    metrics = sorted({m for c in cells for m in (c.get("quality") or {})})
    fields = [*CSV_FIELDS, *(f"quality_{m}" for m in metrics)]
    rows = []
    for cell in cells:
        row = {f: cell.get(f) for f in CSV_FIELDS}
        row.update({f"quality_{m}": (cell.get("quality") or {}).get(m) for m in metrics})
        rows.append({k: "" if v is None else v for k, v in row.items()})
    return fields, rows


def write_results(cells: Sequence[dict[str, Any]], out_dir: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    """``results.json`` (config and cells) and ``results.csv`` (one row per cell), each written atomically."""
    json_path, csv_path = out_dir / "results.json", out_dir / "results.csv"
    public = [{k: v for k, v in c.items() if k != "cell_key"} for c in cells]
    write_text_atomic(json_path, json.dumps({"config": config, "cells": public}, indent=2) + "\n")
    fields, rows = csv_rows(cells)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(csv_path, buffer.getvalue())
    return json_path, csv_path


# -- plots ------------------------------------------------------------------------------
def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return _png_uri(buffer.getvalue())


def _series(cells: Sequence[dict[str, Any]], attack: str, value) -> dict[str, tuple[list[float], list[float]]]:
    """scheme -> (strengths, values), skipping cells where ``value`` is None."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for c in cells:
        v = value(c)
        if c["attack"] == attack and v is not None:
            xs, ys = out.setdefault(c["scheme"], ([], []))
            xs.append(c["strength"])
            ys.append(v)
    return out


def attack_figure(cells: Sequence[dict[str, Any]], attack: str) -> str:
    """One attack's panels (detection, bit accuracy if any, each quality metric) against strength, as a data URI."""
    first = next(c for c in cells if c["attack"] == attack)
    forgery = first["kind"] == "forgery"
    detect_label = "forging success" if forgery else f"TPR at FPR {first['fpr']:g}"
    panels = [(detect_label, lambda c: c["forge_success"] if forgery else c["tpr"]),
              ("FPR on attacked twins", lambda c: c["fpr_attacked"])]
    if any(c["bit_accuracy"] is not None for c in cells if c["attack"] == attack):
        panels.append(("bit accuracy", lambda c: c["bit_accuracy"]))
    metrics = sorted({m for c in cells if c["attack"] == attack for m in (c["quality"] or {})})
    panels.extend((m, lambda c, m=m: (c["quality"] or {}).get(m)) for m in metrics)
    fig = Figure(figsize=(3.2 * len(panels), 2.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, value) in zip(axes, panels):
        for scheme, (xs, ys) in _series(cells, attack, value).items():
            ax.plot(xs, ys, marker="o", label=scheme)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"strength ({first['unit']})" if first["unit"] else "strength", fontsize=8)
        if label in (detect_label, "FPR on attacked twins", "bit accuracy"):
            ax.set_ylim(-0.03, 1.03)
        if first["stronger"] == "down":
            ax.invert_xaxis()
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{attack} ({first['kind']})", fontsize=10)
    return _figure_uri(fig)


# -- HTML pieces ------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _example_html(cell: dict[str, Any], out_dir: Path) -> str:
    """An embedded thumbnail for an image example, an excerpt for a text one (a note if it is gone)."""
    path = out_dir / EXAMPLES_DIR / cell["modality"] / cell["scheme"] / cell["example"]
    caption = "original" if cell["attack"] == NO_ATTACK else f"{cell['attack']} {cell['strength']:g}"
    if not path.is_file():
        return (f"<div class=text><b>{html.escape(caption)}</b><pre>(example {html.escape(path.name)} missing)</pre>"
                "</div>")
    if path.suffix == ".png":
        return (f'<figure><img src="{_png_uri(path.read_bytes())}" width="{THUMB_PX}" height="{THUMB_PX}" '
                f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    text = path.read_text(encoding="utf-8")
    excerpt = text[:600] + ("..." if len(text) > 600 else "")
    return f"<div class=text><b>{html.escape(caption)}</b><pre>{html.escape(excerpt)}</pre></div>"


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}figure{display:inline-block;
margin:2px;text-align:center;font-size:11px}.gallery{margin-bottom:1em}.text{display:inline-block;width:32%;
vertical-align:top;font-size:12px}pre{white-space:pre-wrap;background:#f6f6f6;padding:4px}img.plot{max-width:100%}"""


def render_html(cells: Sequence[dict[str, Any]], out_dir: Path, config: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    schemes = list(dict.fromkeys(c["scheme"] for c in cells))
    attacks = [a for a in dict.fromkeys(c["attack"] for c in cells) if a != NO_ATTACK]
    fpr = cells[0]["fpr"]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>Robustness audit</title><style>{STYLE}</style>"
             "</head><body><h1>Robustness audit</h1>",
             _table(["setting", "value"], [(k, json.dumps(v) if isinstance(v, list) else v)
                                           for k, v in config.items()]),
             f"<p>Detected means p &le; {fpr:g} under the detector's own calibrated test. TPR: attacked watermarked "
             "items detected; FPR on attacked twins: attacked unwatermarked items detected; forging success: forged "
             "items accepted. Bit accuracy counts an undecoded payload as 0.5.</p>",
             "<h2>Without attack</h2>",
             _table(["scheme", "TPR", "FPR (twins)", "median log10 p", "bit accuracy"],
                    [(c["scheme"], c["tpr"], c["fpr_attacked"], c["median_log10_p"], c["bit_accuracy"])
                     for c in cells if c["attack"] == NO_ATTACK])]
    parts.append("<h2>Attacks</h2>")
    for attack in attacks:
        parts.append(f'<h3>{html.escape(attack)}</h3><img class=plot src="{attack_figure(cells, attack)}" '
                     f'alt="{html.escape(attack)} against strength">')
    forgeries = [c for c in cells if c["kind"] == "forgery"]
    if forgeries:
        parts.append("<h2>Forging success</h2>")
        parts.append(_table(["scheme", "attack", "strength", "forging success", "FPR (forger without a watermark)"],
                            [(c["scheme"], c["attack"], c["strength"], c["forge_success"], c["fpr_attacked"])
                             for c in forgeries]))
    parts.append("<h2>Examples (first item of each cell)</h2>")
    for scheme in schemes:
        mine = [c for c in cells if c["scheme"] == scheme]
        parts.append(f"<h3>{html.escape(scheme)}</h3><div class=gallery>"
                     + "".join(_example_html(c, out_dir) for c in mine) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(cells: Sequence[dict[str, Any]], config: dict[str, Any]) -> str:
    """The grid as one markdown table under the command that made it (for docs/robustness.md)."""

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    rows = []
    for c in cells:
        quality = ", ".join(f"{m} {v:.3g}" for m, v in (c.get("quality") or {}).items())
        detected = c["forge_success"] if c["kind"] == "forgery" else c["tpr"]
        rows.append(f"| {c['scheme']} | {c['attack']} | {fmt(c['strength'])} | "
                    f"{'forged ' if c['kind'] == 'forgery' else ''}{fmt(detected)} | {fmt(c['fpr_attacked'])} | "
                    f"{fmt(c['bit_accuracy'])} | {quality or '-'} |")
    return (f"`{config.get('command', 'provenance audit')}` (n = {config.get('n')} per cell, detected at "
            f"p <= {config.get('fpr')}):\n\n"
            "| scheme | attack | strength | TPR (forgery: success) | FPR on attacked twins | bit accuracy | quality |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def write_report(cells: Sequence[dict[str, Any]], out_dir: str | Path, config: dict[str, Any]) -> dict[str, Path]:
    """``results.json``, ``results.csv``, ``report.html`` and ``summary.md``, each written atomically;
    returns their paths by name."""
    out = Path(out_dir)
    json_path, csv_path = write_results(cells, out, config)
    html_path = write_text_atomic(out / "report.html", render_html(cells, out, config))
    markdown_path = write_text_atomic(out / "summary.md", render_markdown(cells, config))
    return {"json": json_path, "csv": csv_path, "html": html_path, "markdown": markdown_path}
