# Smoke test of a running local cluster. Sourced by ci/cluster (`ci/cluster smoke`).
# shellcheck shell=bash

SMOKE_PASSED=0
SMOKE_FAILED=0
_check() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then
    SMOKE_PASSED=$((SMOKE_PASSED + 1)); printf '  ok    %s\n' "$what"
  else
    SMOKE_FAILED=$((SMOKE_FAILED + 1)); printf '  FAIL  %s\n' "$what"; printf '%s\n' "$out" | tail -n 8 | sed 's/^/        /'
  fi
}
# _retry SECONDS CMD...: retries CMD every second until it succeeds or SECONDS pass.
_retry() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $deadline ] && return 1; sleep 1; done
}

_smoke_files() {
  local c=$1 r="$CS/buildah/smoke-root"
  rm -rf "$r"; mkdir -p "$r/www"
  echo "payplane smoke OK" >"$r/www/index.html"
  printf '# HELP payplane_smoke_up The smoke server is up.\n# TYPE payplane_smoke_up gauge\npayplane_smoke_up 1\n' >"$r/www/metrics"
  bah copy "$c" "$r/www" /www >/dev/null
  bah config --cmd '["/bin/sh","-c","echo smoke-server starting on :8080; exec httpd -f -v -p 8080 -h /www"]' "$c"
}

# busybox 1.35 (Debian) wget segfaults with -T; the smoke test uses `timeout 5 wget` instead.
_smoke_image() {
  # busybox-static plus the page, from scratch, pushed to the local registry; the kubelet pulls it.
  local c tag
  tag="$REGISTRY_ADDR/payplane/smoke:$(date +%s)"
  c=$(bah from scratch) || return 1
  _busybox_files "$c" || return 1
  _smoke_files "$c" || return 1
  bah commit -q "$c" "$tag" >/dev/null || return 1
  bah rm "$c" >/dev/null
  bah push -q --tls-verify=false "$tag" "docker://$tag" >/dev/null || return 1
  echo "$tag"
}

_has() { grep -q -- "$1"; }

# Every TCP/UDP listener owned by a process we started (or its children) is on 127.0.0.1 or the
# node address.
_listeners_local() {
  local name p bad=0 addr
  for name in $CLUSTER_PROCS; do
    p=$(proc_pid "$name") || continue
    for addr in $(ss -Htlnup 2>/dev/null | grep "pid=$p," | awk '{print $5}'); do
      case $addr in
        127.0.0.1:* | "$NODE_IP":*) ;;
        *) echo "$name (pid $p) listens on $addr"; bad=1 ;;
      esac
    done
  done
  return $bad
}
_eq() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }

cluster_smoke() {
  local t=$SECONDS tag ip pod
  BUSYBOX_ARCHIVE=$(busybox_archive) || die "smoke: building the busybox image failed"
  log "smoke: building the smoke image (buildah from the local busybox-static image) and pushing it to $REGISTRY_ADDR"
  tag=$(_smoke_image) || die "smoke: building or pushing the image failed"
  kc delete namespace smoke --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1
  kc apply -f - >/dev/null <<EOF || die "smoke: applying manifests failed"
apiVersion: v1
kind: Namespace
metadata: {name: smoke}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke-server, namespace: smoke}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke-server}}
  template:
    metadata:
      labels: {app: smoke-server}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8080", prometheus.io/path: /metrics}
    spec:
      containers:
      - name: server
        image: $tag
        imagePullPolicy: Always
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: smoke-server, namespace: smoke}
spec:
  selector: {app: smoke-server}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: smoke}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: [sleep, "3600"]
