# Bring-up of the local cluster, one function per part. Sourced by ci/cluster.
# shellcheck shell=bash

# --- preflight ---------------------------------------------------------------------------------
preflight() {
  [ "$(id -u)" = 0 ] || die "preflight: ci/cluster up needs root (network, mounts, cgroups)"
  grep -qw overlay /proc/filesystems || die "preflight: the kernel has no overlay filesystem"
  [ -e /dev/kmsg ] || die "preflight: /dev/kmsg is missing (the kubelet needs it)"
  if [ -d /sys/fs/cgroup/memory ]; then :; elif [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then :; else
    die "preflight: no cgroup v1 memory hierarchy and no cgroup v2 mount"; fi
  [ "$(awk 'NR>1' /proc/swaps | wc -l)" = 0 ] || log "preflight: swap is on (the kubelet runs with failSwapOn: false)"
  nft list tables >/dev/null 2>&1 || die "preflight: nft does not work (nftables is needed for the guard and kube-proxy)"
  # Our ranges must not be routed anywhere already (other than the default route).
  local r
  for r in $CLUSTER_CIDR $SERVICE_CIDR $KWOK_CIDR; do
    if ip route show match "$r" 2>/dev/null | grep -v '^default' | grep -q .; then
      die "preflight: $r is already routed on this machine ($(ip route show match "$r" | grep -v '^default' | head -1)); refusing to overlap it"
    fi
  done
  local p
  for p in 2379 2380 5000 6443 9090 10248 10249 10250 10256 10257 10259; do
    if ss -Htln "sport = :$p" | grep -q .; then die "preflight: TCP port $p is already in use: $(ss -Htlnp "sport = :$p" | head -1)"; fi
  done
}

# --- network -----------------------------------------------------------------------------------
network_up() {
  # Sysctls: record, then set.
  sysctl -qw net.ipv4.ip_forward=1 fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288 >/dev/null \
    || die "network: setting sysctls failed"
  # The bridge (the CNI bridge plugin reuses it) carries the node address.
  if ! ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1; then
    ip link add "$CLUSTER_BRIDGE" type bridge || die "network: creating bridge $CLUSTER_BRIDGE failed"
  fi
  ip addr replace "$NODE_IP/24" dev "$CLUSTER_BRIDGE"
  ip link set "$CLUSTER_BRIDGE" up
  # Pod CIDRs of kwok nodes and kwok node addresses fail locally instead of following the default
  # route (the real node's /24 on the bridge is more specific and wins).
  ip route replace unreachable "$CLUSTER_CIDR"
  ip route replace unreachable "$KWOK_CIDR"
  # Host clients of ClusterIPs use the node address as source, never the uplink's; before kube-proxy
  # has a rule for an address, its packets go to the bridge, not to the default route.
  ip route replace "$SERVICE_CIDR" dev "$CLUSTER_BRIDGE" src "$NODE_IP"
  # The guard: pod traffic is never forwarded out through the uplink, and nothing on this host
  # sends cluster-range addresses (or traffic from pod addresses) out through the uplink.
  local ups up_set
  ups=$(uplinks | sort -u | tr '\n' ' ')
  [ -n "$ups" ] || ups="eth0"
  up_set=$(printf '"%s", ' $ups); up_set="{ ${up_set%, } }"
  nft -f - <<EOF || die "network: installing the nft guard table failed"
table inet payplane-guard
delete table inet payplane-guard
table inet payplane-guard {
  chain forward {
    type filter hook forward priority -10; policy accept;
    oifname $up_set counter drop comment "payplane: pod traffic never leaves through the uplink"
  }
  chain output {
    type filter hook output priority 10; policy accept;
    oifname $up_set ip daddr { $CLUSTER_CIDR, $SERVICE_CIDR, $KWOK_CIDR } counter drop comment "payplane: cluster ranges stay local"
  }
  chain postrouting {
    type filter hook postrouting priority 10; policy accept;
    oifname $up_set ip saddr { $CLUSTER_CIDR, $SERVICE_CIDR, $KWOK_CIDR } counter drop comment "payplane: pod sources stay local"
  }
}
EOF
  # Pods and CoreDNS get no upstream resolver.
  mkdir -p "$CS/cni/net.d" "$CS/cni/ipam"
  cat >"$CS/cni/net.d/10-payplane.conflist" <<EOF
{"cniVersion":"1.0.0","name":"payplane","plugins":[
 {"type":"bridge","bridge":"$CLUSTER_BRIDGE","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","dataDir":"$CS/cni/ipam",
          "ranges":[[{"subnet":"$POD_SUBNET","rangeStart":"10.244.0.10","gateway":"$NODE_IP"}]],
          "routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
EOF
  log "network: bridge $CLUSTER_BRIDGE $NODE_IP/24, unreachable $CLUSTER_CIDR $KWOK_CIDR, nft guard on uplink(s) $ups"
}

# --- etcd --------------------------------------------------------------------------------------
etcd_up() {
  mkdir -p "$CS/etcd" && chmod 700 "$CS/etcd"
  start_proc etcd "$ETCD_BINARY" --name "$NODE_NAME" --data-dir "$CS/etcd" \
    --listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --unsafe-no-fsync --log-level warn
  wait_proc etcd 30 curl -fsS "$ETCD_CLIENT_URL/health"
}

# --- apiserver ---------------------------------------------------------------------------------
# apiserver_cmd: sets APISERVER_CMD, the apiserver's command line. `up` compares it with the running
# apiserver's and restarts only the apiserver when it changed (see cluster_reconcile).
# The aggregation layer (metrics.k8s.io from metrics-server): the apiserver proxies to aggregated
# API servers with the front-proxy client certificate and user/group headers, which they trust
# through the extension-apiserver-authentication ConfigMap it publishes from the requestheader
# flags. It reaches the metrics-server Service by its ClusterIP, which kube-proxy routes on the host
# (so no --enable-aggregator-routing).
apiserver_cmd() {
  # shellcheck disable=SC2054 # commas inside flag values (Node,RBAC)
  APISERVER_CMD=("$K8S_BIN/kube-apiserver"
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT"
    --cert-dir="$CS/apiserver" --etcd-servers="$ETCD_CLIENT_URL"
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true
    --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key"
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group
    --requestheader-extra-headers-prefix=X-Remote-Extra-
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
    --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false --v=1)
}

# apiserver_current: the running apiserver was started with the flags of APISERVER_CMD. The binary
# is left out: a new Kubernetes version is a `down` and `up` of every part, not an apiserver alone.
apiserver_current() {
  local p want have
  p=$(proc_pid kube-apiserver) || return 1
  apiserver_cmd
  want=$(printf '%s\n' "${APISERVER_CMD[@]:1}")
  have=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | tail -n +2) || return 1
  [ "$want" = "$have" ]
}

apiserver_up() {
  apiserver_cmd
  start_proc kube-apiserver "${APISERVER_CMD[@]}"
  wait_proc kube-apiserver 90 curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$NODE_IP:$APISERVER_PORT/readyz"
  # The apiserver may use the kubelet API (logs, exec); Prometheus reads pods; kwok simulates nodes.
  kc apply -f - >/dev/null <<EOF || die "kube-apiserver: applying the base RBAC failed (log: $CLUSTER_LOGS/kube-apiserver.log)"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: payplane:apiserver-kubelet}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: payplane:prometheus}
rules:
- apiGroups: [""]
  resources: [pods, services, endpoints, nodes, nodes/metrics]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: payplane:prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: payplane:prometheus}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: payplane:prometheus}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: payplane:kwok}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: payplane:kwok}]
