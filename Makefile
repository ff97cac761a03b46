# poetkb: `make demo` runs the main job on the embedded default knowledge base; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.poetkb-installed
PYTEST_ARGS ?=

.PHONY: install test demo lint typecheck docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/poet kb build
	$(BIN)/poet obligations list

lint: $(STAMP)
	$(BIN)/ruff check poetkb tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .poet .pytest_cache .ruff_cache .mypy_cache build dist
docs:
	$(BIN)/python -m poetkb.cli.reference > docs/cli.md
