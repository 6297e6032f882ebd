# One entry point for people and CI. `make demo` and `make test` work on a fresh clone: they create
# the virtualenv they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit functional deployable bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/elb-log-shipper demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

functional: $(STAMP)
	$(BIN)/pytest tests/functional -q

test: lint typecheck
	$(BIN)/pytest tests -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/parse_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build .aws-sam
