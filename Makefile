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
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

functional: $(STAMP) tools
	$(BIN)/pytest tests/functional -q

test: lint typecheck tools
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.parse_bench

clean:
	rm -rf $(VENV) $(SAM_VENV) .mypy_cache .pytest_cache .ruff_cache build .aws-sam

# ---------------------------------------------------------------------------------------------------
# The deployable (template.yaml, samconfig.toml). The SAM CLI lives in its own virtualenv: its pins
# conflict with the project's. `sam build` needs python3.13 on PATH for the python3.13 runtime;
# pyenv provides it here (SAM_PYENV). Validation and build never call AWS: telemetry is off and a
# region is set only because the CLI insists on one.
SAM_VENV  ?= .venv-sam
SAM       := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_PYENV ?= 3.11.7:3.13.0
SAM_ENV   := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 PYENV_VERSION=$(SAM_PYENV)

.PHONY: tools

$(SAM_STAMP): tools/sam-requirements.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r tools/sam-requirements.txt
	touch $(SAM_STAMP)

tools: $(SAM_STAMP)

deployable: $(STAMP) $(SAM_STAMP)
	@$(SAM_ENV) sh -c 'command -v python3.13 >/dev/null' || \
		{ echo "sam build needs python3.13 on PATH for the python3.13 runtime: pyenv install 3.13.0, or set SAM_PYENV"; exit 1; }
	$(BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) build
