#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/browser.py): Debian's `chromium` package.
# Playwright drives it through `executable_path`; its own browser download is never used
# (a browser fetched at run time is not available on these machines).
#
#   deploy/browser/browser.sh install   install Debian's chromium unless it is there (as root, apt-get);
#                                       quiet and instant when already installed
#   deploy/browser/browser.sh path      print the executable (exit 1 when not installed)
set -euo pipefail

CHROMIUM=/usr/bin/chromium
PACKAGE=chromium

log() { echo "browser: $*" >&2; }
die() { echo "browser: ERROR: $*" >&2; exit 1; }

installed() { [[ -x "$CHROMIUM" ]]; }

# Without recommends: the browser and its libraries, not a desktop's daemons (25 packages, not 130).
apt_install() { apt-get install -y -q --no-install-recommends "$PACKAGE"; }

cmd_install() {
  installed && return 0
  if [[ "$(id -u)" != 0 ]]; then
    die "$CHROMIUM is missing; install Debian's '$PACKAGE' package as root:" \
      "sudo apt-get update && sudo apt-get install -y $PACKAGE"
  fi
  log "installing Debian's '$PACKAGE' package ..."
  export DEBIAN_FRONTEND=noninteractive
  # The package index may be missing on a fresh machine (the package is unknown), or stale
  # (its files are gone from the mirror): refresh it then, and try once more.
  if ! apt-cache show "$PACKAGE" >/dev/null 2>&1; then
    apt-get update -q >/dev/null || die "apt-get update failed"
  fi
  local output
  if ! output="$(apt_install 2>&1)"; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    if ! output="$(apt_install 2>&1)"; then
      echo "$output" >&2
      die "apt-get install $PACKAGE failed"
    fi
  fi
  installed || die "$PACKAGE installed but $CHROMIUM is missing"
  log "installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
}

cmd_path() {
  installed || die "$CHROMIUM is missing; run: bash $0 install"
  echo "$CHROMIUM"
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path ;;
  *) echo "usage: $0 {install|path}" >&2; exit 2 ;;
esac
