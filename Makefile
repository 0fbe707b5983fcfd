# One entry point for developers and CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-unit test-e2e check bench coverage clean

$(BIN)/berth: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/berth

install: $(BIN)/berth

# Starts an embedded server and worker, runs a sample app with the stock modal CLI, stops.
demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/pytest -q tests

test-unit: install
	$(BIN)/pytest -q tests/unit

test-e2e: install
	$(BIN)/pytest -q tests/e2e

check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/runtimes.py

coverage: install
	$(BIN)/python scripts/rpc_coverage.py > docs/rpc-coverage.md

clean:
	rm -rf $(VENV) build *.egg-info
