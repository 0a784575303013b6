# Builds (from Go modules) and caches every binary the local cluster needs.
# Sourced by ci/cluster after ci/lib/common.sh. Functions print a bin directory on stdout;
# progress and timings go to stderr and to $PAYPLANE_CACHE/build-times.log.
# shellcheck shell=bash

# Pinned versions. A change of version (or of the machine's Go) means a new cache directory.
K8S_VERSION="${K8S_VERSION:-1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
# Prometheus publishes its Go module as v0.3XX.Y for Prometheus v3.XX.Y. (v0.316.0 needs module
# versions that the Go module proxy here answers 403 for; v0.315.0 resolves.)
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.315.0}"
# metrics-server (the resource metrics API, metrics.k8s.io, that HPAs and `kubectl top` read).
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.9.0}"
# Go builds share the 2 cores with Rust builds of other engineers: run them niced.
CLUSTER_GO_NICE="${CLUSTER_GO_NICE:-10}"

_gover() { GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || die "go is not installed (need the machine's go1.2x in PATH)"; }

# _go NAME ARGS...: runs `go ARGS` niced, in the current directory, logging to $dir/build.log.
_go() {
  GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" nice -n "$CLUSTER_GO_NICE" go "$@"
}

# _build_record NAME VERSION SECONDS: prints and records a build's duration.
_build_record() {
  mkdir -p "$PAYPLANE_CACHE"
  log "built $1 $2 in $3 s"
  printf '%s\t%s\t%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "$1" "$2" "$(_gover)" "$3" >>"$PAYPLANE_CACHE/build-times.log"
}

# _progress PID LOG WHAT: prints a heartbeat line every 30 s while PID runs.
_progress() {
  local pid=$1 logf=$2 what=$3 start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null && log "  ... still building $what ($((SECONDS - start)) s; log: $logf)"
  done
}

# _run_logged LOG WHAT CMD...: runs CMD with output to LOG, heartbeat on stderr; fails naming the log.
_run_logged() {
  local logf=$1 what=$2; shift 2
  "$@" >>"$logf" 2>&1 &
  local pid=$!
  _progress "$pid" "$logf" "$what" &
  local ppid=$!
  if ! wait "$pid"; then
    kill "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null
    tail -n 30 "$logf" >&2
    die "building $what failed (log: $logf)"
  fi
  kill "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null
  return 0
}

# build_kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl
# and kubelet, through a wrapper module that replaces every staging module
# k8s.io/<m> with its published tag v0.<minor>.<patch>. The list of staging modules is read
# from Kubernetes' own go.mod (its `k8s.io/<m> v0.0.0` requirements), never hard-coded.
build_kubernetes() {
  local kv=$K8S_VERSION gover; gover=$(_gover)
  local dir="$PAYPLANE_CACHE/k8s-$kv-static-$gover"
  if [ -f "$dir/.complete" ]; then echo "$dir/bin"; return 0; fi
  local start=$SECONDS mp=${kv#1.} logf="$dir/build.log"
  rm -rf "$dir"; mkdir -p "$dir/bin"; : >"$logf"
  log "building Kubernetes v$kv (6 binaries) from Go modules in $dir (log: $logf); cold: ~20-25 min on 2 busy cores"
  (
    cd "$dir" || exit 1
    _go mod init local/k8sbuild >>"$logf" 2>&1 || exit 1
    local kgomod
    kgomod=$(_go mod download -json "k8s.io/kubernetes@v$kv" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])') || exit 1
    local mods; mods=$(sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) v0\.0\.0([[:space:]]|$).*#\1#p' "$kgomod" | sort -u)
    [ -n "$mods" ] || { echo "no staging modules found in $kgomod" >>"$logf"; exit 1; }
    echo "staging modules ($(echo "$mods" | wc -l)): $mods" >>"$logf"
    local m; for m in $mods; do _go mod edit "-replace=$m=$m@v0.$mp"; done
    _go mod edit "-go=$(sed -n 's/^go //p' "$kgomod")"
    awk '/^godebug \(/{b=1} b||/^godebug /{print} b&&/^\)/{b=0}' "$kgomod" >>go.mod
  ) || die "preparing the Kubernetes wrapper module failed (log: $logf)"
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl kubelet" c pkgs=()
  for c in $cmds; do pkgs+=("k8s.io/kubernetes/cmd/$c@v$kv"); done
  log "  resolving Kubernetes dependencies (go get)"
  (cd "$dir" && _run_logged "$logf" "Kubernetes (go get)" _go get "${pkgs[@]}") || exit 1
  local V="-X k8s.io/component-base/version" C="-X k8s.io/client-go/pkg/version" D p ldf="-s -w"
  D=$(date -u +%FT%TZ)
  for p in "$V" "$C"; do
    ldf="$ldf $p.gitVersion=v$kv $p.gitMajor=1 $p.gitMinor=${mp%%.*} $p.gitTreeState=clean $p.buildDate=$D"
  done
  # One `go build` for all six, all static (CGO_ENABLED=0, as upstream's release binaries): the
  # shared k8s.io packages compile once. A cgo kubelet would recompile nearly every package again
  # (net, os/user and all their importers), which cost 9 more minutes here.
  local c bins=()
  for c in $cmds; do bins+=("k8s.io/kubernetes/cmd/$c"); done
  log "  compiling $cmds (static)"
  (cd "$dir" && CGO_ENABLED=0 _run_logged "$logf" "Kubernetes (compile)" \
    _go build -tags selinux,notest -ldflags "$ldf" -o bin/ "${bins[@]}") || exit 1
  touch "$dir/.complete"
  _build_record kubernetes "v$kv" $((SECONDS - start))
  echo "$dir/bin"
}

