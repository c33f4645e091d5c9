#!/usr/bin/env bash
# Fails when `make generate manifests` would change the tree: generated deepcopy
# code, CRDs or RBAC are stale. Compares a snapshot taken before regeneration with
# the result, so it works on uncommitted trees too.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
snap=$(mktemp -d)
trap 'rm -rf "${snap}"' EXIT
dirs=(api config docs charts)
for d in "${dirs[@]}"; do [[ -d $d ]] && cp -a "$d" "${snap}/"; done
mkdir -p docs
make --no-print-directory generate manifests docs >/dev/null
stale=0
for d in "${dirs[@]}"; do
  [[ -d $d ]] || continue
  if ! diff -r "${snap}/$d" "$d" >"${snap}/diff.txt"; then
    stale=1
    cat "${snap}/diff.txt"
  fi
done
if [[ ${stale} == 1 ]]; then
  echo "verify-generated: generated code or manifests are stale; run 'make generate manifests docs' and commit the result" >&2
  exit 1
fi
echo "verify-generated: deepcopy, CRDs and RBAC are up to date"
