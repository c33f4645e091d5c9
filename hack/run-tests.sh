#!/usr/bin/env bash
# Runs go test with the given flags and packages, writes the full JSON event log
# to bin/test-results.json and prints a readable summary ending in
# "go test: N passed, N failed, N skipped". Exits non-zero on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
mkdir -p bin "${TMPDIR:-bin/tmp}"
go build -o bin/testsummary ./hack/testsummary
set +e
go test -json "$@" 2>&1 | tee bin/test-results.json | bin/testsummary
codes=("${PIPESTATUS[@]}")
set -e
[[ ${codes[0]} == 0 && ${codes[2]} == 0 ]]
