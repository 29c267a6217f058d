# Two commands for a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit install clean docs

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/kurative lint examples/playbooks
	$(BIN)/kurative lint rules/

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit

test: lint typecheck
	$(BIN)/pytest

# Regenerate the files that are generated from the code (tests check that they are current).
docs: $(BIN)/.installed
	$(BIN)/python -m tests.support.generated

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