EOF
}

# --- controller-manager and scheduler ----------------------------------------------------------
# Client QPS raised from 20/50: with the defaults, 1,000 kwok pods took 52 s, paced by the
# ReplicaSet controller's 20 creates/s.
controllers_up() {
  local k="$PKI/kube-controller-manager.kubeconfig" s="$PKI/kube-scheduler.kubeconfig"
  start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
    --bind-address=127.0.0.1 --leader-elect=false --cert-dir="$CS/kcm" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 --profiling=false \
    --kube-api-qps=200 --kube-api-burst=400 --concurrent-replicaset-syncs=10 --v=1
  start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$s" --authentication-kubeconfig="$s" --authorization-kubeconfig="$s" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false --kube-api-qps=200 --kube-api-burst=400 --v=1
  wait_proc kube-controller-manager 60 curl -fsSk https://127.0.0.1:10257/healthz
  wait_proc kube-scheduler 60 curl -fsSk https://127.0.0.1:10259/healthz
}

# --- containerd --------------------------------------------------------------------------------
containerd_up() {
  mkdir -p "$CS/containerd"
  cat >"$CS/containerd/config.toml" <<EOF
version = 2
root = "$CS/containerd/root"
state = "$CS/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CS/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CS/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CS/cni/net.d"
    max_conf_num = 1
EOF
  start_proc containerd containerd --config "$CS/containerd/config.toml"
  wait_proc containerd 30 ctr --address "$CONTAINERD_SOCK" version
  local a t=$SECONDS
  for a in "$PAUSE_ARCHIVE" "$BUSYBOX_ARCHIVE" "$COREDNS_ARCHIVE" ${JAEGER_ARCHIVE:+"$JAEGER_ARCHIVE"} \
    ${METRICS_SERVER_ARCHIVE:+"$METRICS_SERVER_ARCHIVE"}; do import_archive "$a"; done
  log "containerd: images imported ($((SECONDS - t)) s)"
}

