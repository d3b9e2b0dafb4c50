#!/usr/bin/env bash
# `make run`: the service on the embedded default (SQLite), with the demo played against it.
# On a terminal the service keeps running after the demo until Ctrl-C; elsewhere it stops.
# DATA_DIR (default data) holds the store and the log; HTTP_PORT, KAFKA_BOOTSTRAP_SERVERS,
# TOPIC_* and the other settings pass through to the service and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${DATA_DIR:-data}"
export DATABASE_URL="${DATABASE_URL:-sqlite:///$data/fulfillment}"
# The demo's story is set in fixed business time (the week of 2026-11-25) and publishes its
# own clock tick; the service's wall-clock ticks would expire its backorders on a schedule of
# their own, so they are off unless asked for.
export CLOCK_INTERVAL_SECONDS="${CLOCK_INTERVAL_SECONDS:-0}"
mkdir -p "$data"
log="$data/service.log"
# The planners' page, on the service's HTTP port (Settings.http_port: 8080 unless HTTP_PORT).
dashboard="http://127.0.0.1:${HTTP_PORT:-8080}/dashboard"

.venv/bin/fulfillment run >"$log" 2>&1 &
service=$!
stop() { kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true; }
trap stop EXIT INT TERM

echo "fulfillment: running (pid $service, store $DATABASE_URL, log $log)"
echo "fulfillment: dashboard at $dashboard"
for _ in $(seq 1 60); do
  grep -q '"running"\|running ' "$log" 2>/dev/null && break
  kill -0 "$service" 2>/dev/null || { echo "the service stopped:"; tail -20 "$log"; exit 1; }
  sleep 0.5
done

.venv/bin/fulfillment demo

if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo
  echo "The service is still running (log: $log); the dashboard is at $dashboard"
  echo "Ctrl-C stops it."
  wait "$service"
fi
