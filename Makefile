# The two set-up commands of the README: `make demo` (compile the quickstart for Airflow and run it
# locally) and `make test` (the whole suite with ruff and mypy). Each creates its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv

.PHONY: demo test test-fast lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(UV) pip install --quiet --python $(BIN)/python -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(UV) pip install --quiet --python $(BIN)/python -e '.[all,test]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/pipecast compile examples/quickstart.py --target airflow --out build/airflow
	$(BIN)/pipecast run examples/quickstart.py -p n=20

lint: $(VENV)/.test
	$(BIN)/ruff check pipecast tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The fast layer while working: every test but those that start a real engine or server (tests/helpers/slow.py).
test-fast: $(VENV)/.test
	$(BIN)/python -m pytest -q -m "not slow"

docs: $(VENV)/.test
	$(BIN)/python -m tests.helpers.docs

bench: $(VENV)/.test
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
