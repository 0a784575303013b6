# Shared helpers for the scripts under ci/. Source it; it defines functions and variables only.
# shellcheck shell=bash

# Everything we build or download is cached outside the repository, keyed by version,
# so a warm machine rebuilds nothing and a fresh clone reuses the cache.
PAYPLANE_CACHE="${PAYPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/payplane}"
# Runtime state (data directories, logs, pid files) of what the scripts start.
PAYPLANE_STATE="${PAYPLANE_STATE:-/var/tmp/payplane}"
PAYPLANE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PAYPLANE_CACHE PAYPLANE_STATE PAYPLANE_ROOT

log() { printf '\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs the Debian packages that are missing, running `apt-get update` once.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ ! -f "$PAYPLANE_STATE/.apt-updated" ]; then
    apt-get update -qq >&2 || die "apt-get update failed"
    mkdir -p "$PAYPLANE_STATE" && touch "$PAYPLANE_STATE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# go_install_cached NAME MODULE VERSION PACKAGE...
#   Builds Go PACKAGEs (import paths inside MODULE) at VERSION with `go install`, caching the
#   binaries under $PAYPLANE_CACHE/go/NAME-VERSION-goX.Y/bin. Prints that bin directory.
#   GOTOOLCHAIN=local: we build with the machine's Go, never a downloaded toolchain.
go_install_cached() {
  local name=$1 module=$2 version=$3; shift 3
  local gover; gover=$(go env GOVERSION) || die "go is not installed"
  local dir="$PAYPLANE_CACHE/go/$name-$version-$gover"
  if [ -f "$dir/.complete" ]; then echo "$dir/bin"; return 0; fi
  log "building $name $version from Go modules (cached in $dir)"
  local start=$SECONDS pkgs=() p
  for p in "$@"; do pkgs+=("$p@$version"); done
  mkdir -p "$dir/bin"
  GOTOOLCHAIN=local GOBIN="$dir/bin" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0 \
    go install -ldflags='-s -w' "${pkgs[@]}" >&2 || die "building $name $version failed"
  touch "$dir/.complete"
  log "built $name $version in $((SECONDS - start)) s"
  echo "$dir/bin"
}

# wait_for WHAT LOGFILE TIMEOUT_S COMMAND...: retries COMMAND until it succeeds, or fails naming
# the part that did not come up and its log file.
wait_for() {
  local what=$1 logfile=$2 timeout=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      [ -f "$logfile" ] && tail -n 20 "$logfile" >&2
      die "$what did not become ready within ${timeout}s (log: $logfile)"
    fi
    sleep 0.5
  done
}
