#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from source through the
# Go module proxy and installs it into bin/k8s/<k8s-version>/. Prebuilt downloads
# (setup-envtest) are not reachable on our machines, so we compile instead.
#
# Idempotent: when both binaries exist at the pinned versions, it prints the asset
# directory and does nothing else. A cold build takes ~7 minutes on 2 cores.
#
# Usage: hack/envtest-assets.sh            # build if needed, print asset dir
#        K8S_VERSION=1.37.2 ETCD_VERSION=3.5.35 hack/envtest-assets.sh
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.5.35}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${ROOT}/bin/k8s/${K8S_VERSION}
STAMP=${DEST}/.versions
WANT="kube-apiserver=v${K8S_VERSION} etcd=v${ETCD_VERSION}"

log() { echo "envtest-assets: $*" >&2; }

if [[ -x ${DEST}/kube-apiserver && -x ${DEST}/etcd && -f ${STAMP} && "$(cat "${STAMP}")" == "${WANT}" ]]; then
  echo "${DEST}"
  exit 0
fi

mkdir -p "${DEST}"
WORK=${ROOT}/bin/.build
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
export GOWORK=off

# --- kube-apiserver -------------------------------------------------------------
# k8s.io/kubernetes replaces its staging modules with ./staging/src/...; those
# replace directives are ignored for a dependency, so a throwaway main module must
# require each staging module at its published v0.<minor>.<patch> tag.
build_apiserver() {
  local dir=${WORK}/kubernetes-${K8S_VERSION}
  local minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  local staging="v0.${K8S_VERSION#*.}"
  mkdir -p "${dir}"
  (
    cd "${dir}"
    if [[ ! -f go.mod ]]; then
      printf 'module envtestassets/kubernetes\n\ngo 1.26\n' > go.mod
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      [[ -f ${gomod} ]] || { log "could not download k8s.io/kubernetes@v${K8S_VERSION}"; exit 1; }
      local args=("-require=k8s.io/kubernetes@v${K8S_VERSION}")
      # A few staging modules (sample-*, for instance) are not published; none of
      # them is imported by kube-apiserver, so an empty local stub satisfies the graph.
      while read -r mod; do
        if go mod download "${mod}@${staging}" >/dev/null 2>&1; then
          args+=("-require=${mod}@${staging}")
        else
          log "${mod}@${staging} is not on the module proxy; stubbing it"
          mkdir -p "stubs/${mod}"
          printf 'module %s\n\ngo 1.26\n' "${mod}" > "stubs/${mod}/go.mod"
          args+=("-replace=${mod}=./stubs/${mod}")
        fi
      done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "${gomod}")
      go mod edit "${args[@]}"
    fi
    local ld=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      ld+=" -X ${pkg}.gitTreeState=clean"
    done
    log "building kube-apiserver v${K8S_VERSION} (cold: ~7 min on 2 cores)"
    go build -trimpath -ldflags "-s -w${ld}" -o "${DEST}/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  )
}

# --- etcd -------------------------------------------------------------------------
build_etcd() {
  local dir=${WORK}/etcd-${ETCD_VERSION}
  mkdir -p "${dir}"
  (
    cd "${dir}"
    if [[ ! -f go.mod ]]; then
      printf 'module envtestassets/etcd\n\ngo 1.26\n' > go.mod
      go mod edit "-require=go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
    fi
    log "building etcd v${ETCD_VERSION}"
    go build -trimpath -ldflags "-s -w" -o "${DEST}/etcd" go.etcd.io/etcd/server/v3
  )
}

[[ -x ${DEST}/etcd && -f ${STAMP} ]] && grep -q "etcd=v${ETCD_VERSION}" "${STAMP}" || build_etcd
[[ -x ${DEST}/kube-apiserver && -f ${STAMP} ]] && grep -q "kube-apiserver=v${K8S_VERSION}" "${STAMP}" || build_apiserver
echo "${WANT}" > "${STAMP}"
"${DEST}/kube-apiserver" --version >&2
"${DEST}/etcd" --version | sed -n 1p >&2
echo "${DEST}"