# --- kubelet -----------------------------------------------------------------------------------
kubelet_up() {
  mkdir -p "$CS/kubelet" "$CLUSTER_LOGS/pods"
  cat >"$CS/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_SVC_IP]
resolvConf: ""
podLogsDir: $CLUSTER_LOGS/pods
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
serializeImagePulls: false
maxPods: 110
EOF
  start_proc kubelet "$K8S_BIN/kubelet" --config="$CS/kubelet/config.yaml" \
    --kubeconfig="$PKI/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --root-dir="$CS/kubelet" --cert-dir="$CS/kubelet/pki" --v=1
  wait_proc kubelet 60 curl -fsS http://127.0.0.1:10248/healthz
  wait_proc kubelet 60 node_ready
}
node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# --- kube-proxy --------------------------------------------------------------------------------
kube_proxy_up() {
  mkdir -p "$CS/kube-proxy"
  cat >"$CS/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: nftables
clusterCIDR: $CLUSTER_CIDR
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start_proc kube-proxy "$K8S_BIN/kube-proxy" --config="$CS/kube-proxy/config.yaml" --v=1
  wait_proc kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
}

# --- CoreDNS (in the cluster, no upstream) -----------------------------------------------------
coredns_up() {
  kc apply -f - >/dev/null <<EOF || die "coredns: applying its manifests failed"
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # No forward plugin: names outside cluster.local are never sent to any upstream resolver.
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "9153"}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {containerPort: 53, name: dns, protocol: UDP}
        - {containerPort: 53, name: dns-tcp, protocol: TCP}
        - {containerPort: 9153, name: metrics, protocol: TCP}
        resources: {requests: {cpu: 50m, memory: 50Mi}, limits: {memory: 170Mi}}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        livenessProbe: {httpGet: {path: /health, port: 8080}, initialDelaySeconds: 30, periodSeconds: 10}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_SVC_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
EOF
}

# --- Jaeger (in the cluster, all-in-one with memory storage) -----------------------------------
jaeger_up() {
  kc apply -f - >/dev/null <<EOF || die "jaeger: applying its manifests failed"
apiVersion: v1
kind: Namespace
metadata: {name: observability}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: jaeger, namespace: observability}
data:
  # Jaeger v2 all-in-one (memory storage), listening on the pod's own address.
  config.yaml: |
    service:
      extensions: [jaeger_storage, jaeger_query, healthcheckv2]
      pipelines:
        traces:
          receivers: [otlp]
          processors: [batch]
          exporters: [jaeger_storage_exporter]
      telemetry:
        resource: {service.name: jaeger}
        metrics:
          level: detailed
          readers:
          - pull: {exporter: {prometheus: {host: 0.0.0.0, port: 8888}}}
    extensions:
      jaeger_query:
        storage: {traces: memstore}
        http: {endpoint: "0.0.0.0:16686"}
        grpc: {endpoint: "0.0.0.0:16685"}
      jaeger_storage:
        backends:
          memstore: {memory: {max_traces: 100000}}
      healthcheckv2:
        use_v2: true
        http: {endpoint: "0.0.0.0:13133"}
    receivers:
      otlp:
        protocols:
          grpc: {endpoint: "0.0.0.0:4317"}
          http: {endpoint: "0.0.0.0:4318"}
    processors:
      batch: {}
    exporters:
      jaeger_storage_exporter: {trace_storage: memstore}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: jaeger, namespace: observability, labels: {app: jaeger}}
