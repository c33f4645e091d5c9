#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster on this machine with no Docker and no
# downloads beyond Debian packages and the Go module proxy:
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built from source
#   by build-binaries.sh), containerd + runc + CNI bridge (Debian packages), kubelet,
#   kube-proxy (iptables mode) and CoreDNS on the host.
#
# Network: only loopback and the pod bridge (cometd0, 10.244.0.1/24), which exists
# only inside this machine. Admin kubeconfig: bin/cluster/kubeconfig.
# Idempotent: when the cluster is already up, it checks and returns.
# Undo with hack/cluster/down.sh. Logs: bin/cluster/logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root: the kubelet and containerd need it"

# --- packages -----------------------------------------------------------------
ensure_packages() {
  local pkgs=(containerd runc containernetworking-plugins iptables openssl) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("${p}")
  done
  (( ${#missing[@]} )) || return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# --- certificates ---------------------------------------------------------------
ensure_pki() {
  [[ -f ${PKI}/.done ]] && return 0
  log "generating certificates in ${PKI}"
  rm -rf "${PKI}"; mkdir -p "${PKI}"; chmod 700 "${PKI}"
  (
    cd "${PKI}"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=cometd-local-ca" 2>/dev/null
    # sign NAME SUBJECT [SANS]: a key and a CA-signed certificate.
    sign() {
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
      [[ -n ${3:-} ]] && ext+=$'\n'"subjectAltName=$3"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
        -days 3650 -extfile <(echo "${ext}") 2>/dev/null
      rm -f "$1.csr"
    }
    sign apiserver "/CN=kube-apiserver" \
      "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:${GATEWAY},IP:${KUBERNETES_SVC_IP}"
    sign admin "/O=system:masters/CN=cometd-admin"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  touch "${PKI}/.done"
}

write_kubeconfig() {
  [[ -f ${KUBECONFIG_ADMIN} ]] && return 0
  cat > "${KUBECONFIG_ADMIN}" <<KC
apiVersion: v1
kind: Config
clusters:
- name: cometd-local
  cluster:
    server: ${APISERVER}
    certificate-authority-data: $(base64 -w0 < "${PKI}/ca.crt")
users:
- name: cometd-admin
  user:
    client-certificate-data: $(base64 -w0 < "${PKI}/admin.crt")
    client-key-data: $(base64 -w0 < "${PKI}/admin.key")
contexts:
- name: cometd-local
  context: {cluster: cometd-local, user: cometd-admin}
current-context: cometd-local
KC
  chmod 600 "${KUBECONFIG_ADMIN}"
}

# --- host changes (recorded for down.sh) -----------------------------------------
snapshot_host() {
  [[ -f ${HOSTSTATE}/sysctl ]] && return 0
  mkdir -p "${HOSTSTATE}"
  local s p
  : > "${HOSTSTATE}/paths.preexisting"
  for p in "${HOST_PATHS[@]}"; do [[ -e ${p} ]] && echo "${p}" >> "${HOSTSTATE}/paths.preexisting"; done
  : > "${HOSTSTATE}/sysctl.tmp"
  for s in "${SYSCTLS[@]}"; do
    if v=$(sysctl -n "${s}" 2>/dev/null); then echo "${s}=${v}" >> "${HOSTSTATE}/sysctl.tmp"; fi
  done
  mv "${HOSTSTATE}/sysctl.tmp" "${HOSTSTATE}/sysctl"
}

# load_module NAME: loads a kernel module, and records it in ${HOSTSTATE}/modules.loaded
# when this call loaded it, so that down.sh unloads only what up.sh added. A module
# already present (loaded earlier by someone else, or built into the kernel) is not
# recorded. A failed load is not fatal: the cluster still runs, only without what the
# module gives.
load_module() {
  local m=$1
  [[ -d /sys/module/${m} ]] && return 0
  modprobe "${m}" 2>/dev/null || { log "warning: could not load kernel module ${m}"; return 0; }
  [[ -e /sys/module/${m}/initstate ]] || return 0 # built in after all: nothing to unload
  mkdir -p "${HOSTSTATE}"
  grep -qxF "${m}" "${HOSTSTATE}/modules.loaded" 2>/dev/null || echo "${m}" >> "${HOSTSTATE}/modules.loaded"
}

ensure_network() {
  if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
    ip link add "${BRIDGE}" type bridge
  fi
  local addrs
  addrs=$(ip -4 -o addr show dev "${BRIDGE}")
  [[ ${addrs} == *"inet ${GATEWAY}/"* ]] || ip addr add "${GATEWAY}/24" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  sysctl -qw net.ipv4.ip_forward=1
  # Pod -> Service -> pod on the same bridge needs the bridge to pass through iptables.
  load_module br_netfilter
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  return 0
}

# --- control plane -----------------------------------------------------------------
start_etcd() {
  start etcd "${K8S_BIN}/etcd" --name cometd-local --data-dir "${CL}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "cometd-local=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --listen-metrics-urls "" --unsafe-no-fsync --quota-backend-bytes 2147483648
  wait_up etcd 30 curl -fsS "http://127.0.0.1:${ETCD_PORT}/health"
}

start_apiserver() {
  start kube-apiserver "${K8S_BIN}/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --bind-address "${GATEWAY}" --advertise-address "${GATEWAY}" --secure-port 6443 \
    --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
    --client-ca-file "${PKI}/ca.crt" \
    --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "${SERVICE_CIDR}" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,ServiceAccount \
    --kubelet-client-certificate "${PKI}/admin.crt" --kubelet-client-key "${PKI}/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false --v=1
  wait_up kube-apiserver 90 kubectl_admin get --raw /readyz
}

start_controllers() {
  start kube-controller-manager "${K8S_BIN}/kube-controller-manager" \
    --kubeconfig "${KUBECONFIG_ADMIN}" --authentication-kubeconfig "${KUBECONFIG_ADMIN}" \
    --authorization-kubeconfig "${KUBECONFIG_ADMIN}" \
    --bind-address 127.0.0.1 --leader-elect=false --cluster-name cometd-local \
    --service-account-private-key-file "${PKI}/sa.key" --root-ca-file "${PKI}/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "${PKI}/ca.crt" --cluster-signing-key-file "${PKI}/ca.key" \
    --service-cluster-ip-range "${SERVICE_CIDR}" --profiling=false --v=1
  start kube-scheduler "${K8S_BIN}/kube-scheduler" \
    --kubeconfig "${KUBECONFIG_ADMIN}" --authentication-kubeconfig "${KUBECONFIG_ADMIN}" \
    --authorization-kubeconfig "${KUBECONFIG_ADMIN}" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

start_coredns() {
  mkdir -p "${CL}/coredns"
  # No forward plugin: the cluster resolves its own names and nothing else.
  cat > "${CL}/coredns/Corefile" <<CF
.:53 {
    bind ${GATEWAY}
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${KUBECONFIG_ADMIN} cometd-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
}
CF
  start coredns "${BIN}/coredns" -conf "${CL}/coredns/Corefile"
  wait_up coredns 60 curl -fsS http://127.0.0.1:18181/ready
}

# --- node ----------------------------------------------------------------------------
start_containerd() {
  mkdir -p "${CL}/containerd" "${CL}/cni/net.d" "${CL}/cni/ipam" "${CONTAINERD_ROOT}" "${CONTAINERD_STATE}"
  cat > "${CL}/cni/net.d/10-cometd.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "cometd-local",
  "plugins": [
    {
      "type": "bridge", "bridge": "${BRIDGE}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "${CL}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${GATEWAY}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  cat > "${CL}/containerd/config.toml" <<TOML
version = 2
root = "${CONTAINERD_ROOT}"
state = "${CONTAINERD_STATE}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${CONTAINERD_SOCK}"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${CL}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${CL}/cni/net.d"
TOML
  start containerd /usr/bin/containerd --config "${CL}/containerd/config.toml"
  wait_up containerd 30 ctr --address "${CONTAINERD_SOCK}" version
}

start_kubelet() {
  mkdir -p "${KUBELET_ROOT}" "${CL}/kubelet-plugins"
  # Pods get the cluster DNS and search domains only, not the host's resolvers.
  : > "${CL}/resolv.conf"
  cat > "${CL}/kubelet.yaml" <<KY
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${GATEWAY}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
clusterDNS: [${GATEWAY}]
clusterDomain: cluster.local
resolvConf: ${CL}/resolv.conf
volumePluginDir: ${CL}/kubelet-plugins
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
rotateCertificates: false
serverTLSBootstrap: false
KY
  start kubelet "${K8S_BIN}/kubelet" --config "${CL}/kubelet.yaml" --kubeconfig "${KUBECONFIG_ADMIN}" \
    --root-dir "${KUBELET_ROOT}" --hostname-override "${NODE_NAME}" --node-ip "${GATEWAY}" --v=1
  wait_up kubelet 120 \
    kubectl_admin wait --for=condition=Ready "node/${NODE_NAME}" --timeout=2s
}

start_kube_proxy() {
  cat > "${CL}/kube-proxy.yaml" <<KP
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${KUBECONFIG_ADMIN}}
mode: iptables
clusterCIDR: ${POD_CIDR}
hostnameOverride: ${NODE_NAME}
bindAddress: ${GATEWAY}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["${GATEWAY}/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
KP
  start kube-proxy "${K8S_BIN}/kube-proxy" --config "${CL}/kube-proxy.yaml" --v=1
  wait_up kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
}

main() {
  local t0=${SECONDS}
  ensure_packages
  "${ROOT}/hack/cluster/build-binaries.sh"
  ensure_pki
  mkdir -p "${CL}" "${RUN}" "${LOGS}"
  write_kubeconfig
  snapshot_host
  ensure_network
  start_etcd
  start_apiserver
  start_controllers
  start_coredns
  start_containerd
  "${ROOT}/hack/cluster/images.sh" pause
  start_kubelet
  start_kube_proxy
  # The default ServiceAccount appears once the controller-manager runs; pods need it.
  wait_for "default ServiceAccount" 60 kubectl_admin get serviceaccount default -n default
  log "up in $((SECONDS - t0))s: export KUBECONFIG=${KUBECONFIG_ADMIN}"
}

main "$@"
