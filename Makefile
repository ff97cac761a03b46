# poetkb: `make demo` runs the main job on the embedded default knowledge base; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.poetkb-installed
PYTEST_ARGS ?=

.PHONY: install test demo lint typecheck docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The main job: build the knowledge base, bring up the NGINX demo edge with its upstreams, gate it on every
# edge obligation. The edge stays up afterwards (`poet demo status`, `poet gate run --all`, `poet demo down`).
DEMO_PROXY ?= nginx
DEMO_TIER ?= edge
demo: $(STAMP)
	bash scripts/ensure-system-packages $(DEMO_PROXY) openssl $(if $(filter edge,$(DEMO_TIER)),,postgresql)
	$(BIN)/poet kb build
	$(BIN)/poet demo up --proxy $(DEMO_PROXY) --tier $(DEMO_TIER)
	$(BIN)/poet gate run --all
	@echo "the $(DEMO_PROXY) demo edge is still up: $(BIN)/poet demo status | $(BIN)/poet demo down"

lint: $(STAMP)
	$(BIN)/ruff check poetkb tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .poet .pytest_cache .ruff_cache .mypy_cache build dist
docs:
	$(BIN)/python -m poetkb.cli.reference > docs/cli.md

bench: $(STAMP)
	$(BIN)/python benchmarks/kb_speed.py
	$(BIN)/python benchmarks/rank_speed.py
	$(BIN)/python benchmarks/rank_eval.py
