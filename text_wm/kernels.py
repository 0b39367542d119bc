"""Run a generation step's vocabulary-wide work eagerly or fused by ``torch.compile``.

Why: a watermarked decoding step hashes every (context, vocabulary token) pair and
rewrites the logits. Eagerly that is a dozen element-wise passes over the batch x
vocabulary array, each its own trip through memory; compiled (inductor: a C++ loop on a CPU,
Triton on a GPU, where it has not been measured yet) it is a single pass: for KGW on
20 x 49,152 logits, one thread, 1.5-1.8 ms against 8-10 ms eagerly. Compiling costs 10-25 s on first use (inductor caches the result on disk, later processes
start in a few seconds), so it pays for long or large generation jobs and is opt-in:
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


def kernel(fn: Kernel, compile: bool) -> Kernel:
    """``fn`` itself, or its compiled form (one per function, shared by all processors)."""
    return _compiled(fn) if compile else fn


@functools.cache
def _compiled(fn: Callable) -> Callable:
    return torch.compile(fn, dynamic=True)
