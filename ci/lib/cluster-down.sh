# Teardown of the local cluster: removes everything `up` created and restores the sysctls.
# Sourced by ci/cluster. Every step tolerates a half-started cluster.
# shellcheck shell=bash

_containerd_running() { [ -S "$CONTAINERD_SOCK" ] && proc_alive containerd; }

# Kills every container and sandbox task of our containerd, then removes them.
_kill_containers() {
  _containerd_running || return 0
  local ctr_=(ctr --address "$CONTAINERD_SOCK" -n k8s.io) ids id
  ids=$("${ctr_[@]}" tasks ls -q 2>/dev/null)
  for id in $ids; do "${ctr_[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1; done
  sleep 0.5
  for id in $ids; do "${ctr_[@]}" tasks delete -f "$id" >/dev/null 2>&1; done
  for id in $("${ctr_[@]}" containers ls -q 2>/dev/null); do "${ctr_[@]}" containers delete "$id" >/dev/null 2>&1; done
}

# Kills shims (and their children) that belong to our containerd (their -address is our socket).
_kill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do
    pkill -KILL -P "$p" 2>/dev/null
    kill -KILL "$p" 2>/dev/null
  done
}

# Unmounts every mount point below a path, deepest first.
_umount_below() {
  local base=$1 m
  awk '{print $5}' /proc/self/mountinfo | grep -E "^${base//./\\.}(/|$)" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "  could not unmount $m"; done
}

cluster_down() {
  local base="$CS/baseline" t=$SECONDS name
  [ -d "$CS" ] || { log "down: nothing to do ($CS does not exist)"; return 0; }
  log "down: stopping the cluster"
  stop_proc kwok 10
  stop_proc prometheus 15
  stop_proc kube-proxy 10
  stop_proc kubelet 15
  _kill_containers
  stop_proc containerd 15
  _kill_shims
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd registry; do stop_proc "$name" 15; done
  # Any process still holding a pid file of ours (e.g. from a crashed up).
  for name in $CLUSTER_PROCS; do stop_proc "$name" 5; done

  # Mounts: container rootfs, kubelet volumes, network namespaces.
  _umount_below "$CS"
  _umount_below /run/containerd
  local ns
  for ns in /var/run/netns/cni-*; do
    [ -e "$ns" ] || continue
    ns=${ns##*/}
    if ! grep -qx "$ns" "$base/netns" 2>/dev/null; then
      ip netns delete "$ns" 2>/dev/null || { umount "/var/run/netns/$ns" 2>/dev/null; rm -f "/var/run/netns/$ns"; }
    fi
  done

  # Network: veths go with their namespaces; then the bridge, routes, nft tables.
  local l
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    if [ -f "$base/links" ] && ! grep -qx "$l" "$base/links" && [[ $l == veth* ]]; then ip link delete "$l" 2>/dev/null; fi
  done
  ip link delete "$CLUSTER_BRIDGE" 2>/dev/null
  ip route del unreachable "$CLUSTER_CIDR" 2>/dev/null
  ip route del unreachable "$KWOK_CIDR" 2>/dev/null
  ip route del "$SERVICE_CIDR" 2>/dev/null
  local tbl
  nft list tables 2>/dev/null | while read -r _ fam tname; do
    tbl="table $fam $tname"
    # Only tables the cluster creates (our guard, kube-proxy's, and the iptables-nft tables that
    # portmap and the kubelet create), and only if they were not there before up.
    case $tname in payplane-guard | kube-proxy | nat | filter | mangle | raw) ;; *) continue ;; esac
    if [ "$tname" = payplane-guard ] || { [ -f "$base/nft-tables" ] && ! grep -qxF "$tbl" "$base/nft-tables"; }; then
      nft delete table "$fam" "$tname" 2>/dev/null || log "  could not delete nft $tbl"
    fi
  done

  # cgroups created by the kubelet (kubepods*), deepest first, in every hierarchy.
  local d
  for d in /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/kubepods*; do
    [ -d "$d" ] || continue
    grep -qx "$d" "$base/cgroups" 2>/dev/null && continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$d" ] && log "  could not remove cgroup $d (processes still in it?)"
  done

  # Sysctls back to what they were before up.
  if [ -f "$base/sysctls" ]; then
    local kv k v
    while IFS= read -r kv; do
      k=${kv%%=*}; v=${kv#*=}
      [ "$v" = '<absent>' ] && continue
      [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" >/dev/null 2>&1 || log "  could not restore $k=$v"
    done <"$base/sysctls"
  fi

  # Host paths the runtime created.
  local p
  for p in $CLUSTER_HOST_PATHS; do
    [ -e "$p" ] || continue
    if [ -f "$base/paths" ] && ! grep -qx "$p" "$base/paths"; then
      _umount_below "$p"; rm -rf "$p"
    fi
  done
  rm -rf "$CS"
  log "down: done in $((SECONDS - t)) s"
}
