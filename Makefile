# Two entry points for a new user: `make run` serves the bundled model on port 8000,
# `make test` installs the test tools and runs every check CI runs.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# torch is pinned everywhere: any other version pulls a CUDA build of several GB.
TORCH := torch==2.13.0
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true

.PHONY: run serve test lint typecheck check install install-test train benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[torch]"

install-test: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[torch,export,test]" -e "./training[tracking]"

run: install serve

serve:
	$(BIN)/mnist-backend serve --host 0.0.0.0 --port $(PORT)

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

check: lint typecheck
	$(BIN)/pytest

test: install-test check

train: install-test
	cd training && ../$(BIN)/kedro run

# Load benchmark (wrk on 127.0.0.1); BENCHMARK_ARGS=--quick for a 3 s smoke run.
benchmark: install-test
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/run.py $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output
