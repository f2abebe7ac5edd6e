# Two commands do all the set-up on a fresh machine:
#   make demo   builds every spec's tiny offline checkpoint and runs the conformance matrix
#   make test   runs the test suite (compile drift check + unit tests + conformance matrix + nnterp's
#               own test suite, taken from its published wheel and run against nnspec)
#   make bench  times nnspec against plain transformers, bare NNsight and nnterp (its own venv in
#               .bench/peer) and writes docs/benchmarks.md
#   make bench-gpu  the large-model benchmark (a 1.2B-parameter checkpoint in bfloat16) on CUDA; needs a GPU
# Each creates the virtual environment it needs (.venv), installing the pinned set in constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JOBS ?= auto
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

BENCH_GPU_TIMEOUT ?= 540

.PHONY: venv demo test nnterp-suite compile bench bench-gpu clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m nnspec matrix --jobs 2 --out matrix-results

test: venv
	$(PY) -m nnspec compile --check
	$(PY) -m pytest -n $(JOBS) -q

nnterp-suite: venv
	$(PY) -m tests.nnterp_suite.harness run --jobs 2

compile: venv
	$(PY) -m nnspec compile

bench: venv
	$(PY) benchmarks/compare.py

bench-gpu: venv
	$(PY) benchmarks/large.py --device cuda --timeout $(BENCH_GPU_TIMEOUT)

clean:
	rm -rf $(VENV) .bench matrix-results .pytest_cache build src/*.egg-info
