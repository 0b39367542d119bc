"""Run a generation step's vocabulary-wide work eagerly or fused by ``torch.compile``.

Why: a watermarked decoding step hashes every (context, vocabulary token) pair and
rewrites the logits. Eagerly that is a dozen element-wise passes over the batch x
vocabulary array, each its own trip through memory; compiled (inductor: a C++ loop on a CPU,
Triton on a GPU, where it has not been measured yet) it is a single pass: for KGW on
20 x 49,152 logits, one thread, 1.5-1.8 ms against 8-10 ms for the eager passes with fresh
temporaries (:class:`Scratch` has since narrowed the gap; docs/benchmarks.md has the in-run
figures). Compiling costs 10-25 s on first use (inductor caches the result on disk, later
processes start in a few seconds), so it pays for long or large generation jobs and is opt-in:
``scheme.processor(..., compile=True)``, ``generate_watermarked(...,
processor_kwargs={"compile": True})`` or ``provenance text generate --compile``. KGW and
MajorMark use it; EXP and ITS accept the option and run eagerly (their samplers measured
no faster compiled).

A kernel is a plain function of tensors and per-configuration constants (delta, gamma's
threshold, vocabulary size). Per-row key material is hashed in before the call, so a new
key or a new context never triggers a recompile; shapes are dynamic, so neither does a new
batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Kernel = TypeVar("Kernel", bound=Callable)


def add_bias(scores: torch.Tensor, bias: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Every kernel's last step: ``scores + bias`` as a new tensor (``bias`` may be scratch).

    Ids past the scheme's vocabulary (logits padded to a round width) get no bias. The
    result is never written into ``scores``: ``generate`` may keep the raw logits.
    """
    if scores.shape[-1] > vocab_size:
        bias[..., vocab_size:] = 0.0
    return scores + bias


class Scratch:
    """Batch x vocabulary temporaries kept from one generation step to the next (eager kernels).

    Why: a fresh multi-megabyte tensor is a fresh mapping from the allocator, and touching it
    page-faults every 4 KiB. Between a model's forward passes that cost as much as the
    arithmetic: MajorMark's kernel on 20 x 49,152 logits, timed between allocations like a
    forward pass's, took 8.4 ms with fresh temporaries and 4.4 ms with these. Compiled kernels fuse their temporaries away and take none.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def take(self, scores: torch.Tensor, **dtypes: torch.dtype) -> dict[str, torch.Tensor]:
        """One tensor shaped like ``scores`` per ``name=dtype``, reused while shape and device hold."""
        taken = {}
        for name, dtype in dtypes.items():
            t = self._tensors.get(name)
            if t is None or t.shape != scores.shape or t.dtype != dtype or t.device != scores.device:
                t = self._tensors[name] = torch.empty(scores.shape, dtype=dtype, device=scores.device)
            taken[name] = t
        return taken


def scratch(compile: bool) -> Scratch | None:
    """Scratch for an eager kernel; ``None`` for a compiled one."""
    return None if compile else Scratch()


def kernel(fn: Kernel, compile: bool) -> Kernel:
    """``fn`` itself, or its compiled form (one per function, shared by all processors)."""
    return _compiled(fn) if compile else fn


@functools.cache
def _compiled(fn: Callable) -> Callable:
    return torch.compile(fn, dynamic=True)
