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
test: install kafka postgres browser kubeconform lint typecheck
	rm -f data/reliability-results.jsonl
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/pytest
	@echo; echo "Fault-injection summary (data/reliability-results.jsonl):"
	@$(BIN)/python -c "import json; [print(json.loads(l)['line']) for l in open('data/reliability-results.jsonl')]"

## lint: ruff, and the import-linter contracts in pyproject.toml (layers point one way)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy $$(ls -d events services projections fulfillment_client tests bench examples 2>/dev/null)

unit: install
	$(BIN)/pytest tests/unit

schemas: install
	$(BIN)/python -m events.generate

## test-reliability: the fault-injection suite at full size (thousands of orders per scenario)
test-reliability: install kafka postgres
	rm -f data/reliability-results.jsonl
	RELIABILITY_ORDERS=$${RELIABILITY_ORDERS:-5000} \
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/pytest tests/reliability -p no:logging
	@echo; echo "Summary (data/reliability-results.jsonl):"
	@$(BIN)/python -c "import json; [print(json.loads(l)['line']) for l in open('data/reliability-results.jsonl')]"

bench: install kafka postgres
	DATABASE_URL_TEST="$$(deploy/postgres/postgres.sh url test)" $(BIN)/python -m bench.run

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
