# Two commands do everything on a fresh machine:
#   make run    install into .venv, then run the whole workflow on the embedded default config
#   make test   install into .venv (with test extras), then run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# torch first and pinned: a bare `torch` pulls a multi-GB CUDA build where a CPU build is on disk.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test test-slurm lint report clean

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

test: install
	$(BIN)/python -m pytest

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
