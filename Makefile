# accidents-mlops: `make run` sets everything up and runs the stack; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# uv: the one on PATH, else the one `make` installs into a private venv (scripts/install_uv.sh: pip
# refuses a PEP 668 system Python, Debian 12 / Ubuntu 24.04 / Homebrew); its bin/ comes first on
# make's PATH, so every recipe and script finds it whatever the user's PATH.
UV_HOME ?= $(HOME)/.cache/accidents-mlops/uv
export PATH := $(UV_HOME)/bin:$(PATH)
# Bytecode compiled at install time: MLflow and Airflow start in ~12 s instead of 90-100 s
# on machines with PYTHONDONTWRITEBYTECODE=1.
export UV_COMPILE_BYTECODE := 1
# Local DVC remote: a folder outside the working tree (override: make setup DVC_REMOTE=...)
DVC_REMOTE ?= $(HOME)/.cache/accidents-mlops/dvc-remote
DVC_SITE_CACHE := .dvc/tmp/site-cache

MONITORING_VENV := .venv-monitoring
NANNYML_VENV := .venv-nannyml
DOCS_VENV := .venv-docs
DOCS_ADDRESS ?= 127.0.0.1:8008

.PHONY: help setup setup-airflow setup-monitoring setup-nannyml setup-docs docs docs-build monitor run mlflow pipeline test compose-test scale-test lint lock bench clean replay realized monitoring-backtest

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

uv:
	@command -v uv >/dev/null || bash scripts/install_uv.sh "$(UV_HOME)"

setup: $(VENV)/.installed .dvc/config.local $(DVC_SITE_CACHE) ## create .venv from the lock file and prepare DVC (idempotent)

$(VENV)/.installed: requirements/dev.txt pyproject.toml | uv
	@test -x $(PY) || uv venv --quiet --python 3.11 $(VENV)
	uv pip install --quiet --python $(PY) -r requirements/dev.txt
	uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

.dvc/config.local: | $(VENV)/.installed
	@mkdir -p "$(DVC_REMOTE)"
	$(VENV)/bin/dvc remote add --local --force --default localremote "$(DVC_REMOTE)"

# DVC's state and index caches are diskcache (pickle) stores (advisory PYSEC-2026-2447, accepted in
# security/audit-exceptions.txt): they live in a site-cache dir of ours, mode 0700 like the DVC cache
# and tmp dirs, instead of DVC's world-writable default /var/tmp/dvc/repo.
$(DVC_SITE_CACHE): .dvc/config.local
	mkdir -p .dvc/cache "$@"
	chmod 0700 .dvc/cache .dvc/tmp "$@"
	$(VENV)/bin/dvc config --local core.site_cache_dir "$(abspath $@)"
	@touch "$@"

setup-airflow: | uv ## create .venv-airflow (Airflow alone, pinned)
	bash airflow/setup.sh

# The drift job's own venv: Evidently 0.7 needs pandas < 3, the rest of the project runs on pandas 3.
setup-monitoring: $(MONITORING_VENV)/.installed ## create .venv-monitoring (Evidently, pandas 2, pinned) for the drift job

$(MONITORING_VENV)/.installed: requirements/monitoring.txt pyproject.toml | uv
	@test -x $(MONITORING_VENV)/bin/python || uv venv --quiet --python 3.11 $(MONITORING_VENV)
	uv pip install --quiet --python $(MONITORING_VENV)/bin/python -r requirements/monitoring.txt
	uv pip install --quiet --python $(MONITORING_VENV)/bin/python --no-deps -e .
	@touch $@

# Test-only: NannyML itself, the reference our CBPE (accidents.monitoring.estimation) is checked against
# (tests/monitoring/test_cbpe_matches_nannyml.py); --no-deps: only what `import nannyml` needs.
setup-nannyml: $(NANNYML_VENV)/.installed ## create .venv-nannyml (test-only: NannyML 0.13.1, what its import needs)

$(NANNYML_VENV)/.installed: requirements/nannyml-test.txt | uv
	@test -x $(NANNYML_VENV)/bin/python || uv venv --quiet --python 3.11 $(NANNYML_VENV)
	uv pip install --quiet --python $(NANNYML_VENV)/bin/python --no-deps -r requirements/nannyml-test.txt
	@touch $@