# _wrapper_build NAME VERSION CGO TAGS LDFLAGS MAIN_PKG_AT_VERSION... : builds main packages at a
# version through a throw-away wrapper module (needed when the module has relative replace
# directives, as etcd's do; harmless otherwise). Binaries go to $dir/bin.
_wrapper_build() {
  local name=$1 version=$2 cgo=$3 tags=$4 ldflags=$5; shift 5
  local gover; gover=$(_gover)
  local dir="$PAYPLANE_CACHE/$name-$version-$gover"
  if [ -f "$dir/.complete" ]; then echo "$dir/bin"; return 0; fi
  local start=$SECONDS logf="$dir/build.log" p pkgs=()
  rm -rf "$dir"; mkdir -p "$dir/bin"; : >"$logf"
  log "building $name $version from Go modules in $dir (log: $logf)"
  for p in "$@"; do pkgs+=("${p%@*}"); done
  (
    cd "$dir" || exit 1
    _go mod init "local/${name}build" >>"$logf" 2>&1 || exit 1
    _run_logged "$logf" "$name (go get)" _go get "$@"
    CGO_ENABLED=$cgo _run_logged "$logf" "$name" _go build ${tags:+-tags "$tags"} -ldflags "-s -w $ldflags" -o bin/ "${pkgs[@]}"
  ) || exit 1
  touch "$dir/.complete"
  _build_record "$name" "$version" $((SECONDS - start))
  echo "$dir/bin"
}

# etcd: go.etcd.io/etcd/server/v3 has relative replaces, so `go install` refuses it.
build_etcd() {
  _wrapper_build etcd "$ETCD_VERSION" 0 "" "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
    "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
}
# The server module root is package main; go names its binary "server": link it as etcd.
etcd_bin() {
  local b; b=$(build_etcd) || exit 1
  [ -x "$b/etcd" ] || { [ -x "$b/server" ] && ln -sf server "$b/etcd"; }
  echo "$b/etcd"
}

build_kwok() {
  _wrapper_build kwok "$KWOK_VERSION" 0 "" "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
  _wrapper_build helm "$HELM_VERSION" 0 "" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# metrics-server: its module requires k8s.io/* v0.36 (a newer client than the v1.35 cluster, within
# the supported skew of one minor); the wrapper resolves exactly its own go.mod's versions.
build_metrics_server() {
  _wrapper_build metrics-server "$METRICS_SERVER_VERSION" 0 "" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/component-base/version.gitVersion=$METRICS_SERVER_VERSION" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
}

# Prometheus with only the Kubernetes service discovery compiled in (its own build tags), which
# drops the AWS/Azure/GCE/... SDKs from the build. No embedded web UI (that needs npm): the HTTP
# API (/api/v1/targets, /api/v1/query, ...) is complete.
build_prometheus() {
  local pv=${PROMETHEUS_VERSION#v0.}; pv="3.${pv%%.*}.${pv#*.}"
  _wrapper_build prometheus "$PROMETHEUS_VERSION" 0 "remove_all_sd,enable_kubernetes_sd" \
    "-X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Branch=release" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
}

# CoreDNS with only the plugins the cluster uses: a wrapper main that imports them (the stock main
# imports all ~60 plugins, including the AWS, Azure and GCP SDKs).
build_coredns() {
  local version=$COREDNS_VERSION gover; gover=$(_gover)
  local dir="$PAYPLANE_CACHE/coredns-$version-slim-$gover"
  if [ -f "$dir/.complete" ]; then echo "$dir/bin"; return 0; fi
  local start=$SECONDS logf="$dir/build.log" p
  rm -rf "$dir"; mkdir -p "$dir/bin"; : >"$logf"
  log "building CoreDNS $version (slim: errors health ready kubernetes cache loop reload prometheus log loadbalance) in $dir (log: $logf)"
  {
    echo 'package main'
    echo 'import ('
    for p in errors health ready kubernetes cache loop reload metrics log loadbalance; do
      echo "	_ \"github.com/coredns/coredns/plugin/$p\""
    done
    echo '	"github.com/coredns/coredns/coremain"'
    echo ')'
    echo 'func main() { coremain.Run() }'
  } >"$dir/main.go"
  (
    cd "$dir" || exit 1
    _go mod init local/corednsbuild >>"$logf" 2>&1 || exit 1
    _run_logged "$logf" "coredns (go get)" _go get "github.com/coredns/coredns@$version"
    _run_logged "$logf" "coredns (go mod tidy)" _go mod tidy
    CGO_ENABLED=0 _run_logged "$logf" "coredns" _go build \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$version" -o bin/coredns .
  ) || exit 1
  touch "$dir/.complete"
  _build_record coredns "$version" $((SECONDS - start))
  echo "$dir/bin"
}
