# WealthAlloc — the two commands of README.md are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run cluster chaos stop test test-all bench lint install native browser clean-data promtool

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) native

## Compile the hot paths with mypyc when their source changed (optional: without it they run as Python).
native: $(STAMP)
	@$(BIN)/python -m wealthalloc.ops.native build --if-stale

## Install, migrate, load market data, seed the demo, start Ray + Serve, wait for /health.
run: $(STAMP) native
	@$(BIN)/wealthalloc serve

## The same platform on a local multi-node Ray cluster: the head and WORKERS worker nodes (separate
## raylets on this machine). `wealthalloc cluster status` shows what runs where; `make stop` stops it.
WORKERS ?= 2
cluster: $(STAMP) native
	@$(BIN)/wealthalloc serve --workers $(WORKERS)

## Chaos under load on a cluster of its own (head + WORKERS nodes, own ports, its own database and an
## embedded Redis it can restart): investors at work while a node, an API replica, the gateway, the
## event bus, Redis and PostgreSQL's connections are killed in turn; then the verdict. Stopped after.
CHAOS_DATA ?= $(CURDIR)/.data/chaos
CHAOS_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/wealthalloc_chaos
CHAOS_ARGS ?=
CHAOS_ENV = WEALTHALLOC_DATA_DIR=$(CHAOS_DATA) WEALTHALLOC_DATABASE_URL=$(CHAOS_DATABASE_URL) \
	WEALTHALLOC_REDIS_URL='unix://$(CHAOS_DATA)/redis/redis.sock?db=0' \
	WEALTHALLOC_MODEL_REGISTRY_URI=$(CURDIR)/.data/models \
	WEALTHALLOC_HTTP_PORT=8100 WEALTHALLOC_DASHBOARD_PORT=8365 WEALTHALLOC_RAY_PORT=6489 \
	WEALTHALLOC_HAPROXY_STATS_PORT=8504 WEALTHALLOC_HAPROXY_METRICS_PORT=9201
chaos: $(STAMP) native
	@mkdir -p $(CHAOS_DATA)
	@$(CHAOS_ENV) $(BIN)/wealthalloc serve --workers $(WORKERS) \
		|| { $(CHAOS_ENV) $(BIN)/wealthalloc stop >/dev/null 2>&1; exit 1; }
	@$(CHAOS_ENV) $(BIN)/wealthalloc chaos $(CHAOS_ARGS); rc=$$?; \
		$(CHAOS_ENV) $(BIN)/wealthalloc stop >/dev/null; exit $$rc

## Stop Serve, Ray (and its worker nodes) and any embedded PostgreSQL/Redis started by `make run`.
stop: $(STAMP)
	@$(BIN)/wealthalloc stop

## Debian's chromium for the browser tests (Playwright launches it by path), installed when root can.
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			apt-get install -y -qq chromium >/dev/null 2>&1 \
				|| { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
				|| echo "could not install chromium: the browser tests will be skipped"; \
		else echo "no chromium (apt-get install chromium): the browser tests will be skipped"; fi; }

## Lint, then the default test suite (unit + integration on real PostgreSQL, Redis and Ray).
test: $(STAMP) browser
	@$(BIN)/python -m wealthalloc.ops.native build --if-stale --strict
	@$(BIN)/ruff check .
	@WEALTHALLOC_REQUIRE_NATIVE=1 $(BIN)/python -m pytest

## Everything, including tests marked slow.
test-all: $(STAMP) native
	@$(BIN)/python -m pytest -m ""

bench: $(STAMP) native
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy wealthalloc serve_apps actors

## Check the Prometheus alert rules and run their unit tests (promtool, unpacked from Debian's package if missing).
promtool: $(STAMP)
	@PROMTOOL=$$($(BIN)/python -m wealthalloc.ops.promtool | tail -n1) && cd cluster/prometheus \
		&& $$PROMTOOL check rules alerts.yml && $$PROMTOOL test rules alerts_test.yml

clean-data:
	rm -rf .data
