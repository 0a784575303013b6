# kwok: simulated nodes and pods against the same apiserver, for scale tests. Sourced by ci/cluster.
# Fake nodes carry the annotation kwok.x-k8s.io/node=fake (the only nodes kwok manages), the label
# type=kwok and the taint kwok.x-k8s.io/node=fake:NoSchedule, so real pods stay on the real node.
# Their addresses (10.250.0.0/16) and pod CIDRs (10.244.1.0/24 and up) have unreachable routes.
# shellcheck shell=bash

kwok_up() {
  if proc_alive kwok; then return 0; fi
  local bin; bin=$(build_kwok) || exit 1
  local src; src=$(GOTOOLCHAIN=local go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | jq -r .Dir) \
    || die "kwok: cannot find the kwok module (for its stage definitions)"
  mkdir -p "$CS/kwok"
  # Stages: nodes become Ready and keep a lease heartbeat; pods go Running (and are deleted).
  {
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      cat "$src/kustomize/stage/$f"; echo "---"
    done
  } >"$CS/kwok/kwok.yaml"
  # No --server-address / --node-port: kwok opens no listener.
  start_proc kwok "$bin/kwok" --kubeconfig="$PKI/kwok.kubeconfig" --config="$CS/kwok/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.250.128.0/17 --node-ip="$KWOK_NODE_IP" --node-lease-duration-seconds=40
  sleep 1
  proc_alive kwok || { tail -n 20 "$CLUSTER_LOGS/kwok.log" >&2; die "kwok exited at start (log: $CLUSTER_LOGS/kwok.log)"; }
  log "kwok: running (pid $(proc_pid kwok))"
}

# kwok_nodes N: makes the set of simulated nodes exactly kwok-node-0..N-1 and waits for them Ready.
kwok_nodes() {
  local n=$1 t=$SECONDS i
  [[ $n =~ ^[0-9]+$ ]] || die "kwok-nodes: N must be a number"
  kwok_up
  {
    for ((i = 0; i < n; i++)); do
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, kubernetes.io/role: agent}
spec:
  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
    done
  } >"$CS/kwok/nodes.yaml"
  if [ "$n" -gt 0 ]; then
    kc apply --server-side -f "$CS/kwok/nodes.yaml" >/dev/null || die "kwok-nodes: creating nodes failed"
  fi
  # Remove fake nodes beyond N.
  local extra
  extra=$(kc get nodes -l type=kwok -o name | sed 's#node/kwok-node-##' | awk -v n="$n" '$1 >= n {print "node/kwok-node-" $1}')
  [ -n "$extra" ] && kc delete $extra --wait=false >/dev/null
  local deadline=$((SECONDS + 180)) ready
  while :; do
    ready=$(kc get nodes -l type=kwok --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)
    [ "$ready" -ge "$n" ] && break
    [ $SECONDS -ge $deadline ] && die "kwok-nodes: only $ready of $n simulated nodes Ready after 180 s (log: $CLUSTER_LOGS/kwok.log)"
    sleep 1
  done
  log "kwok-nodes: $n simulated nodes Ready ($((SECONDS - t)) s)"
}

# kwok_scale NODES PODS: NODES simulated nodes, a Deployment of PODS pods on them; waits for all
# Running, prints timings, then deletes the Deployment (the nodes stay).
kwok_scale() {
  local nodes=$1 pods=$2 t
  kwok_nodes "$nodes"
  t=$SECONDS
  kc apply -f - >/dev/null <<EOF || die "kwok-scale: creating the Deployment failed"
apiVersion: v1
kind: Namespace
metadata: {name: kwok-scale}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fake-pods, namespace: kwok-scale}
spec:
  replicas: $pods
  selector: {matchLabels: {app: fake-pods}}
  template:
    metadata: {labels: {app: fake-pods}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: fake, image: fake-image-never-pulled}]
EOF
  local deadline=$((SECONDS + 600)) running nodes_used
  while :; do
    running=$(kc -n kwok-scale get pods --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l)
    [ "$running" -ge "$pods" ] && break
    [ $SECONDS -ge $deadline ] && die "kwok-scale: only $running of $pods pods Running after 600 s (log: $CLUSTER_LOGS/kwok.log)"
    sleep 2
  done
  nodes_used=$(kc -n kwok-scale get pods -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
  log "kwok-scale: $running pods Running on $nodes_used simulated nodes, $((SECONDS - t)) s after the Deployment was created"
  echo "kwok-scale: nodes=$(kc get nodes -l type=kwok --no-headers | awk '$2=="Ready"' | wc -l) ready, pods=$running running, seconds=$((SECONDS - t))"
  kc delete namespace kwok-scale --wait=false >/dev/null
}
