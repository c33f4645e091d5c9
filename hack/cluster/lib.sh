# Shared paths and helpers for hack/cluster/*.sh. Source it; do not run it.
#
# Everything the local cluster writes lives under bin/cluster/, except what the
# kubelet, containerd and CNI insist on putting on the host (listed in HOST_PATHS,
# removed by down.sh unless it existed before up.sh ran).

K8S_VERSION=${K8S_VERSION:-1.37.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${ROOT}/bin
K8S_BIN=${BIN}/k8s/${K8S_VERSION}
CL=${BIN}/cluster
PKI=${CL}/pki
RUN=${CL}/run            # pid files
LOGS=${CL}/logs
HOSTSTATE=${CL}/host     # what up.sh changed on the host, for down.sh
KUBECONFIG_ADMIN=${CL}/kubeconfig
CONTAINERD_SOCK=${CL}/containerd/containerd.sock
CONTAINERD_ROOT=${CL}/containerd/root
CONTAINERD_STATE=${CL}/containerd/state
KUBELET_ROOT=${CL}/kubelet

# The network: a bridge that exists only on this machine. The API server, the
# kubelet and CoreDNS bind to its gateway address; everything else to loopback.
BRIDGE=cometd0
GATEWAY=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
NODE_NAME=cometd-node
ETCD_PORT=23790
ETCD_PEER_PORT=23800
APISERVER="https://${GATEWAY}:6443"

# Images the cluster runs, as the kubelet names them.
PAUSE_IMAGE=docker.io/library/cometd-pause:dev

# Host paths created by the kubelet, containerd and CNI that down.sh removes.
HOST_PATHS=(/run/containerd /run/netns /var/lib/cni /var/lib/kubelet /var/log/containers /var/log/pods /usr/libexec/kubernetes)
# Kernel settings the cluster changes (up.sh or the kubelet/kube-proxy); down.sh restores them.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max net.ipv4.conf.all.route_localnet)

export PATH=${K8S_BIN}:${PATH}
export GOTOOLCHAIN=local

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# pid_of NAME: prints the pid of a process this project started, if it still runs.
pid_of() {
  local f=${RUN}/$1.pid pid
  [[ -f ${f} ]] || return 1
  pid=$(cat "${f}")
  [[ -n ${pid} && -d /proc/${pid} ]] || return 1
  # Guard against pid reuse: the process must still be the binary we started.
  [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "$(cat "${RUN}/$1.exe" 2>/dev/null)" ]] || return 1
  echo "${pid}"
}

running() { pid_of "$1" >/dev/null; }

# start NAME BINARY ARGS...: runs BINARY in its own session, logging to logs/NAME.log.
start() {
  local name=$1 exe=$2; shift 2
  if running "${name}"; then return 0; fi
  mkdir -p "${RUN}" "${LOGS}"
  setsid "${exe}" "$@" >>"${LOGS}/${name}.log" 2>&1 < /dev/null &
  echo $! > "${RUN}/${name}.pid"
  readlink -f "${exe}" > "${RUN}/${name}.exe"
  disown || true
}

# stop NAME...: SIGTERM to every named process at once, then SIGKILL to those still
# running after STOP_TIMEOUT seconds (default 20).
stop() {
  local timeout=${STOP_TIMEOUT:-20} name pid i pids=()
  for name in "$@"; do
    if pid=$(pid_of "${name}"); then
      kill -TERM "${pid}" 2>/dev/null || true
      pids+=("${pid}")
    fi
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < timeout * 10; i++)); do
      [[ -d /proc/${pid} ]] || break
      sleep 0.1
    done
    if [[ -d /proc/${pid} ]]; then
      log "pid ${pid} did not stop in ${timeout}s; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "${RUN}/${name}.pid" "${RUN}/${name}.exe"; done
}

# wait_for WHAT TIMEOUT CMD...: polls CMD until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out after ${timeout}s waiting for ${what}; last output:"
  "$@" >&2 || true
  return 1
}

# wait_up NAME TIMEOUT CMD...: like wait_for, for the process NAME that start()
# launched; fails at once when it exits, and shows the end of its log on failure.
wait_up() {
  local name=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    running "${name}" || break
    sleep 0.2
  done
  if running "${name}"; then
    log "timed out after ${timeout}s waiting for ${name}"
  else
    log "${name} exited"
  fi
  log "last lines of ${LOGS}/${name}.log:"
  tail -n 30 "${LOGS}/${name}.log" >&2 || true
  return 1
}

kubectl_admin() { "${K8S_BIN}/kubectl" --kubeconfig "${KUBECONFIG_ADMIN}" "$@"; }
ctr_k8s() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }
