# Thin wrappers: CI, the Dockerfile and people all call these same targets.
.DEFAULT_GOAL := check

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install fmt lint typecheck test pytest check cov bench bench-instructions run clean js-deps

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

# The JS client tests run the official `ollama` npm package with the machine's Node.js.
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

js-deps: tests/js/node_modules/.package-lock.json

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install js-deps
	$(BIN)/python -m pytest

test: lint typecheck pytest

check: test

# Coverage is measured on demand, so `make test` needs no coverage tooling.
cov: install js-deps
	$(BIN)/python -m pip install --quiet 'coverage[toml]>=7.6'
	$(BIN)/python -m coverage run -m pytest -q -p no:cacheprovider
	$(BIN)/python -m coverage report

bench: install
	$(BIN)/python -m pip install --quiet 'uvloop>=0.21' && $(BIN)/python -m tests.bench $(BENCH_ARGS)

# Instructions per request under valgrind's callgrind: a count that does not
# move with the host's load, to rank changes to the Python path (needs valgrind).
bench-instructions: install
	$(BIN)/python -m tests.bench.instructions $(BENCH_ARGS)

run: install
	$(BIN)/ollama-gateway serve

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .coverage htmlcov

-include docker/docker.mk
