# dicomflow: `make run` runs the whole system locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint stack-up stack-down clean

$(BIN)/.installed: pyproject.toml stack/install-system.sh
	bash stack/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/dicomflow run

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -ra

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

stack-up: setup
	$(BIN)/dicomflow stack up

stack-down: setup
	$(BIN)/dicomflow stack down

clean: stack-down
	rm -rf .stack
