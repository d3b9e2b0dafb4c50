#!/usr/bin/env bash
# promtool, Prometheus's own checker, for the alerting rules beside this file: built from the
# Go module proxy into .cache/promtool (git-ignored), since no package ships it here.
#
# Not part of `make test`: on this 2-core machine a fresh build took 743 s (modules fetched,
# much of Prometheus compiled; another build was running) and 284 s with the modules already
# fetched: too long for every CI run. `make test` checks the same files with Python instead
# (tests/unit/test_monitoring.py: PromQL parsed by promql-parser, metric names against the
# service's registry, the rules' and the dashboard's structure).
#
#   deploy/monitoring/tools.sh install   build promtool unless this version is there (idempotent)
#   deploy/monitoring/tools.sh path      print the executable (exit 1 when not installed)
#   deploy/monitoring/tools.sh check     promtool check rules + test rules + check config
set -euo pipefail

VERSION=v0.316.0 # github.com/prometheus/prometheus (Prometheus 3.16's module version)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/.cache/promtool"
PROMTOOL="$CACHE/bin/promtool"
STAMP="$CACHE/bin/VERSION"

log() { echo "promtool: $*" >&2; }
die() { echo "promtool: ERROR: $*" >&2; exit 1; }

installed() { [[ -x "$PROMTOOL" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; }

cmd_install() {
  installed && return 0
  command -v go >/dev/null || die "go is missing: install a Go toolchain (1.25 or newer)"
  log "building promtool $VERSION from the Go module proxy (5 to 12 minutes) ..."
  local started=$SECONDS
  GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go/build" \
    GOBIN="$CACHE/bin" GOFLAGS=-mod=mod \
    go install "github.com/prometheus/prometheus/cmd/promtool@$VERSION" ||
    die "go install github.com/prometheus/prometheus/cmd/promtool@$VERSION failed"
  echo "$VERSION" >"$STAMP"
  # The sources and objects it compiled take 5 GB; the binary is all that is used.
  GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" go clean -modcache
  rm -rf "$CACHE/go"
  log "installed $PROMTOOL in $((SECONDS - started)) s"
}

cmd_path() {
  installed || die "$PROMTOOL is missing; run: bash $0 install"
  echo "$PROMTOOL"
}

cmd_check() {
  installed || die "$PROMTOOL is missing; run: bash $0 install"
  cd "$HERE"
  "$PROMTOOL" check rules alerts.yml
  "$PROMTOOL" test rules alerts.test.yml
  "$PROMTOOL" check config --syntax-only prometheus.yml
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path ;;
  check) cmd_check ;;
  *) echo "usage: $0 {install|path|check}" >&2; exit 2 ;;
esac
