# Local infrastructure targets; included by the top-level Makefile (`include deploy/deploy.mk`).
# Paths are relative to the repository root (run make from there).
#   make kafka           single-node KRaft Kafka on 127.0.0.1:KAFKA_PORT (default 9092) (jars fetched on first use)
#   make kafka-stop
#   make postgres        private PostgreSQL cluster on 127.0.0.1:PG_PORT (default 5432); prints DATABASE_URL
#   make postgres-stop
#   make browser         Debian's chromium for the browser tests (apt-get, as root; nothing when installed)
#   make kubeconform     kubeconform for deploy/kubernetes/validate.sh (built from the Go module proxy once, ~20 s)
#   make monitoring-check  promtool checks and tests deploy/monitoring/ (builds promtool once, ~10 min: not in `make test`)

DEPLOY_KAFKA    := deploy/kafka/kafka.sh
DEPLOY_POSTGRES := deploy/postgres/postgres.sh
DEPLOY_BROWSER  := deploy/browser/browser.sh

.PHONY: kafka kafka-stop postgres postgres-stop browser

kafka:
	bash $(DEPLOY_KAFKA) start

kafka-stop:
	bash $(DEPLOY_KAFKA) stop

postgres:
	bash $(DEPLOY_POSTGRES) start

postgres-stop:
	bash $(DEPLOY_POSTGRES) stop

browser:
	@bash $(DEPLOY_BROWSER) install

# Opt-in: `make test` checks the same files in Python (tests/unit/test_monitoring.py).
.PHONY: monitoring-check
monitoring-check:
	bash deploy/monitoring/tools.sh install
	bash deploy/monitoring/tools.sh check

# deploy/kubernetes/validate.sh checks the manifests with it; so does `make test`.
.PHONY: kubeconform
kubeconform:
	@bash deploy/kubernetes/validate.sh install
