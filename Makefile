# One-command set-up: every target creates or updates .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_DATASETS_DISABLE_PROGRESS_BARS := 1
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install demo test ui bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml ds_assets/formats/_xmltree.pyx  # the .pyx: rebuilt by pip
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

$(DAGSTER_HOME):
	mkdir -p $(DAGSTER_HOME)

demo: $(STAMP) $(DAGSTER_HOME)
	$(BIN)/python definitions.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

ui: $(STAMP) $(DAGSTER_HOME)
	$(BIN)/dagster dev -f definitions.py

bench: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/store_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/ops_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/xml_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/sql_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/webdataset_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/hdf5_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/index_embedded_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/index_qdrant_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/index_elasticsearch_bench.py
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/index_incremental_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .dagster_home
