# The two commands for a fresh machine are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export KAFKA_PORT ?= 9092
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)

include deploy/deploy.mk

.PHONY: install run demo test lint typecheck unit integration e2e test-reliability bench schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: set up, start Kafka, run the service on SQLite and play the demo scenario against it
run: install kafka
	@bash scripts/run-demo.sh

## test: set up, start Kafka and PostgreSQL, run ruff, mypy and the whole pytest suite
test: install kafka postgres lint typecheck
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $$(ls -d events services projections tests bench 2>/dev/null)

unit: install
	$(BIN)/pytest tests/unit

schemas: install
	$(BIN)/python -m events.generate

test-reliability: install kafka postgres
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/pytest tests/reliability

bench: install kafka postgres
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/python -m bench.run

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
