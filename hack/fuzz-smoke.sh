#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 10s) each, starting
# from its seed corpus. A crash fails the run and leaves the input in testdata/fuzz.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
FUZZTIME=${FUZZTIME:-10s}
n=0
while IFS=: read -r file name; do
  pkg=./$(dirname "${file}")
  echo "fuzz: ${pkg} ${name} for ${FUZZTIME}"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME}" "${pkg}" >bin/fuzz-last.log 2>&1 || {
    cat bin/fuzz-last.log; echo "fuzz: ${name} in ${pkg} FAILED"; exit 1; }
  n=$((n + 1))
done < <(git ls-files -co --exclude-standard '*_test.go' | xargs grep -oH '^func Fuzz[A-Za-z0-9_]*' | sed 's/func //')
echo "fuzz: ${n} targets, 0 failed"
