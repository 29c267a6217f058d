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

LISTEN ?= 127.0.0.1:9095
JOURNAL ?= sqlite:///./kurative.db

# The daemon on the example playbooks, in dry-run, with the embedded SQLite journal (no server needed).
run: $(BIN)/.installed
	@echo "kurative serve on http://$(LISTEN) (dry-run, journal $(JOURNAL)); stop it with Ctrl-C."
	@echo "Send it an alert:   curl -s -H 'Content-Type: application/json' --data @examples/alerts/crashlooping.json http://$(LISTEN)/api/v1/alerts"
	@echo "See what it did:    $(BIN)/kurative executions list --journal $(JOURNAL)"
	@echo "                    $(BIN)/kurative executions show --journal $(JOURNAL) <ID>"
	$(BIN)/kurative serve --rules examples/playbooks --dry-run --listen $(LISTEN) --journal $(JOURNAL)

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
