# Two commands do everything on a fresh machine:
#   make run    install into .venv, then run the whole workflow on the embedded default config
#   make test   install into .venv (with test extras), then run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# torch first and pinned: a bare `torch` pulls a multi-GB CUDA build where a CPU build is on disk.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test test-slurm lint lint-style report clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,slurm,reports,bench]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/snakemake --cores $(CORES)

# Style first (ruff and snakefmt, configured in pyproject.toml, and Snakemake's linter), then the numba kernels' tests once with
# bounds checking on (an out-of-bounds index raises instead of reading past an array; in an empty numba
# cache, since a cached kernel keeps the flags it was compiled with), then every test.
test: install lint-style
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$$(mktemp -d) $(BIN)/python -m pytest -q -p no:cacheprovider $(NUMBA_TESTS)
	$(BIN)/python -m pytest

NUMBA_TESTS ?= tests/test_kernels.py tests/test_sph.py tests/test_projection.py

lint-style: install
	$(BIN)/ruff check src tests benchmarks workflow
	$(BIN)/ruff format --check src tests benchmarks workflow
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# The workflow through a real single-node Slurm brought up on this machine (root, Debian/Ubuntu: installs
# slurmctld, slurmd, slurm-client and munge when missing; tests/slurm/up.sh, down.sh). About 5 minutes.
test-slurm: install
	MASSMAPS_SLURM_TEST=1 $(BIN)/python -m pytest tests/slurm -rP

lint: install
	$(BIN)/snakemake --lint

report: install
	$(BIN)/snakemake --report results/report.html

clean:
	rm -rf results .snakemake
