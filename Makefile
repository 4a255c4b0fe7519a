# Quick start: `make demo` (sets up .venv if missing, then answers a question about the demo video)
#              `make test` (sets up the same .venv, then runs the test suite)
#              `make lint` (the same .venv, then ruff and mypy on llava/, as CI runs them)
# All install exactly the tested versions of requirements.lock (pip constraints) into .venv; lmms-eval goes in
# without its declared dependencies (the lmms extra lists what it needs; README, lmms-eval, says why).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
EXTRAS := train,serve,eval,dev,lmms
TORCH ?= 2.13.0
LOCK_VENV ?= /tmp/llava-lock-venv
export HF_HUB_OFFLINE := 1

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c $(LOCK) --upgrade pip
	$(VENV)/bin/pip install -q -c $(LOCK) -e ".[$(EXTRAS)]"
	$(VENV)/bin/pip install -q -c $(LOCK) --no-deps lmms-eval
	touch $@

.PHONY: install demo test lint demo-model scores bench lock check-pythons
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m llava.serve.cli --video-file playground/demo/shapes.mp4 --query "What was in the first scene?"

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check llava
	$(VENV)/bin/ruff format --check llava
	$(VENV)/bin/mypy llava

demo-model: $(VENV)/.installed
	bash scripts/train_tiny_demo.sh

scores: $(VENV)/.installed
	$(PY) -m llava.eval.shapes_scores --seed 1001 --num-videos 40
	$(PY) -m llava.eval.shapes_scores --seed 1001 --num-videos 40 --ablate-memory

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_scenetilling.py
	$(PY) benchmarks/bench_encoder.py

# Re-resolve the newest versions pyproject.toml allows (torch held at $(TORCH)) into requirements.lock;
# run `make test` after it and commit the lock only if the suite passes.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q "torch==$(TORCH)"
	$(LOCK_VENV)/bin/pip install -q -e ".[$(EXTRAS),quant,bench]"
	$(LOCK_VENV)/bin/pip install -q --no-deps lmms-eval
	sed -n '/^#/p' $(LOCK) > $(LOCK).tmp
	$(LOCK_VENV)/bin/pip freeze --all --exclude-editable | sed 's/^torch==\([^+]*\)+.*/torch==\1/' | sort -f >> $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

# Install plus the quick subset on other Pythons (not in CI: each downloads a several-GB torch); see README, Install.
check-pythons:
	bash scripts/check_pythons.sh 3.12 3.13
