# Addresses, paths and process helpers of the local cluster. Sourced by ci/cluster.
# shellcheck shell=bash

# --- addresses: every one of them is created by these scripts -----------------------------------
# The node's address is the gateway address of the cluster's own bridge. Every host-side listener
# binds either to 127.0.0.1 or to this address; nothing binds to the uplink (eth0).
CLUSTER_BRIDGE="${CLUSTER_BRIDGE:-ppbr0}"
NODE_IP="${NODE_IP:-10.244.0.1}"
POD_SUBNET="10.244.0.0/24"          # the real node's pods (host-local IPAM on the bridge)
CLUSTER_CIDR="10.244.0.0/16"        # all pod CIDRs (kwok nodes get /24s from it): unreachable route
SERVICE_CIDR="10.96.0.0/12"
KUBERNETES_SVC_IP="10.96.0.1"
DNS_SVC_IP="10.96.0.10"
JAEGER_SVC_IP="10.96.0.20"
KWOK_CIDR="10.250.0.0/16"           # kwok fake node addresses: unreachable route
KWOK_NODE_IP="10.250.0.1"
APISERVER_PORT=6443
REGISTRY_ADDR="127.0.0.1:5000"
PROMETHEUS_ADDR="$NODE_IP:9090"     # reachable from the host and from pods (Service monitoring/prometheus)
ETCD_CLIENT_URL="http://127.0.0.1:2379"

CLUSTER_STATE="$PAYPLANE_STATE/cluster"
CS="$CLUSTER_STATE"
CLUSTER_LOGS="$CS/logs"
CLUSTER_PIDS="$CS/pids"
PKI="$CS/pki"
ADMIN_KUBECONFIG="$CS/admin.kubeconfig"
CONTAINERD_SOCK="$CS/containerd/containerd.sock"
NODE_NAME="$(hostname | tr '[:upper:]' '[:lower:]')"

# Order of start; `down` stops in reverse.
CLUSTER_PROCS="registry etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy prometheus kwok"

# --- processes ---------------------------------------------------------------------------------

# start_proc NAME CMD...: starts a daemon in its own session, output to $CLUSTER_LOGS/NAME.log,
# pid in $CLUSTER_PIDS/NAME.pid.
start_proc() {
  local name=$1; shift
  mkdir -p "$CLUSTER_LOGS" "$CLUSTER_PIDS"
  printf '\n=== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$CLUSTER_LOGS/$name.log"
  setsid "$@" >>"$CLUSTER_LOGS/$name.log" 2>&1 </dev/null &
  echo "$! $(_starttime $!)" >"$CLUSTER_PIDS/$name.pid"
}

# The start time (clock ticks since boot) of a pid: with the pid it identifies a process even
# after a reboot or pid reuse, so `down` never signals a stranger.
_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# proc_pid NAME: the pid of our process NAME, only if it is still the process we started.
proc_pid() {
  local p st
  { read -r p st <"$CLUSTER_PIDS/$1.pid"; } 2>/dev/null || return 1
  [ -n "$p" ] && [ -n "$st" ] && [ "$(_starttime "$p")" = "$st" ] && echo "$p"
}
# pid_running PID: alive and not a zombie (daemons of an earlier ci/cluster run are reparented to
# PID 1, which may reap them late; kill -0 succeeds on a zombie).
pid_running() {
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
proc_alive() { local p; p=$(proc_pid "$1") && [ -n "$p" ] && pid_running "$p"; }

# stop_proc NAME [TIMEOUT]: SIGTERM by pid, then SIGKILL after TIMEOUT seconds.
stop_proc() {
  local name=$1 timeout=${2:-15} p i t=$SECONDS
  p=$(proc_pid "$name") || return 0
  if [ -n "$p" ] && pid_running "$p"; then
    kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < timeout * 10; i++)); do pid_running "$p" || break; sleep 0.1; done
    if pid_running "$p"; then
      log "  $name (pid $p) did not stop on SIGTERM; sending SIGKILL"
      kill -KILL "$p" 2>/dev/null
      for ((i = 0; i < 50; i++)); do pid_running "$p" || break; sleep 0.1; done
    fi
    [ $((SECONDS - t)) -ge 2 ] && log "  $name stopped in $((SECONDS - t)) s"
  fi
  rm -f "$CLUSTER_PIDS/$name.pid"
}

# wait_proc NAME TIMEOUT CMD...: like wait_for, but also fails at once (with the log) if the
# process died, naming the part and its log file.
wait_proc() {
  local name=$1 timeout=$2; shift 2
  local logf="$CLUSTER_LOGS/$name.log" deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! proc_alive "$name"; then
      tail -n 25 "$logf" >&2
      die "$name exited during start-up (log: $logf)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 25 "$logf" >&2
      die "$name did not become ready within ${timeout}s (log: $logf)"
    fi
    sleep 0.3
  done
}

kc() { "$K8S_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# Sysctls that up, the kubelet or kube-proxy may change: saved before up, restored by down.
CLUSTER_SYSCTLS="net.ipv4.ip_forward net.ipv6.conf.all.forwarding fs.inotify.max_user_instances
fs.inotify.max_user_watches vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
net.netfilter.nf_conntrack_max net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables"

# Host paths outside $CLUSTER_STATE that the runtime creates. down removes each one that did not
# exist before up (recorded in the baseline).
CLUSTER_HOST_PATHS="/run/containerd /var/lib/cni /opt/containerd /var/log/pods /var/log/containers
/var/lib/kubelet /run/kubernetes /etc/cni /var/lib/containerd /run/netns"

# The uplink interfaces: those carrying a default route.
uplinks() { ip -o route show default 2>/dev/null | sed -nE 's/.* dev ([^ ]+).*/\1/p' | sort -u; ip -o -6 route show default 2>/dev/null | sed -nE 's/.* dev ([^ ]+).*/\1/p' | sort -u; }

# machine_snapshot DIR: what down must give back, in comparable files.
machine_snapshot() {
  local d=$1 s; mkdir -p "$d"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$d/links"
  ip -o addr show | awk '{print $2, $3, $4}' | sort >"$d/addrs"
  { ip route show table all; ip -6 route show table all; } 2>/dev/null | grep -v -E '^(local|broadcast|multicast|anycast) |proto kernel' | sort >"$d/routes"
  nft list tables 2>/dev/null | sort >"$d/nft-tables"
  awk '{print $5}' /proc/self/mountinfo | sort >"$d/mounts"
  ls /var/run/netns 2>/dev/null | sort >"$d/netns"
  for s in $CLUSTER_SYSCTLS; do printf '%s=%s\n' "$s" "$(sysctl -n "$s" 2>/dev/null || echo '<absent>')"; done >"$d/sysctls"
  for s in $CLUSTER_HOST_PATHS; do [ -e "$s" ] && echo "$s"; done >"$d/paths"
  find /sys/fs/cgroup -maxdepth 2 -name 'kubepods*' 2>/dev/null | sort >"$d/cgroups"
  true
}
