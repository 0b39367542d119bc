"""Run units of work through a pool of Ray actors, one model load per actor, and hand their rows
back as each unit finishes.

Why Ray Data: ``map_batches`` over a callable class with a fixed ``ActorPoolStrategy`` is the
standard pattern for batch inference (an actor keeps its model between calls, the stream has
back-pressure, a cluster is joined by address). Each dataset row is one *unit*, a fixed list of
items the driver cut up front, and each call gets exactly one unit (``batch_size=1``): the batch
a detector sees is then the same whatever Ray does with blocks, so a scan's p-values equal those
of the serial detectors given the same batches, bit for bit on a CPU.

``Cluster.workers == 0`` runs the same scorer in this process, without Ray (the serial baseline).
Without an address a local Ray is started for the call and shut down after it; with one, an
existing cluster is joined and left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Unit = list[dict[str, Any]]  # the items of one unit of work, JSON-ready
# what the workers need from the driver's environment (never a key: workers load keys from files)
FORWARDED_ENVIRONMENT = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROVENANCE_DEVICE", "PROVENANCE_DATA")


@dataclass(frozen=True)
class Cluster:
    """Where units run: ``workers`` actors (0: this process), on the Ray at ``address`` (None: a
    local Ray started for the run), each with ``cpus`` CPUs and ``gpus`` GPUs reserved."""

    workers: int
    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        """torch threads per actor: its reserved CPUs, at least one."""
        return max(1, int(self.cpus))


class UnitScorer:
    """A Ray Data callable class: ``score(items) -> rows`` for one unit, with the JSON plumbing and
    the thread count done once here. Subclasses load their models lazily, on the first unit that
    needs them, so a rerun with nothing new to score loads nothing."""

    def __init__(self, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)

    def score(self, items: Unit) -> list[dict[str, Any]]:
        raise NotImplementedError

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One output row per unit: its rows as one JSON list (so a unit's rows arrive together) and
        its item count (for progress)."""
        encoded = [json.dumps(self.score(json.loads(unit))) for unit in batch["unit"]]
        return {"rows": np.array(encoded, dtype=object), "items": np.asarray(batch["items"])}


def units_of(items: Sequence[dict[str, Any]], size: int) -> list[Unit]:
    """Consecutive units of ``size`` items."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@contextlib.contextmanager
def ray_session(cluster: Cluster) -> Iterator[None]:
    """Ray ready for ``cluster``: joined at its address, or a local Ray started now (``workers``
    CPUs) and shut down on exit. A Ray already initialised in this process is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray's C++ core logs a warning-level note as an error line on stderr for every actor pool
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    environment = {name: os.environ[name] for name in FORWARDED_ENVIRONMENT if name in os.environ}
    options: dict[str, Any] = {"runtime_env": {"env_vars": environment}, "logging_level": "ERROR",
                               "log_to_driver": False, "configure_logging": True}
    if cluster.address is None:
        options.update(num_cpus=max(1, int(cluster.workers * cluster.cpus)), include_dashboard=False)
    ray.init(address=cluster.address, **options)
    try:
        yield
    finally:
        ray.shutdown()


class ByModality(UnitScorer):
    """One actor for every modality of a scan: each unit goes to the scorer of its items' modality
    (``unit[0]["modality"]``), built on first use from ``scorers[modality] = (class, arguments)``,
    so one actor pool serves images and texts alike."""

    def __init__(self, scorers: Mapping[str, tuple[type[UnitScorer], Mapping[str, Any]]], threads: int = 1) -> None:
        super().__init__(threads)
        self.scorers = dict(scorers)
        self.threads = threads
        self._built: dict[str, UnitScorer] = {}

    def score(self, items: Unit) -> list[dict[str, Any]]:
        modality = items[0]["modality"]
        if modality not in self._built:
            scorer, arguments = self.scorers[modality]
            self._built[modality] = scorer(**arguments, threads=self.threads)
        return self._built[modality].score(items)


def run_units(units: Sequence[Unit], scorers: Mapping[str, tuple[type[UnitScorer], Mapping[str, Any]]],
              cluster: Cluster, on_rows: Callable[[list[dict[str, Any]], int], None]) -> None:
    """Score every unit (its items tagged with their ``modality``) with that modality's scorer;
    ``on_rows(rows, items)`` is called in the driver as each unit's rows come back (``items``: how
    many items that unit held)."""
    arguments: dict[str, Any] = {"scorers": dict(scorers), "threads": cluster.threads}
    if cluster.workers == 0:
        import torch

        local = ByModality(dict(scorers), torch.get_num_threads())  # this process keeps its thread count
        for unit in units:
            on_rows(local.score(unit), len(unit))
        return
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # the caller shows progress; Ray's own lines are noise
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    with ray_session(cluster):
        dataset = ray.data.from_items([{"unit": json.dumps(unit), "items": len(unit)} for unit in units],
                                      override_num_blocks=max(1, len(units)))
        scored = dataset.map_batches(
            ByModality, fn_constructor_kwargs=arguments, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=cluster.workers), num_cpus=cluster.cpus,
            num_gpus=cluster.gpus or None)
        for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
            for encoded, items in zip(batch["rows"], batch["items"]):
                on_rows(json.loads(encoded), int(items))
