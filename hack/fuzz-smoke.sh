#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each, starting from its seed
# corpus. A crash fails the run and leaves the input in testdata/fuzz.
#
# FUZZTIME defaults to a count of executions (200000x), not a duration: with a
# duration, Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" failure when the time runs out while a worker is mid-call
# (go.dev/issue/75804, fixed in Go 1.27). A count has no deadline to race.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
FUZZTIME=${FUZZTIME:-200000x}
n=0
while IFS=: read -r file name; do
  pkg=./$(dirname "${file}")
  echo "fuzz: ${pkg} ${name} for ${FUZZTIME}"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME}" -timeout 10m "${pkg}" >bin/fuzz-last.log 2>&1 || {
    cat bin/fuzz-last.log; echo "fuzz: ${name} in ${pkg} FAILED"; exit 1; }
  n=$((n + 1))
done < <(git ls-files -co --exclude-standard '*_test.go' | xargs grep -oH '^func Fuzz[A-Za-z0-9_]*' | sed 's/func //')
echo "fuzz: ${n} targets, 0 failed"
