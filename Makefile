# Quick start: `make demo` (sets up .venv if missing, then answers a question about the demo video)
#              `make test` (sets up the same .venv, then runs the test suite)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[train,serve,eval,dev]"
	touch $@

.PHONY: install demo test demo-model scores bench
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m llava.serve.cli --video-file playground/demo/shapes.mp4 --query "What was in the first scene?"

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo-model: $(VENV)/.installed
	bash scripts/train_tiny_demo.sh

scores: $(VENV)/.installed
	$(PY) -m llava.eval.synthetic_scores --seed 1001 --num-videos 40
	$(PY) -m llava.eval.synthetic_scores --seed 1001 --num-videos 40 --ablate-memory

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_scenetilling.py
	$(PY) benchmarks/bench_encoder.py
