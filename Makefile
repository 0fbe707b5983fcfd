# One entry point for developers and CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install host test-host demo test test-unit test-e2e test-torch check bench bench-scale reliability coverage clean

$(BIN)/berth: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/berth

install: $(BIN)/berth

# Container tools and the cgroup fix the OCI runtime needs (idempotent; root).
host:
	bash scripts/setup-host.sh

# Test-only host tools: PostgreSQL and Redis from Debian (scripts/setup-services.sh; the contract suite and
# the cluster tests start their own instances), and Debian's docker-registry (the CNCF distribution registry) that
# tests/e2e/test_registry.py runs on loopback to pull images from, and tmux, the terminal that
# tests/e2e/test_shell.py drives `modal shell` in. Not needed by the product.
test-host:
	bash scripts/setup-services.sh  # PostgreSQL, Redis, headless Chromium (the dashboard browser test)
	command -v docker-registry >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry; }
	command -v tmux >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux; }

# Starts an embedded server and worker (crun containers), runs a sample app with the stock modal CLI, stops.
demo: install host
	$(BIN)/python scripts/demo.py

test: install host test-host
	$(BIN)/pytest -q tests

test-unit: install
	$(BIN)/pytest -q tests/unit

test-e2e: install host test-host
	$(BIN)/pytest -q tests/e2e

# The torch.distributed (gloo) all-reduce across a cluster of 2 containers alone. `make test` runs it too where the
# CPU build of torch lies in /opt/wheels; BERTH_TORCH_TEST=1 makes a missing file a failure instead of a skip.
test-torch: install host
	BERTH_TORCH_TEST=1 $(BIN)/pytest -q tests/e2e/test_clustered_torch.py

check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/loop_ab.py
	$(BIN)/python bench/runtimes.py
	$(BIN)/python bench/sandboxes.py
	$(BIN)/python bench/coldpool.py
	$(BIN)/python bench/cluster.py

# A large experimental_spawn_map (1,000,000 inputs by default; SCALE_INPUTS=... for fewer): acceptance and run
# rates decile by decile and the server's memory, into docs/benchmarks.md. Long: not part of `make bench`.
bench-scale: install
	$(BIN)/python bench/scale.py --inputs $(or $(SCALE_INPUTS),1000000)

# The full RPC fuzz run (about 10,000 requests) against a fresh server; writes docs/reliability.md. CI runs
# the same checks seeded and shorter (tests/reliability/).
reliability: install
	$(BIN)/python scripts/reliability.py

coverage: install
	$(BIN)/python scripts/rpc_coverage.py > docs/rpc-coverage.md

clean:
	rm -rf $(VENV) build *.egg-info
