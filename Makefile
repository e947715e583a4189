# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU pins for this machine and CI; on a GPU box install your own CUDA build of torch first.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo demo-checkpoints test test-fast lint format bench mutate clean

$(VENV)/.installed: pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev,parquet,wandb]'
	@touch $@

install: $(VENV)/.installed

demo: install
	$(PY) run.py demo

# Retrain the tiny SCA/HCC ablation the demo ships (experiments/checkpoints/tiny; docs/PERFORMANCE.md "Tiny
# recipe"): the tokenizer, the four cells (train, bench, analyze), then the packed float16 files. ~25 min on 2
# cores.
demo-checkpoints: install
	$(PY) run.py train experiments/tiny_tokenizer.yaml
	$(PY) run.py sweep experiments/tiny_ablation.yaml
	$(PY) tools/pack_demo_checkpoints.py runs/tiny_ablation experiments/checkpoints/tiny

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

# Mutation testing of the science modules ([tool.mutmut] in pyproject.toml; docs/TESTING.md has the last
# score per module). Slow (tens of minutes to hours on 2 cores), so not part of `make test` or CI.
# MUTATE_JOBS: parallel mutants (2); MUTANTS: mutant-name globs to run (all when empty), e.g.
# MUTANTS='methods.alignvar.hcc*' (then earlier results are kept). torch runs on one thread under mutmut (tests/conftest.py).
mutate: install
	$(if $(MUTANTS),,rm -rf mutants)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE \
	  $(VENV)/bin/mutmut run --max-children $${MUTATE_JOBS:-2} $(MUTANTS)
	$(VENV)/bin/mutmut results > mutmut-results.txt || true
	$(PY) tools/mutation_score.py

clean:
	rm -rf runs .pytest_cache .ruff_cache mutants mutmut-results.txt