spec:
  replicas: 1
  selector: {matchLabels: {app: jaeger}}
  template:
    metadata:
      labels: {app: jaeger}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8888"}
    spec:
      containers:
      - name: jaeger
        image: $JAEGER_IMAGE
        imagePullPolicy: Never
        args: [--config, /etc/jaeger/config.yaml]
        volumeMounts: [{name: config, mountPath: /etc/jaeger, readOnly: true}]
        ports:
        - {containerPort: 4317, name: otlp-grpc}
        - {containerPort: 4318, name: otlp-http}
        - {containerPort: 16686, name: query}
        - {containerPort: 13133, name: health}
        - {containerPort: 8888, name: metrics}
        readinessProbe: {httpGet: {path: /status, port: 13133}, periodSeconds: 2}
        resources: {requests: {cpu: 50m, memory: 128Mi}, limits: {memory: 1Gi}}
      volumes: [{name: config, configMap: {name: jaeger}}]
---
apiVersion: v1
kind: Service
metadata: {name: jaeger, namespace: observability}
spec:
  clusterIP: $JAEGER_SVC_IP
  selector: {app: jaeger}
  ports:
  - {name: otlp-grpc, port: 4317}
  - {name: otlp-http, port: 4318}
  - {name: query, port: 16686}
  - {name: query-grpc, port: 16685}
EOF
}

# --- registry (Debian's docker-registry on loopback) -------------------------------------------
registry_up() {
  mkdir -p "$CS/registry/data"
  cat >"$CS/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CS/registry/data}
  delete: {enabled: true}
http:
  addr: $REGISTRY_ADDR
  debug: {addr: ""}
EOF
  start_proc registry docker-registry serve "$CS/registry/config.yml"
  wait_proc registry 20 curl -fsS "http://$REGISTRY_ADDR/v2/"
}

# --- Prometheus (on the host, bound to the node address) ---------------------------------------
prometheus_up() {
  mkdir -p "$CS/prometheus/data"
  cat >"$CS/prometheus/prometheus.yml" <<EOF
global: {scrape_interval: 5s, evaluation_interval: 15s}
scrape_configs:
- job_name: prometheus
  static_configs: [{targets: ["$PROMETHEUS_ADDR"]}]
# Pods opt in with annotations prometheus.io/scrape: "true", prometheus.io/port, prometheus.io/path.
- job_name: kubernetes-pods
  fallback_scrape_protocol: PrometheusText0.0.4
  kubernetes_sd_configs:
  - role: pod
    kubeconfig_file: $PKI/prometheus.kubeconfig
  relabel_configs:
  - {source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape], action: keep, regex: "true"}
  - {source_labels: [__meta_kubernetes_pod_phase], action: drop, regex: Pending|Succeeded|Failed}
  - {source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path], action: replace, target_label: __metrics_path__, regex: (.+)}
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    action: replace
    regex: '([^:]+)(?::\d+)?;(\d+)'
    replacement: '\$1:\$2'
    target_label: __address__
  - {action: labelmap, regex: __meta_kubernetes_pod_label_(.+)}
  - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
  - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
  - {source_labels: [__meta_kubernetes_pod_node_name], target_label: node}
