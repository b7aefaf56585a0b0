# simstack: every target installs what it needs and is safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/bin:$(PATH)
export NO_PROXY := 127.0.0.1,localhost,::1
export no_proxy := 127.0.0.1,localhost,::1

.PHONY: help setup toxiproxy engine images redis browser repro-1011 repro-own-backend test e2e bench clean

help:
	@echo "make repro-1011  reproduce the staging WebSocket 1011 and show what the fix changes"
	@echo "make test        run simstack's tests (installs everything first)"
	@echo "make e2e         run the e2e suite under repro-1011 and fixed, side by side"
	@echo "make bench       run the benchmarks, writing bench/results.json"
	@echo "make images      provision a Docker engine and build the images offline"
	@echo "make repro-own-backend  a backend of your own (examples/own-backend), racy and fixed, under a slow Redis link"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

setup: $(STAMP) toxiproxy

toxiproxy:
	@scripts/install-toxiproxy.sh

engine:
	@docker/engine.sh ensure

browser:
	@scripts/install-chromium.sh

images: setup engine
	@$(VENV)/bin/simstack images build

repro-1011: setup
	$(VENV)/bin/simstack repro 1011

# Debian's redis-server, for examples/own-backend (run as a plain process on loopback, never as a service)
redis:
	@command -v redis-server >/dev/null || scripts/apt-install.sh redis-server

repro-own-backend: setup redis
	$(PY) examples/own-backend/compare.py

test: setup browser
	@$(MAKE) --no-print-directory redis || echo "make test: no redis-server; the own-backend example test will be skipped"
	@docker/engine.sh ensure || echo "make test: no Docker engine; docker-mode tests will be skipped (see message above)"
	@$(VENV)/bin/simstack images build || echo "make test: image build failed; docker-mode tests will be skipped"
	$(PY) -m pytest -q

e2e: setup
	$(VENV)/bin/simstack e2e

bench: setup
	@if docker/engine.sh status >/dev/null 2>&1; then $(VENV)/bin/simstack images build >/dev/null || echo "make bench: image build failed; docker figures will be skipped"; fi
	$(PY) -m bench

clean:
	rm -rf $(VENV) bin build dist *.egg-info docker/.build
