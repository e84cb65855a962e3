# Each target sets itself up: a virtualenv in .venv with the project and its dev extras.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

run: $(STAMP)  ## the main job, end to end on the embedded default
	$(VENV)/bin/metric-platform main

test: $(STAMP)  ## the whole test suite (PostgreSQL tests need METRIC_PLATFORM_TEST_PG_URL)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check metric_platform metric_platform_tests
	$(VENV)/bin/ruff format --check metric_platform metric_platform_tests
	$(VENV)/bin/mypy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .metric_platform
