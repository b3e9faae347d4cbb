# WealthAlloc — the two commands of README.md are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stop test test-all bench lint install clean-data promtool

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Install, migrate, load market data, seed the demo, start Ray + Serve, wait for /health.
run: $(STAMP)
	@$(BIN)/wealthalloc serve

## Stop Serve, Ray and any embedded PostgreSQL/Redis started by `make run`.
stop: $(STAMP)
	@$(BIN)/wealthalloc stop

## Lint, then the default test suite (unit + integration on real PostgreSQL, Redis and Ray).
test: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/python -m pytest

## Everything, including tests marked slow.
test-all: $(STAMP)
	@$(BIN)/python -m pytest -m ""

bench: $(STAMP)
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy wealthalloc serve_apps

## Check the Prometheus alert rules and run their unit tests (promtool, unpacked from Debian's package if missing).
promtool: $(STAMP)
	@PROMTOOL=$$($(BIN)/python -m wealthalloc.ops.promtool | tail -n1) && cd cluster/prometheus \
		&& $$PROMTOOL check rules alerts.yml && $$PROMTOOL test rules alerts_test.yml

clean-data:
	rm -rf .data
