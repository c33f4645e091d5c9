#!/usr/bin/env bash
# Stops the local cluster started by hack/cluster/up.sh and undoes its host changes:
# processes (by the PIDs up.sh recorded), pod containers and their shims, mounts,
# network namespaces, the kubepods cgroups, KUBE-*/CNI-* iptables chains, the
# cometd0 bridge, kernel settings, the kernel modules up.sh loaded (br_netfilter,
# when it was not loaded before), and the host directories the kubelet,
# containerd and CNI created. Cluster state (etcd data, pods) is wiped; the
# certificates, kubeconfig and imported images under bin/cluster/ are kept for
# the next up.sh. Idempotent: when nothing runs, it only checks.
#
# Usage: hack/cluster/down.sh [--purge]   (--purge also removes bin/cluster/)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PURGE=0
[[ ${1:-} == --purge ]] && PURGE=1

# Stop the clients of the API server first, then the node, then the control plane.
stop kube-proxy kubelet kube-scheduler kube-controller-manager

# Pod containers: kill every task in containerd's k8s.io namespace and remove the
# containers, so that no shim or container outlives containerd.
if running containerd; then
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks kill -a -s SIGKILL "${id}" >/dev/null 2>&1 || true
  done
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    for _ in $(seq 50); do
      ctr_k8s tasks delete "${id}" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers delete "${id}" >/dev/null 2>&1 || true
  done
fi
# Any shim left (their pids are recorded under containerd's state dir).
for f in "${CONTAINERD_STATE}"/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [[ -f ${f} ]] || continue
  pid=$(cat "${f}")
  if [[ -n ${pid} && "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == *containerd-shim* ]]; then
    kill -KILL "${pid}" 2>/dev/null || true
  fi
done
stop containerd coredns
stop kube-apiserver
stop etcd

# Mounts under bin/cluster/ (kubelet volumes, overlay rootfs, shm) and the pod
# network namespaces; deepest first.
unmount_under() {
  local prefix=$1 m
  while read -r m; do
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true
  done < <(awk -v p="${prefix}" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r)
}
unmount_under "${CL}/"
unmount_under /run/netns/
unmount_under /run/containerd/
unmount_under /var/lib/kubelet/

# iptables: remove every KUBE-* and CNI-* chain and every rule that mentions one.
clean_iptables() {
  local save=$1 restore=$2 table
  command -v "${save}" >/dev/null || return 0
  for table in filter nat mangle raw; do
    "${save}" -t "${table}" 2>/dev/null | grep -E '(KUBE-|CNI-)' >/dev/null || continue
    "${save}" -t "${table}" | grep -vE '(KUBE-|CNI-)' | "${restore}" -T "${table}" 2>/dev/null ||
      "${save}" -t "${table}" | grep -vE '(KUBE-|CNI-)' | "${restore}"
  done
}
clean_iptables iptables-save iptables-restore
clean_iptables ip6tables-save ip6tables-restore

# The bridge (veths went with their namespaces).
ip link show "${BRIDGE}" >/dev/null 2>&1 && ip link delete "${BRIDGE}"

# kubepods cgroups, deepest first, in every hierarchy.
for top in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice; do
  [[ -d ${top} ]] || continue
  find "${top}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  [[ -d ${top} ]] && log "warning: could not remove ${top} (processes left in it?)"
done

# Kernel settings and host paths, as recorded by up.sh before its first change.
if [[ -f ${HOSTSTATE}/sysctl ]]; then
  while IFS= read -r kv; do
    sysctl -qw "${kv}" 2>/dev/null || true
  done < "${HOSTSTATE}/sysctl"
  for p in "${HOST_PATHS[@]}"; do
    grep -qxF "${p}" "${HOSTSTATE}/paths.preexisting" 2>/dev/null && continue
    [[ -e ${p} ]] && rm -rf "${p}"
  done
  rm -f "${HOSTSTATE}/sysctl" "${HOSTSTATE}/paths.preexisting"
fi

# Kernel modules up.sh loaded (it records only those that were not loaded before it
# ran). rmmod, not modprobe -r, so that no other module goes with them. One that is
# still in use stays recorded, for the next down.sh.
if [[ -f ${HOSTSTATE}/modules.loaded ]]; then
  left=()
  while IFS= read -r m; do
    [[ -n ${m} && -d /sys/module/${m} ]] || continue
    if ! rmmod "${m}" 2>/dev/null; then
      log "warning: could not unload kernel module ${m} (in use?); the next down.sh tries again"
      left+=("${m}")
    fi
  done < "${HOSTSTATE}/modules.loaded"
  if (( ${#left[@]} )); then
    printf '%s\n' "${left[@]}" > "${HOSTSTATE}/modules.loaded"
  else
    rm -f "${HOSTSTATE}/modules.loaded"
  fi
fi

# Cluster state: a fresh etcd, kubelet and container state next time; keep pki,
# kubeconfig and the image store.
rm -rf "${CL}/etcd" "${KUBELET_ROOT}" "${CONTAINERD_STATE}" "${CL}/cni/ipam" "${RUN}"
if (( PURGE )); then
  rm -rf "${CL}" "${BIN}/images"
fi
log "down"