EOF
  start_proc prometheus "$PROMETHEUS_BIN/prometheus" --config.file="$CS/prometheus/prometheus.yml" \
    --storage.tsdb.path="$CS/prometheus/data" --storage.tsdb.retention.time=2d \
    --web.listen-address="$PROMETHEUS_ADDR" --web.enable-lifecycle
  wait_proc prometheus 60 curl -fsS "http://$PROMETHEUS_ADDR/-/ready"
  # In-cluster name for it: monitoring/prometheus:9090 (a Service without selector).
  kc apply -f - >/dev/null <<EOF || die "prometheus: applying its Service failed"
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: Service
metadata: {name: prometheus, namespace: monitoring}
spec:
  ports: [{name: http, port: 9090, targetPort: 9090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: prometheus-host
  namespace: monitoring
  labels: {kubernetes.io/service-name: prometheus, endpointslice.kubernetes.io/managed-by: payplane}
addressType: IPv4
ports: [{name: http, port: 9090, protocol: TCP}]
endpoints: [{addresses: ["${PROMETHEUS_ADDR%:*}"]}]
EOF
}

# wait_deployment NS NAME TIMEOUT PART
wait_deployment() {
  local ns=$1 name=$2 timeout=$3 part=$4
  if ! kc -n "$ns" rollout status "deployment/$name" --timeout="${timeout}s" >/dev/null 2>&1; then
    kc -n "$ns" get pods -o wide >&2 || true
    kc -n "$ns" describe pods >"$CLUSTER_LOGS/$part-pods.txt" 2>&1 || true
    tail -n 15 "$CLUSTER_LOGS/$part-pods.txt" >&2
    die "$part: deployment $ns/$name not ready within ${timeout}s (pods: $CLUSTER_LOGS/$part-pods.txt, kubelet log: $CLUSTER_LOGS/kubelet.log)"
  fi
}

# --- metrics-server (in the cluster; the resource metrics API for HPAs and `kubectl top`) --------
# Scrapes every kubelet's /metrics/resource every 15 s and serves metrics.k8s.io/v1beta1 through the
# apiserver's aggregation layer. TLS is verified both ways: the kubelet's serving certificate is
# signed by the cluster CA (--kubelet-certificate-authority), and the APIService's caBundle is the
# cluster CA that signed metrics-server's own serving certificate (no insecureSkipTLSVerify).
metrics_server_up() {
  kc -n kube-system create secret generic metrics-server-tls --dry-run=client -o yaml \
    --from-file=tls.crt="$PKI/metrics-server.crt" --from-file=tls.key="$PKI/metrics-server.key" \
    --from-file=kubelet-ca.crt="$PKI/ca.crt" | kc apply -f - >/dev/null \
    || die "metrics-server: applying its TLS Secret failed"
  kc apply -f - >/dev/null <<EOF || die "metrics-server: applying its manifests failed"
apiVersion: v1
kind: ServiceAccount
metadata: {name: metrics-server, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregated-metrics-reader
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:metrics-server}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:metrics-server}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:metrics-server}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: metrics-server:system:auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: metrics-server}}
  strategy: {rollingUpdate: {maxUnavailable: 0}}
  template:
    metadata:
      labels: {k8s-app: metrics-server}
    spec:
      serviceAccountName: metrics-server
      priorityClassName: system-cluster-critical
      containers:
      - name: metrics-server
        image: $METRICS_SERVER_IMAGE
        imagePullPolicy: Never
        args:
        - --secure-port=4443
        - --cert-dir=/tmp
        - --tls-cert-file=/etc/metrics-server/tls.crt
        - --tls-private-key-file=/etc/metrics-server/tls.key
        - --kubelet-certificate-authority=/etc/metrics-server/kubelet-ca.crt
        - --kubelet-preferred-address-types=InternalIP
        - --kubelet-use-node-status-port
        - --metric-resolution=15s
        ports: [{name: https, containerPort: 4443, protocol: TCP}]
        readinessProbe: {httpGet: {path: /readyz, port: https, scheme: HTTPS}, periodSeconds: 2, failureThreshold: 3}
        livenessProbe: {httpGet: {path: /livez, port: https, scheme: HTTPS}, periodSeconds: 10, failureThreshold: 3}
        resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
        securityContext:
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65534
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: tmp, mountPath: /tmp}
        - {name: tls, mountPath: /etc/metrics-server, readOnly: true}
      volumes:
      - {name: tmp, emptyDir: {}}
      - {name: tls, secret: {secretName: metrics-server-tls}}
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  selector: {k8s-app: metrics-server}
  ports: [{name: https, port: 443, protocol: TCP, targetPort: https, appProtocol: https}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 "$PKI/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
}

# metrics_api_available: the APIService is Available and the API answers with node and pod metrics
# (what `kubectl top nodes` and the HPA controller read).
metrics_api_available() {
  [ "$(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = True ] || return 1
  kc get --raw /apis/metrics.k8s.io/v1beta1/nodes 2>/dev/null | grep -q '"usage"' || return 1
  kc get --raw /apis/metrics.k8s.io/v1beta1/pods 2>/dev/null | grep -q '"containers"'
}

# wait_metrics TIMEOUT: waits until metrics_api_available, or fails with what to look at.
wait_metrics() {
  local deadline=$((SECONDS + $1))
  until metrics_api_available; do
    if [ $SECONDS -ge $deadline ]; then
      kc get apiservice v1beta1.metrics.k8s.io -o wide >&2 || true
      kc -n kube-system logs deploy/metrics-server --tail=20 >"$CLUSTER_LOGS/metrics-server-pod.txt" 2>&1 || true
      tail -n 10 "$CLUSTER_LOGS/metrics-server-pod.txt" >&2
      die "metrics-server: the metrics API did not answer with node and pod metrics within $1 s (pod log: $CLUSTER_LOGS/metrics-server-pod.txt)"
    fi
    sleep 1
  done
}
