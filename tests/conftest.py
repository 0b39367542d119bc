"""Shared fixtures: offline mode, one thread setting, seeded global RNGs, and the real models once."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: with another busy process on a 2-core machine,
# spinning threads made every small torch op wait a time slice (generation 7x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import LogitsProcessor  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DATA = Path(__file__).parent / "data"


class RowRouter(LogitsProcessor):
    """Test plumbing: applies each logits processor to its own slice of batch rows (None: untouched).

    One ``generate`` call then yields watermarked and plain rows together; decoding is
    memory-bound, so extra rows cost little.
    """

    def __init__(self, groups):
        self.groups = groups  # [(start, stop, processor or None)]

    def __call__(self, input_ids, scores):
        out = scores.clone()
        for start, stop, processor in self.groups:
            if processor is not None:
                out[start:stop] = processor(input_ids[start:stop], scores[start:stop])
        return out


@pytest.fixture(autouse=True)
def seeded_global_rngs():
    """Every test starts from the same global RNG state, whatever ran before it.

    Tests pass explicit generators where they can; this catches the draws that do not (model
    initialisation, library defaults), so a pass or a failure never depends on test order.
    """
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def row_router():
    return RowRouter


@pytest.fixture(scope="session")
def text_model():
    """SmolLM2-135M and its tokenizer (converted from GGUF once, then cached)."""
    from provenance.models import load_text_model

    model, tokenizer = load_text_model(device="cpu")
    return model, tokenizer


@pytest.fixture(scope="session")
def tokenizer(text_model):
    return text_model[1]


@pytest.fixture(scope="session")
def human_passages() -> list[str]:
    """600 human-written passages (the Jargon File, public domain; see tests/data/README)."""
    lines = (DATA / "human_passages.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """``tiny_folder(kind)``: a tiny random-weight pipeline folder (``tiny_pipelines.BUILDERS``), built once."""
    from tiny_pipelines import BUILDERS

    built: dict[str, Path] = {}

    def folder(kind: str) -> Path:
        if kind not in built:
            built[kind] = tmp_path_factory.mktemp(f"tiny-{kind}")
            BUILDERS[kind](built[kind])
        return built[kind]

    return folder
