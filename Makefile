# nodemesh: `make demo` runs the mesh, `make test` runs every test. Both set up the machine first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nodemesh-setup
PYTEST_ARGS ?=

.PHONY: setup demo demo-up demo-down test unit integration lint protos bench bench-quick clean

setup: $(STAMP)
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml scripts/setup-venv.sh
	bash scripts/setup-venv.sh $(VENV)
	touch $(STAMP)

demo: setup
	$(PY) -m demo

# The demo's mesh left running in the background (state in /run/nodemesh-demo/), and stopped.
demo-up: setup
	$(PY) -m demo up

demo-down:
	$(PY) -m demo down

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest integration $(PYTEST_ARGS)

protos: setup
	$(PY) -m protos.compile

bench: setup
	$(PY) -m bench

bench-quick: setup
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
