# TradeGuard developer entry points. Every target bootstraps what it needs (scripts/bootstrap.sh is
# idempotent and skips work that is up to date).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
TOOLS_VENV := $(ROOT)/.venv-tools
ANVIL_DIR := $(ROOT)/node_modules/@foundry-rs/anvil-linux-amd64/bin
FORGE_DIR := $(ROOT)/node_modules/@foundry-rs/forge-linux-amd64/bin

# anvil, forge (and solcjs) resolve from node_modules; forge uses the solcjs shim whatever the cwd.
export PATH := $(ROOT)/node_modules/.bin:$(ANVIL_DIR):$(FORGE_DIR):$(PATH)
export FOUNDRY_SOLC := $(ROOT)/tools/solc

PYTEST_ARGS ?= -n 2
API_FUZZ_EXAMPLES ?= 350
API_FUZZ_SEED ?= 1
DEMO_URL ?= http://127.0.0.1:8000

.PHONY: help setup setup-lint compile run demo test lint gas fuzz mutation

help:
	@echo "make setup    install .venv, node_modules (solc, OpenZeppelin, anvil, forge), var/"
	@echo "make compile  compile contracts/src + contracts/test into contracts/build/"
	@echo "make run      run the service (tradeguard run: anvil, SQLite, eager tasks unless a broker is set)"
	@echo "make demo     drive three orders through the HTTP API of the service \`make run\` started (else one in process)"
	@echo "make test     run the test suite (PYTEST_ARGS='...' to pass pytest options)"
	@echo "make lint     ruff, ruff format --check, mypy --strict, slither"
	@echo "make gas      gas report"
	@echo "make fuzz     long forge invariant runs + hypothesis stateful model (fuzz profiles) + API fuzzing"
	@echo "make mutation mutation score of the tests on the escrow (scripts/mutation_check.py, ~40 min; JSON)"

setup:
	bash scripts/bootstrap.sh

setup-lint:
	bash scripts/bootstrap.sh --with-lint

compile: setup
	$(PY) -m app.chain.compiler

run: setup
	$(VENV)/bin/tradeguard run

# `make run` in one terminal, then `make demo`: the demo fills the running service (and its console);
# with no service answering at DEMO_URL it starts one in process instead
demo: setup
	@if $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2)' \
		'$(DEMO_URL)' 2>/dev/null; then $(VENV)/bin/tradeguard demo --url '$(DEMO_URL)'; \
	else $(VENV)/bin/tradeguard demo; fi

test: setup
	$(PY) -m app.chain.compiler --check
	forge test --match-path 'contracts/forge/*'
	$(PY) -m pytest -q $(PYTEST_ARGS)
	@echo "the database-backed tests again, on PostgreSQL (127.0.0.1:5432/test)"
	TRADEGUARD_TEST_DB=postgresql $(PY) -m pytest -q $(PYTEST_ARGS) -m "not sqlite_only" tests/api tests/services tests/workers

lint: setup-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app workers
	bash scripts/slither.sh

gas: setup
	$(PY) scripts/gas_report.py

fuzz: setup
	FOUNDRY_PROFILE=fuzz forge test --match-path 'contracts/forge/*'
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -m fuzz tests/contracts/test_model_stateful.py
	@echo "schemathesis --checks all over a live tradeguard run, admin and merchant keys (>= 10,000 cases each)"
	$(PY) scripts/fuzz_api.py --max-examples $(API_FUZZ_EXAMPLES) --seed $(API_FUZZ_SEED) --min-cases 10000

# slither-mutate's operators + hand-made mutants, each against the forge and Python tests that reach it (long:
# not part of `make test` or CI). MUTATION_ARGS='--sample 0' runs every slither mutant (~6 h).
MUTATION_ARGS ?=
mutation: setup-lint
	$(PY) scripts/mutation_check.py $(MUTATION_ARGS)

bench: setup
	$(PY) scripts/bench_service.py
