"""Scan throughput on Ray against the serial loop, in the same run, on this machine.

Run: ``.venv/bin/python benchmarks/scale.py [--images 32] [--texts 512]``.
Images: unwatermarked reference-model scenes (detection costs the same whether or not a mark is
there), Gaussian Shading at 10 and 25 inversion steps, resync off, units of 8. Texts: human
passages, KGW and EXP, units of 64. Each configuration runs the scan engine serially in this
process (``workers=0``) and on a local Ray with 1 and 2 actors; items/s counts the whole run,
the actors' start and model loads included. Ray's own costs are measured apart: starting a local
Ray, and the time per unit of a scorer that does nothing. Peak memory is the largest resident
set of any actor process, sampled every 0.2 s. Writes the "Scale-out" section of
docs/benchmarks.md with a projection to a 16-node cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import write_section  # noqa: E402
from image_wm import scan as image_scan  # noqa: E402
from image_wm import scenes  # noqa: E402
from image_wm.image_io import write_image  # noqa: E402
from image_wm.schemes import get_scheme as image_scheme  # noqa: E402
from provenance.keys import WatermarkKey  # noqa: E402
from provenance.scan.engine import Cluster, UnitScorer, ray_session, run_units, units_of  # noqa: E402
from provenance.scan.rows import ScanSpec  # noqa: E402
from text_wm import scan as text_scan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Idle(UnitScorer):
    """Does nothing: what Ray costs per unit on its own."""

    def score(self, items):
        return []


class PeakMemory:
    """The largest resident set of any Ray actor process while the block runs (MiB)."""

    def __enter__(self):
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while self.running:
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                command = " ".join(process.info["cmdline"] or [])
                if "ray::" in command and "MapWorker" in command and process.info["memory_info"]:
                    self.peak = max(self.peak, process.info["memory_info"].rss >> 20)
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def timed_scan(units, scorers, workers):
    """(items/s over the whole run, items/s once every actor has returned its first unit, peak MiB)."""
    start, arrivals = time.perf_counter(), []
    with PeakMemory() as memory:
        run_units(units, scorers, Cluster(workers), lambda rows, count: arrivals.append((time.perf_counter(), count)))
    total = sum(count for _, count in arrivals)
    warm = max(1, workers)
    steady = (sum(count for _, count in arrivals[warm:]) / (arrivals[-1][0] - arrivals[warm - 1][0])
              if len(arrivals) > warm and arrivals[-1][0] > arrivals[warm - 1][0] else float("nan"))
    return total / (time.perf_counter() - start), steady, memory.peak


NODES, WORKERS_PER_NODE = 16, 16


def projection(rates: dict[str, float], threads: int) -> str:
    """Hours to scan a million items on a 16-node cluster of 16-core CPU machines like this one's cores,
    from the serial rate per thread."""
    lines = [f"- {name}: {1e6 / (rate / threads * NODES * WORKERS_PER_NODE) / 3600:.2f} h"
             for name, rate in rates.items()]
    return (f"Projection to 1 million items on {NODES} nodes x {WORKERS_PER_NODE} one-CPU actors, assuming each "
            f"actor scores at the serial rate above divided by its {threads} threads (conservative: two threads "
            "do not give twice one), start-up and model loads amortised to nothing, inputs read from shared "
            "storage as fast as they are scored, and cores as fast as these:\n\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    key_file = work / "key.json"
    WatermarkKey.from_seed("benchmark-scale").save(key_file)
    key_id = WatermarkKey.load(key_file).key_id
    paths = []
    for i, image in enumerate(scenes.generate(args.images, 2024)[0]):
        paths.append(str(write_image(work / f"{i:04d}.png", image)))
    passages = [json.loads(line) for line in (ROOT / "tests/data/human_passages.jsonl").read_text().splitlines()
                if line.strip()]
    texts = [{"modality": "text", "item": f"t:{i}", "text": passages[i % len(passages)] + f" ({i})"}
             for i in range(args.texts)]
    model = {"model": None, "dtype": "auto", "device": "cpu", "captioner": None}
    configurations = []
    for steps in (10, 25):
        spec = ScanSpec("image", "gaussian-shading", str(key_file), key_id,
                        {"steps": steps, "resync": "off", "fpr": image_scheme("gaussian-shading").default_fpr})
        units = units_of([{"modality": "image", "item": p} for p in paths], 8)
        scorers = {"image": (image_scan.ImageScorer, {"specs": [spec.to_dict()], "model": model,
                                                       "max_pixels": 1 << 26, "done": {}})}
        configurations.append((f"images, Gaussian Shading, {steps} steps", len(paths), units, scorers))
    for scheme in ("kgw", "exp"):
        spec = ScanSpec("text", scheme, str(key_file), key_id, {"fpr": 0.01})
        scorers = {"text": (text_scan.TextScorer, {"specs": [spec.to_dict()], "model": None, "done": {}})}
        configurations.append((f"texts, {scheme.upper()}", len(texts), units_of(texts, 32), scorers))

    rows, one_worker, threads = [], {}, torch.get_num_threads()
    start = time.perf_counter()
    with ray_session(Cluster(2)):
        startup = time.perf_counter() - start
        idle_units = units_of([{"modality": "idle", "item": str(i)} for i in range(200)], 1)
        run_units(idle_units[:2], {"idle": (Idle, {})}, Cluster(2), lambda rows, count: None)  # actors warm
        t0 = time.perf_counter()
        run_units(idle_units, {"idle": (Idle, {})}, Cluster(2), lambda rows, count: None)
        per_unit = (time.perf_counter() - t0) / len(idle_units)
        for name, count, units, scorers in configurations:
            timed_scan(units[:1], scorers, 0)  # imports and first model load out of the serial figure
            serial, _, _ = timed_scan(units, scorers, 0)
            one_worker[name] = serial
            line = [f"| {name} | {count} | {serial:.2f}"]
            for workers in (1, 2):
                overall, steady, peak = timed_scan(units, scorers, workers)
                line.append(f"{overall:.2f} ({overall / serial:.2f}x) | {steady:.2f} | {peak}")
            rows.append(" | ".join(line) + " |")
            print(rows[-1], flush=True)
    body = (f"`provenance scan`'s engine (`provenance/scan/engine.py`) on this machine: {args.images} reference-model "
            f"images (Gaussian Shading, resync off, units of 8) and {args.texts} human passages (units of 32), "
            "serially in one process and on a local Ray with 1 and 2 actors (one CPU each); items/s over the whole "
            f"run, actor start and model loads included (and its ratio to the serial loop in this process, warm, "
            f"{threads} threads), items/s once every actor has returned its first unit (steady; approximate, as "
            "Ray Data hands results back in bursts), and the peak resident memory of one actor.\n\n"
            "| items | n | serial items/s | 1 worker: items/s (vs serial) | steady | peak MiB | 2 workers: items/s "
            "(vs serial) | steady | peak MiB |\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nRay's own costs: starting a local Ray {startup:.1f} s; a unit through warm actors that do "
              f"nothing {per_unit * 1000:.0f} ms.\n\n" + projection(one_worker, threads))
    write_section("Scale-out", body)
    ray.shutdown()


if __name__ == "__main__":
    main()
