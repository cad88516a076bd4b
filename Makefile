# loan-default: `make help` lists the targets. Everything installs into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev,azure,tracking
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install train test test-full test-spark test-ddp bench lint format serve clean browser

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first and pinned: an open range pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project (only when setup.cfg changed)

train: $(STAMP) ## Train on the embedded synthetic data (ARGS="model=ann_large ..." for Hydra overrides)
	$(PY) train.py $(ARGS)

browser: ## Install Debian's chromium for the report.html browser test (root + apt-get only; else say so and go on)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium (report.html browser test)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "chromium could not be installed: the browser test will skip"; \
	else echo "chromium missing and not installable here (needs root and apt-get): the browser test will skip"; fi

test: $(STAMP) browser ## Run the test suite (without tests marked slow)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-full: $(STAMP) browser ## Run every test, slow ones included
	$(PY) -m pytest $(ARGS)

test-spark: $(STAMP) ## Spark preparation tests (installs the [spark] extra: pyspark, needs Java 17)
	$(PY) -m pip install -q -e ".[spark]"
	$(PY) -m pytest -m slow tests/test_spark_prep.py $(ARGS)

test-ddp: $(STAMP) ## DDP shard tests with a two-rank CPU train.py run against a single-process one (slow, ~2 min)
	$(PY) -m pytest -m slow tests/test_ddp_shards.py $(ARGS)

bench: $(STAMP) ## Run the benchmarks in bench/ (each prints a ratio against a baseline measured in the same run)
	@set -e; for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b $(ARGS); done

serve: $(STAMP) ## Serve the newest model bundle over REST (ARGS="bundle=<path> port=8000")
	$(PY) serve.py $(ARGS)

lint: $(STAMP) ## Check style (ruff) and the package's layer contracts (import-linter, see setup.cfg)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove generated data, runs and caches (keeps .venv)
	rm -rf data logs outputs multirun .pytest_cache
