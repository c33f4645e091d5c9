#!/usr/bin/env bash
# Builds everything a local single-node cluster needs from source through the Go
# module proxy, and caches it under bin/:
#
#   bin/k8s/<k8s>/{kube-apiserver,etcd}            (via hack/envtest-assets.sh)
#   bin/k8s/<k8s>/{kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
#   bin/coredns                                    CoreDNS, runs on the host
#   bin/nats-server                                for the managed-NATS image
#
# The Kubernetes components are built in the same throwaway module as kube-apiserver
# (bin/.build/kubernetes-<k8s>), so they reuse its module graph and build cache.
# Idempotent: a second run checks version stamps and builds nothing.
#
# Usage: hack/cluster/build-binaries.sh
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.5.35}
COREDNS_VERSION=${COREDNS_VERSION:-1.15.0}
NATS_VERSION=${NATS_VERSION:-2.15.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${ROOT}/bin
DEST=${BIN}/k8s/${K8S_VERSION}
WORK=${BIN}/.build
COMPONENTS=(kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { echo "build-binaries: $*" >&2; }

export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
export GOWORK=off
export GOTOOLCHAIN=local

# stamped NAME WANT: true when bin stamp NAME holds WANT.
stamped() { [[ -f ${BIN}/.stamps/$1 && "$(cat "${BIN}/.stamps/$1")" == "$2" ]]; }
stamp() { mkdir -p "${BIN}/.stamps"; echo "$2" > "${BIN}/.stamps/$1"; }

# kube-apiserver and etcd, and the throwaway module the rest is built in.
K8S_VERSION=${K8S_VERSION} ETCD_VERSION=${ETCD_VERSION} "${ROOT}/hack/envtest-assets.sh" >/dev/null

# --- the other Kubernetes components ----------------------------------------------
want="v${K8S_VERSION}"
missing=()
for c in "${COMPONENTS[@]}"; do [[ -x ${DEST}/${c} ]] || missing+=("${c}"); done
if (( ${#missing[@]} )) || ! stamped k8s-components "${want}"; then
  (( ${#missing[@]} )) || missing=("${COMPONENTS[@]}")
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    ld+=" -X ${pkg}.gitTreeState=clean"
  done
  pkgs=()
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done
  log "building ${missing[*]} v${K8S_VERSION} (cold: ~4 min on 2 cores after kube-apiserver)"
  (cd "${WORK}/kubernetes-${K8S_VERSION}" && go build -trimpath -ldflags "-s -w${ld}" -o "${DEST}/" "${pkgs[@]}")
  stamp k8s-components "${want}"
fi

# --- CoreDNS and nats-server: plain `go install` from the module proxy -------------
# go_install NAME MODULE@VERSION: installs into bin/NAME through a private GOBIN.
go_install() {
  local name=$1 target=$2
  if [[ -x ${BIN}/${name} ]] && stamped "${name}" "${target}"; then return; fi
  log "building ${target}"
  local gobin=${WORK}/gobin-${name}
  rm -rf "${gobin}"; mkdir -p "${gobin}"
  GOFLAGS= GOBIN=${gobin} go install -trimpath -ldflags "-s -w" "${target}"
  mv "${gobin}/${3:-${name}}" "${BIN}/${name}"
  rm -rf "${gobin}"
  stamp "${name}" "${target}"
}
go_install coredns "github.com/coredns/coredns@v${COREDNS_VERSION}"
go_install nats-server "github.com/nats-io/nats-server/v2@v${NATS_VERSION}"

for c in "${COMPONENTS[@]}"; do
  [[ -x ${DEST}/${c} ]] || { log "missing ${DEST}/${c}"; exit 1; }
done
log "ok: $("${DEST}/kubectl" version --client 2>/dev/null | sed -n 1p), coredns v${COREDNS_VERSION}, nats-server v${NATS_VERSION}"
