# `make help` lists the targets. The virtual environment is built from requirements.lock.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

SERVER_DIR ?= .server
PORT ?= 5000

.PHONY: help store run check lint format test lock venv ui server server-stop cluster cluster-stop

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(VENV)/.installed ## create or reuse .venv from requirements.lock

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	touch $@

store: venv ## check the tracking store and create it when new, once: two mlflow run on a new store race to create it
	$(PY) -m steps._store_check

run: store ## run the article's 3 x 3 sweep on the synthetic league, then its report (tracking in ./mlflow.db)
	@# MLflow's own INFO lines (its scratch folder, the command it runs) say nothing the sweep's lines do not.
	MLFLOW_LOGGING_LEVEL=WARNING mlflow run . --env-manager local --experiment-name fabric_madness --run-name sweep

ui: venv ## browse the runs: mlflow ui on ./mlflow.db, with the link that opens experiments on their runs
	@echo "open http://127.0.0.1:$(PORT)/#/experiments?workflowType=machine_learning (model training view; the browser remembers it)"
	mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port $(PORT)

check: venv lint ## the everyday loop (about a minute): lint, then the fast tests on every core
	$(PY) -m pytest -m "not slow" -n auto --dist loadfile --no-loadscope-reorder

lint: venv ## ruff: lint and formatting, as CI checks them (make format fixes what it can)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv ## ruff: sort imports, apply safe fixes, format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The tests on every core, a test file per worker (its module fixtures set up once), in the order
# conftest.py gives; then the `timed` tests, one at a time, with no other test's load beside them.
# The second pass runs whatever the first gave; make fails if either failed.
test: venv lint ## lint, then the whole test suite, slow end-to-end tests included (what CI runs; ~22 min on 2 cores, the Kubernetes end-to-end tests included)
	$(PY) -m pytest -m "not timed" -n auto --dist loadfile --no-loadscope-reorder; first=$$?; \
	$(PY) -m pytest -m timed -n 0; second=$$?; \
	[ $$first -eq 0 ] && [ $$second -eq 0 ]

server: venv ## start a team tracking server (PostgreSQL + mlflow server on 127.0.0.1:$(PORT), data in $(SERVER_DIR)); AUTH=1 adds basic auth, ARTIFACTS=s3://... an S3 store
	$(PY) -m tools.teamserver start --dir $(SERVER_DIR) --port $(PORT) $(if $(ARTIFACTS),--artifacts-destination $(ARTIFACTS)) $(if $(filter 1 true yes,$(AUTH)),--auth)

server-stop: ## stop the team server; its data stay in $(SERVER_DIR)
	$(PY) -m tools.teamserver stop --dir $(SERVER_DIR)

cluster: venv ## start a one-node Kubernetes stand-in (Docker engine, registry, emulated API and node) in .cluster (root; docs/kubernetes.md)
	$(PY) -m tools.cluster start

cluster-stop: ## stop the local cluster, leaving no process or mount; its images stay in .cluster
	$(PY) -m tools.cluster stop

lock: venv ## regenerate requirements.lock from conda.yaml and requirements-dev.in
	$(PY) tools/lock.py
