#!/usr/bin/env bash
# `make run`: the whole product on a Kubernetes cluster.
#
# With KUBECONFIG unset, it brings up the local single-node cluster
# (hack/cluster/up.sh), builds and imports the images (hack/cluster/images.sh),
# and uses that. With KUBECONFIG set, it uses that cluster, whose nodes must be
# able to pull IMG, BROKER_IMG and NATS_IMG (see hack/cluster/deploy.sh).
#
# Then it installs the CRDs and the operator with kustomize (config/default),
# applies the sample CometdCluster, waits until it is Available and prints the
# client endpoint and how to watch it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SAMPLE=${SAMPLE:-${ROOT}/config/samples/cometd_v1alpha1_cometdcluster.yaml}
SAMPLE_NS=${SAMPLE_NS:-default}
t0=${SECONDS}

local_cluster=0
if [[ -z ${KUBECONFIG:-} ]]; then
  local_cluster=1
  "${ROOT}/hack/cluster/up.sh"
  export KUBECONFIG=${KUBECONFIG_ADMIN}
  "${ROOT}/hack/cluster/images.sh" all
else
  log "using the cluster of KUBECONFIG=${KUBECONFIG}"
fi
KUBECTL=${K8S_BIN}/kubectl
[[ -x ${KUBECTL} ]] || KUBECTL=$(command -v kubectl) || die "no kubectl"

"${ROOT}/hack/cluster/deploy.sh"

name=$("${KUBECTL}" create --dry-run=client -o jsonpath='{.metadata.name}' -f "${SAMPLE}")
log "applying ${SAMPLE#"${ROOT}/"} (CometdCluster ${SAMPLE_NS}/${name})"
"${KUBECTL}" apply -n "${SAMPLE_NS}" -f "${SAMPLE}" >/dev/null
if ! "${KUBECTL}" wait -n "${SAMPLE_NS}" --for=condition=Available "cometdcluster/${name}" --timeout=180s >/dev/null; then
  "${KUBECTL}" get -n "${SAMPLE_NS}" "cometdcluster/${name}" -o yaml >&2
  "${KUBECTL}" get events -n "${SAMPLE_NS}" --sort-by=.lastTimestamp | tail -n 20 >&2
  die "CometdCluster ${SAMPLE_NS}/${name} did not become Available"
fi

endpoint=$("${KUBECTL}" get -n "${SAMPLE_NS}" "cometdcluster/${name}" -o jsonpath='{.status.endpoint}')
svc_ip=$("${KUBECTL}" get -n "${SAMPLE_NS}" "service/${name}" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
svc_port=$("${KUBECTL}" get -n "${SAMPLE_NS}" "service/${name}" -o jsonpath='{.spec.ports[0].port}' 2>/dev/null || true)
kc=""
(( local_cluster )) && kc="KUBECONFIG=${KUBECONFIG}"
cat <<MSG

CometdCluster ${SAMPLE_NS}/${name} is Available ($((SECONDS - t0))s).

  Client endpoint (inside the cluster): ${endpoint:-http://${name}.${SAMPLE_NS}.svc/cometd}
MSG
if (( local_cluster )) && [[ -n ${svc_ip} ]]; then
  cat <<MSG
  From this machine (Service ClusterIP):  http://${svc_ip}:${svc_port}/cometd

  Try it with the Faye and CometD clients:
    node test/e2e/clients.mjs sub faye http://${svc_ip}:${svc_port}/cometd /chat/demo 1 &
    node test/e2e/clients.mjs pub cometd http://${svc_ip}:${svc_port}/cometd /chat/demo '{"text":"hello"}'
MSG
fi
cat <<MSG

  From anywhere kubectl works:
    ${KUBECTL} port-forward -n ${SAMPLE_NS} service/${name} 8080:${svc_port:-80}   # then http://127.0.0.1:8080/cometd

  Watch it:
    export ${kc:-KUBECONFIG=${KUBECONFIG}}
    ${KUBECTL} get cometdclusters -n ${SAMPLE_NS} -w
    ${KUBECTL} get pods -n ${SAMPLE_NS} -l app.kubernetes.io/instance=${name} -w
    ${KUBECTL} logs -n cometd-system deploy/cometd-operator-controller-manager -f
    ${KUBECTL} scale cometdcluster/${name} -n ${SAMPLE_NS} --replicas=1
MSG
(( local_cluster )) && echo "  Stop the local cluster: make cluster-down"
exit 0
