# One entry point for people and CI. `make demo` and `make test` work on a fresh clone: they create
# the virtualenv they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.runtime-installed
# The tests run in this many processes (pytest-xdist; 0: in pytest's own, one at a time). Most of
# the functional tests wait on sockets, timeouts and deadlines rather than compute, so two workers
# on a two-core machine take about half the time that one does (fresh-clone CI, one run each: the
# whole suite 7:55 against 15:07, partly beside other work; the unit tests on 3.13 2:01 against
# 3:21). More workers than cores starve the in-process test servers of CPU (a busy receiver
# taken for a stalled one is a resend, and a test that counts duplicates fails), so the default
# is 2, not the core count.
PYTEST_WORKERS ?= 2
PYTEST := pytest -n $(PYTEST_WORKERS) --dist worksteal

.PHONY: demo test lint typecheck unit unit-runtime functional deployable bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(RUN_STAMP) $(STAMP)

# The demo needs the package and its four dependencies only: 70 MB and some 20 s on a fresh
# clone, where the development tools (test servers, linters, type stubs) take 456 MB and a
# minute. `make test` adds them to the same virtualenv.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

demo: $(RUN_STAMP)
	$(BIN)/elb-log-shipper demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/$(PYTEST) tests/unit -q

functional: $(STAMP) tools
	$(BIN)/$(PYTEST) tests/functional -q

test: lint typecheck tools
	$(BIN)/$(PYTEST) -q
	$(MAKE) unit-runtime

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.parse_bench

clean:
	rm -rf $(VENV) $(SAM_VENV) $(RUNTIME_VENV) .mypy_cache .pytest_cache .ruff_cache build .aws-sam

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

# ---------------------------------------------------------------------------------------------------
# The unit tests again on the function's Python (the python3.13 runtime), in a virtualenv of their
# own: the per-line code (parsers, privacy rules, framing) runs on 3.13 in Lambda, and the rest of
# `make test` runs on $(PYTHON). Like the SAM checks, it needs python3.13 on PATH (SAM_PYENV); without
# it the step is skipped on a developer's machine and fails in CI (CI=true).
RUNTIME_PYTHON ?= python3.13
RUNTIME_VENV   ?= .venv-runtime
RUNTIME_STAMP  := $(RUNTIME_VENV)/.installed

$(RUNTIME_STAMP): pyproject.toml
	PYENV_VERSION=$(SAM_PYENV) $(RUNTIME_PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/pip install --quiet -e '.[unit]'
	touch $(RUNTIME_STAMP)

unit-runtime:
	@if PYENV_VERSION=$(SAM_PYENV) sh -c 'command -v $(RUNTIME_PYTHON)' >/dev/null; then \
		$(MAKE) $(RUNTIME_STAMP) && $(RUNTIME_VENV)/bin/python --version && \
		$(RUNTIME_VENV)/bin/$(PYTEST) tests/unit -q -p no:cacheprovider; \
	elif [ "$${CI:-}" = true ]; then \
		echo "unit-runtime: $(RUNTIME_PYTHON) is not on PATH (SAM_PYENV=$(SAM_PYENV))"; exit 1; \
	else \
		echo "unit-runtime: skipped, $(RUNTIME_PYTHON) is not on PATH (pyenv install 3.13.0, or set SAM_PYENV)"; \
	fi