# The documentation site (docs/, mkdocs.yml): MkDocs + Material in a venv of their own.
setup-docs: $(DOCS_VENV)/.installed ## create .venv-docs (MkDocs, Material, pinned)

$(DOCS_VENV)/.installed: requirements/docs.txt | uv
	@test -x $(DOCS_VENV)/bin/python || uv venv --quiet --python 3.11 $(DOCS_VENV)
	uv pip install --quiet --python $(DOCS_VENV)/bin/python -r requirements/docs.txt
	@touch $@

docs: setup-docs ## serve the documentation site on http://127.0.0.1:8008 (DOCS_ADDRESS=host:port; live reload)
	$(DOCS_VENV)/bin/mkdocs serve --dev-addr $(DOCS_ADDRESS)

docs-build: setup-docs ## build the documentation site into site/ (--strict: a broken link fails)
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

monitor: setup-monitoring ## drift job: latest window of logged traffic vs its model's reference -> store, /metrics, MLflow
	$(MONITORING_VENV)/bin/accidents drift $(ARGS)

monitoring-backtest: setup-monitoring ## a 2020 model serving each month of 2021: drift, estimated vs realized AUC/F1, retrain policy -> reports/
	$(MONITORING_VENV)/bin/python -m accidents.monitoring.backtest $(ARGS)

run: setup setup-airflow setup-monitoring ## set up, train once if needed, start MLflow, Airflow and the API (PROMETHEUS=1: and Prometheus + Alertmanager)
	$(PY) scripts/run_stack.py

mlflow: setup ## run the MLflow tracking server on 127.0.0.1:5000 (foreground)
	bash scripts/mlflow_server.sh

pipeline: setup ## dvc repro (needs MLflow: MLFLOW_TRACKING_URI or `make mlflow` in another shell)
	./retraining_run.sh

test: setup setup-airflow setup-monitoring setup-docs ## run every test suite (pytest exit 5, no tests, is a failure)
	bash scripts/run_tests.sh $(ARGS)

bench: setup ## benchmarks: API vs MLflow scoring server, pipeline time and memory (writes bench/results/)
	@command -v wrk >/dev/null || { echo "installing wrk (apt)"; apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	$(PY) -m bench.run $(ARGS)

REPLAY_ARGS ?= --from 2021-07-01 --to 2021-12-31 --limit 5000
replay: setup ## send real accidents through the running API (REPLAY_ARGS="--from ... --to ... --limit N --night")
	$(VENV)/bin/accidents replay $(REPLAY_ARGS)

realized: setup ## label job: realized AUC/F1/calibration of the logged predictions -> store, /metrics, MLflow
	$(VENV)/bin/accidents realized $(ARGS)

.PHONY: setup-test-tools
setup-test-tools: ## install what make test needs beyond make run (wrk, prometheus, alertmanager, chromium, PostgreSQL; apt, as root)
	bash scripts/install_test_tools.sh

compose-test: setup ## build the images, start docker compose on free ports, run tests/compose, tear down
	bash scripts/docker/compose_test.sh

scale-test: setup ## the scale-out stack (docker-compose.scale.yml): build, start on free ports, run tests/scale, tear down
	bash scripts/docker/scale_test.sh

lint: setup ## ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

lock: | uv ## regenerate the pinned lock files from the *.in files
	uv pip compile --quiet --python-version 3.11 requirements/dev.in -o requirements/dev.txt
	uv pip compile --quiet --python-version 3.11 requirements/runtime.in -c requirements/dev.txt -o requirements/runtime.txt
	uv pip compile --quiet --python-version 3.11 requirements/airflow.in -o requirements/airflow.txt
	uv pip compile --quiet --python-version 3.11 requirements/monitoring.in -o requirements/monitoring.txt
	uv pip compile --quiet --python-version 3.11 requirements/postgres.in -c requirements/runtime.txt -o requirements/postgres.txt
	uv pip compile --quiet --python-version 3.11 requirements/airflow-extras.in -c requirements/airflow.txt -o requirements/airflow-extras.txt
	uv pip compile --quiet --python-version 3.11 requirements/docs.in -o requirements/docs.txt
	uv pip compile --quiet --python-version 3.11 requirements/s3.in -c requirements/runtime.txt -c requirements/postgres.txt --override requirements/s3-overrides.txt -o requirements/s3.txt

clean: ## remove pipeline outputs and local stack state (keeps venvs)
	rm -rf data/raw data/processed models reports metrics.json state logs site
