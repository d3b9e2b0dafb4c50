#!/usr/bin/env bash
# Checks the manifests here with kubeconform, offline and strict: a field the Kubernetes API
# does not know, a duplicated key or a kind without a schema is an error. The schemas are
# Kubernetes' own (1.37), as the PyPI package kubernetes-validate ships them (a dev
# dependency): kubeconform would download its default ones from the internet, which CI does
# not reach. tests/unit/test_deployment.py runs this, and checks what a schema cannot.
#
#   deploy/kubernetes/validate.sh install          build kubeconform from the Go module proxy (pinned)
#                                                  into .cache/kubeconform/, and fetch the Compose
#                                                  Specification schema; instant when both are there
#   deploy/kubernetes/validate.sh [FILE...]        validate FILEs (default: every manifest here)
#   deploy/kubernetes/validate.sh compose-schema   print the path of compose-spec.json: the schema
#                                                  Docker Compose v2 checks compose files with (its
#                                                  Go module compose-go), for deploy/compose.yaml
#
# KUBERNETES_VERSION (default 1.37.0) picks another of the package's schema sets (1.25-1.37).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KUBECONFORM_MODULE=github.com/yannh/kubeconform/cmd/kubeconform
KUBECONFORM_VERSION=v0.8.0
# The compose-go that Docker Compose v2.40.3 is built with.
COMPOSE_GO=github.com/compose-spec/compose-go/v2@v2.9.1
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.0}"
CACHE="$REPO/.cache/kubeconform"
BIN="$CACHE/bin/kubeconform"
STAMP="$CACHE/bin/.version"
SCHEMAS="$CACHE/schemas/v$KUBERNETES_VERSION-local-strict"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

log() { echo "validate: $*" >&2; }
die() { echo "validate: ERROR: $*" >&2; exit 2; }

installed() { [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$KUBECONFORM_VERSION" ]]; }

need_go() {
  command -v go >/dev/null || die "Go (1.26 or newer) is needed to build kubeconform: none on PATH"
}

compose_go_dir() {
  need_go
  go mod download -json "$COMPOSE_GO" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

cmd_install() {
  if ! installed; then
    need_go
    log "building kubeconform $KUBECONFORM_VERSION (Go module proxy) ..."
    mkdir -p "$CACHE/bin"
    GOBIN="$CACHE/bin" go install "$KUBECONFORM_MODULE@$KUBECONFORM_VERSION"
    echo "$KUBECONFORM_VERSION" >"$STAMP"
  fi
  compose_go_dir >/dev/null
}

# The package's schemas refer to their definitions as /api/_definitions.json under an $id on
# kubernetes.io, which kubeconform would fetch from there: a copy with relative references
# and no $id resolves them beside each file instead. Made once per version, then reused.
prepare_schemas() {
  [[ -f "$SCHEMAS/_definitions.json" ]] && return 0
  [[ -x "$PYTHON" ]] || die "$PYTHON is missing: run make install"
  local partial="$SCHEMAS.partial.$$"
  rm -rf "$partial"
  mkdir -p "$partial"
  "$PYTHON" - "$KUBERNETES_VERSION" "$partial" <<'EOF'
import json
import sys
from pathlib import Path

try:
    import kubernetes_validate
except ImportError:
    sys.exit("validate: ERROR: kubernetes-validate is missing: run make install")

version, target = sys.argv[1], Path(sys.argv[2])
source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
source /= f"v{version}-local-strict"
if not source.is_dir():
    sys.exit(f"validate: ERROR: kubernetes-validate has no schemas for Kubernetes {version}")
for schema in source.glob("*.json"):
    text = schema.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
    document = json.loads(text)
    document.pop("$id", None)
    (target / schema.name).write_text(json.dumps(document))
EOF
  # A rename, so a run never sees half a set; another run's finished set may have won.
  mv -T "$partial" "$SCHEMAS" 2>/dev/null || rm -rf "$partial"
}

cmd_validate() {
  installed || die "kubeconform $KUBECONFORM_VERSION is missing: run make kubeconform"
  prepare_schemas
  local files=("$@")
  if [[ ${#files[@]} -eq 0 ]]; then
    for file in "$HERE"/*.yaml; do
      [[ "$(basename "$file")" == kustomization.yaml ]] || files+=("$file")
    done
  fi
  "$BIN" -strict -summary -output text \
    -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "${files[@]}"
}

case "${1:-}" in
  install) cmd_install ;;
  compose-schema) echo "$(compose_go_dir)/schema/compose-spec.json" ;;
  -h | --help) sed -n '2,16p' "$0" ;;
  *) cmd_validate "$@" ;;
esac
