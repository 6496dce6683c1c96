# `make help` lists the targets. The virtual environment is built from requirements.lock.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.PHONY: help run test lock venv

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(VENV)/.installed ## create or reuse .venv from requirements.lock

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	touch $@

run: venv ## run the main job on the synthetic league (tracking in ./mlflow.db)
	mlflow run . -e ingest --env-manager local

test: venv ## run the whole test suite
	$(PY) -m pytest

lock: venv ## regenerate requirements.lock from conda.yaml and requirements-dev.in
	$(PY) tools/lock.py
