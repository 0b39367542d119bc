#!/bin/bash
# Prepare, on this machine, what scripts/device/run.sh needs on a borrowed CUDA machine (see its header):
# wheels for Python 3.12 of the packages that machine lacks, the pruned MiniLM, both folders git-ignored.
# Afterwards: move image_wm/reference/weights/unet3d out of the tree, call the device tool with
# command `bash scripts/device/run.sh` and carry [".device", ".whl"], then move unet3d back.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
mkdir -p .git/info
for d in /.device/ /.whl/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
version() { $PY -m pip show "$1" | awk '/^Version/{print $2}'; }
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "diffusers==$(version diffusers)" "importlib_metadata==$(version importlib_metadata)" \
    "reedsolo==$(version reedsolo)" "gguf==$(version gguf)" "cryptography==$(version cryptography)" \
    "cffi==$(version cffi)" "pycparser==$(version pycparser)"
$PY scripts/device/minilm_carry.py prune .device/minilm
du -sh .whl .device