EOF
  echo "smoke test ($tag):"
  _check "Deployment smoke-server rolled out (image pulled from the local registry)" \
    kc -n smoke rollout status deploy/smoke-server --timeout=90s
  _check "client pod Ready" kc -n smoke wait --for=condition=Ready pod/client --timeout=60s
  ip=$(kc -n smoke get svc smoke-server -o jsonpath='{.spec.clusterIP}')
  pod=$(kc -n smoke get pods -l app=smoke-server -o jsonpath='{.items[0].metadata.name}')
  _check "host reaches the Service by ClusterIP ($ip:80)" \
    _retry 20 sh -c "curl -fsS -m 3 http://$ip/ | grep -q 'payplane smoke OK'"
  _check "client pod reaches the Service by ClusterIP" \
    _retry 20 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- timeout 5 wget -qO- http://$ip/ | grep -q 'payplane smoke OK'"
  _check "client pod resolves smoke-server.smoke.svc.cluster.local to $ip (CoreDNS)" \
    _retry 20 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- nslookup smoke-server.smoke.svc.cluster.local | grep -q 'Address: $ip'"
  _check "client pod reaches the Service by DNS name" \
    _retry 20 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- timeout 5 wget -qO- http://smoke-server/ | grep -q 'payplane smoke OK'"
  _check "names outside the cluster do not resolve (CoreDNS has no upstream)" \
    sh -c "! '$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- nslookup example.com"
  _check "kubectl logs shows the server's output and requests" \
    sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke logs $pod | grep -q 'smoke-server starting'"
  _check "kubectl exec runs a command in the server pod" \
    sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec $pod -- cat /www/index.html | grep -q 'payplane smoke OK'"
  _check "kubectl top nodes (metrics-server through the aggregation layer)" \
    sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' top nodes --no-headers | grep -q '^$NODE_NAME '"
  _check "kubectl top pod shows the smoke pod's CPU and memory (kubelet /metrics/resource)" \
    _retry 60 sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke top pod $pod --no-headers 2>/dev/null | grep -q '^$pod '"
  _check "Prometheus scrapes the smoke pod (target up, discovered via the Kubernetes API)" \
    _retry 45 sh -c "curl -fsS -m 3 'http://$PROMETHEUS_ADDR/api/v1/targets?state=active' | jq -e '.data.activeTargets[] | select(.labels.pod==\"$pod\" and .health==\"up\")' >/dev/null"
  _check "Prometheus has the smoke pod's metric" \
    _retry 20 sh -c "curl -fsS -m 3 'http://$PROMETHEUS_ADDR/api/v1/query?query=payplane_smoke_up' | jq -e '.data.result[] | select(.metric.pod==\"$pod\")' >/dev/null"
  _check "Prometheus is reachable from pods (monitoring/prometheus:9090)" \
    sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- timeout 5 wget -qO- http://prometheus.monitoring:9090/-/ready | grep -qi ready"
  local trace_id; trace_id=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  _check "Jaeger accepts an OTLP/HTTP span from a pod (jaeger.observability:4318)" \
    sh -c "'$K8S_BIN/kubectl' --kubeconfig '$ADMIN_KUBECONFIG' -n smoke exec client -- timeout 5 wget -qO- --header 'Content-Type: application/json' --post-data '{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\"payplane-smoke\"}}]},\"scopeSpans\":[{\"spans\":[{\"traceId\":\"$trace_id\",\"spanId\":\"0102030405060708\",\"name\":\"smoke\",\"kind\":1,\"startTimeUnixNano\":\"$(date +%s)000000000\",\"endTimeUnixNano\":\"$(date +%s)500000000\"}]}]}]}' http://jaeger.observability:4318/v1/traces"
  _check "Jaeger query API returns the span's trace ($JAEGER_SVC_IP:16686)" \
    _retry 20 sh -c "curl -fsS -m 3 http://$JAEGER_SVC_IP:16686/api/traces/$trace_id | jq -e '.data[0].spans[0].operationName == \"smoke\"' >/dev/null"
  _check "apiserver serves streaming lists (watch with sendInitialEvents; needs etcd >= 3.5.13)" \
    sh -c "timeout 5 curl -N -sS --cacert '$PKI/ca.crt' --cert '$PKI/admin.crt' --key '$PKI/admin.key' 'https://$NODE_IP:$APISERVER_PORT/api/v1/namespaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan' | grep -q 'initial-events-end'"
  _check "host processes of the cluster listen only on 127.0.0.1 and $NODE_IP" _listeners_local
  _check "the nft guard drops pod traffic towards the uplink" \
    sh -c "nft list table inet payplane-guard | grep -q 'oifname .* drop'"
  kc delete namespace smoke --wait=false >/dev/null 2>&1
  echo "smoke: $SMOKE_PASSED passed, $SMOKE_FAILED failed ($((SECONDS - t)) s)"
  [ "$SMOKE_FAILED" = 0 ]
}
