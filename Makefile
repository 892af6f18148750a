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

# The OHIF viewer the API serves at /viewer/: the pinned prebuilt package, into viewer/dist.
VIEWER := viewer/dist/.installed
$(VIEWER): viewer/package.json viewer/install.sh $(BIN)/.installed
	bash viewer/install.sh
	touch $@

setup: $(BIN)/.installed $(VIEWER)

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

# Benchmarks against Orthanc from Debian (bench/README.md): several minutes, servers of their own.
.PHONY: bench
bench: setup
	bash bench/install.sh
	$(BIN)/python bench/make_corpus.py
	$(BIN)/python bench/cstore.py
	$(BIN)/python bench/dicomweb.py
	$(BIN)/python bench/scp_alone.py
