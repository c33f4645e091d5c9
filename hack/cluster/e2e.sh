#!/usr/bin/env bash
# `make e2e`: the end-to-end suite (test/e2e, build tag e2e) on the local cluster.
# Brings the cluster up if needed, builds and imports the images, runs the suite,
# and brings the cluster down again if it was down before (E2E_KEEP_CLUSTER=1
# keeps it). On failure the suite writes diagnostics under bin/e2e-artifacts/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E_TIMEOUT=${E2E_TIMEOUT:-40m}
E2E_FLAGS=${E2E_FLAGS:--v}
KUSTOMIZE=${KUSTOMIZE:-${BIN}/kustomize}

was_up=0
running kube-apiserver && running kubelet && was_up=1
t0=${SECONDS}
"${ROOT}/hack/cluster/up.sh"
t1=${SECONDS}
"${ROOT}/hack/cluster/images.sh" all
t2=${SECONDS}

mkdir -p "${BIN}/tmp"
rc=0
# shellcheck disable=SC2086 # E2E_FLAGS is a list of flags
(
  cd "${ROOT}"
  E2E_KUBECONFIG=${KUBECONFIG_ADMIN} E2E_KUBECTL=${K8S_BIN}/kubectl E2E_KUSTOMIZE=${KUSTOMIZE} E2E_HELM=${HELM:-${BIN}/helm} \
    TMPDIR=${BIN}/tmp go test -tags e2e -race -count=1 -timeout "${E2E_TIMEOUT}" ${E2E_FLAGS} ./test/e2e
) || rc=$?
t3=${SECONDS}

if (( ! was_up )) && [[ ${E2E_KEEP_CLUSTER:-0} != 1 ]]; then
  "${ROOT}/hack/cluster/down.sh"
fi
log "e2e: cluster up $((t1 - t0))s, images $((t2 - t1))s, suite $((t3 - t2))s, down $((SECONDS - t3))s; exit ${rc}"
exit "${rc}"
