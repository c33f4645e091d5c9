#!/usr/bin/env bash
# Builds the project's container images without Docker or a registry and imports
# them into the local cluster's containerd (namespace k8s.io):
#
#   docker.io/library/cometd-pause:dev      the pod sandbox (hack/cluster/pause)
#   docker.io/library/cometd-operator:dev   the manager (cmd/manager)
#   docker.io/library/cometd-broker:dev     the broker (cmd/broker)
#   docker.io/library/nats:2.15.2           nats-server, for managed NATS
#
# Each is a single-layer OCI image-layout tarball written by hack/images into
# bin/images/ (static binary, non-root user 65532). A tarball whose bytes did not
# change since its last import is not imported again.
#
# Usage: hack/cluster/images.sh [all|pause|operator|broker|nats]...   (default: all)
#        IMPORT=0 hack/cluster/images.sh   # build the tarballs only
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=${BIN}/images
NATS_VERSION=${NATS_VERSION:-2.15.2}
IMPORT=${IMPORT:-1}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-docker.io/library/cometd-operator:dev}
BROKER_IMAGE=${BROKER_IMAGE:-docker.io/library/cometd-broker:dev}
NATS_IMAGE=${NATS_IMAGE:-docker.io/library/nats:${NATS_VERSION}}
mkdir -p "${OUT}/bin"

gobuild() { (cd "${ROOT}" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w" -o "${OUT}/bin/" "$@"); }

# image NAME REF ENTRYPOINT HOSTFILE=IMAGEPATH...: writes bin/images/NAME.tar and imports it.
image() {
  local name=$1 ref=$2 entry=$3; shift 3
  local args=() f
  for f in "$@"; do args+=(-file "${f}"); done
  (cd "${ROOT}" && go run ./hack/images -name "${ref}" -entrypoint "${entry}" -o "${OUT}/${name}.tar" "${args[@]}")
  [[ ${IMPORT} == 1 ]] || { log "built ${OUT}/${name}.tar (${ref})"; return 0; }
  local sum stampf=${OUT}/${name}.imported
  sum=$(sha256sum "${OUT}/${name}.tar" | cut -d' ' -f1)
  if [[ -f ${stampf} && "$(cat "${stampf}")" == "${sum}" ]] && ctr_k8s images ls -q "name==${ref}" | grep -x "${ref}" >/dev/null; then
    return 0
  fi
  ctr --address "${CONTAINERD_SOCK}" version >/dev/null 2>&1 || die "containerd is not running: run hack/cluster/up.sh first"
  ctr_k8s images import "${OUT}/${name}.tar" >/dev/null
  ctr_k8s images ls -q "name==${ref}" | grep -x "${ref}" >/dev/null || die "import of ${ref} did not produce the image"
  echo "${sum}" > "${stampf}"
  log "imported ${ref}"
}

build() {
  case $1 in
    pause)
      gobuild ./hack/cluster/pause
      image pause "${PAUSE_IMAGE}" /pause "${OUT}/bin/pause=/pause" ;;
    operator)
      [[ -d ${ROOT}/cmd/manager ]] || die "cmd/manager does not exist yet"
      gobuild ./cmd/manager
      image operator "${OPERATOR_IMAGE}" /manager "${OUT}/bin/manager=/manager" ;;
    broker)
      gobuild ./cmd/broker
      image broker "${BROKER_IMAGE}" /broker "${OUT}/bin/broker=/broker" ;;
    nats)
      "${ROOT}/hack/cluster/build-binaries.sh"
      image nats "${NATS_IMAGE}" /nats-server "${BIN}/nats-server=/nats-server" ;;
    all)
      build pause; build broker; build nats
      if [[ -d ${ROOT}/cmd/manager ]]; then build operator; else log "skipping the operator image: no cmd/manager yet"; fi ;;
    *) die "unknown image $1 (want all, pause, operator, broker or nats)" ;;
  esac
}

(( $# )) || set -- all
for i in "$@"; do build "${i}"; done
