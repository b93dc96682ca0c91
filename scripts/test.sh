#!/usr/bin/env bash
# Runs every test: vet, the main module with the race detector, and the Dapr
# SDK compatibility suites against the built binary: Go (test/sdk, go-sdk)
# and JavaScript (test/js, @dapr/dapr from npm; needs node and npm).
# Backing services are optional locally: tests that need Redis/PostgreSQL read
# REDIS_ADDR / PG_DSN (from /tmp/dapr-services/services.env when present) and
# skip without them, unless MECHA_REQUIRE_SERVICES=1 (CI) makes them fail.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${REDIS_ADDR:-}${PG_DSN:-}" ] && [ -f "${SERVICES_DIR:-/tmp/dapr-services}/services.env" ]; then
  # shellcheck disable=SC1091
  source "${SERVICES_DIR:-/tmp/dapr-services}/services.env"
fi
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
echo "== go vet"
go vet ./...
go vet -tags k8s ./...
echo "== go test (main module, -race, with the optional k8s components)"
go test -race -tags k8s -count=1 -timeout 20m ./...
fuzztime="${MECHA_FUZZTIME:-3s}"
if [ "$fuzztime" != "0" ]; then
  echo "== go test -fuzz (every fuzz target briefly, ${fuzztime} each; MECHA_FUZZTIME=0 skips)"
  # Each target also runs its committed seed corpus in the -race run above.
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
    pkg="./$(dirname "${f#./}")"
    for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
      go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/dev/null || {
        echo "fuzzing $name in $pkg failed:"; go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; exit 1; }
      echo "ok  $pkg $name"
    done
  done
fi
if [ -f test/sdk/go.mod ]; then
  echo "== go test (test/sdk: Dapr Go SDK against the mecha binary)"
  (cd test/sdk && go vet ./... && go test -count=1 -timeout 15m ./...)
fi
if [ -f test/js/package.json ]; then
  echo "== node --test (test/js: Dapr JavaScript SDK @dapr/dapr against the built binary)"
  jsbin=$(mktemp -d)
  trap 'rm -rf "$jsbin"' EXIT
  go build -o "$jsbin/mecha" ./cmd/mecha
  (cd test/js && npm ci --no-audit --no-fund --loglevel=error && MECHA_BIN="$jsbin/mecha" npm test)
fi
echo "== all tests passed"
