#!/usr/bin/env bash
# Lifecycle test of the local cluster (needs root; brings the cluster up and down twice):
#   1. snapshot the machine (interfaces, addresses, routes, nft tables, mounts, netns, sysctls,
#      runtime paths, kubelet cgroups) with no cluster running;
#   2. up (timed), up again (must be a no-op health check), smoke;
#   3. down, snapshot, compare with 1 (must be identical);
#   4. up after down (timed: warm bring-up), smoke;
#   5. SIGKILL every process of the cluster, up (must tear down and come back), down, compare again.
# Prints "N passed, M failed".
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$HERE/lib/common.sh"
. "$HERE/lib/cluster-build.sh"
. "$HERE/lib/cluster-base.sh"
CLUSTER="$HERE/cluster"
PASSED=0 FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL  $*"; }
snap() { rm -rf "$1"; machine_snapshot "$1"; }
compare() {
  if diff -r "$1" "$2" >"$2.diff" 2>&1; then ok "$3: machine state identical to before up"
  else fail "$3: machine state differs (diff below)"; sed 's/^/        /' "$2.diff"; fi
}

W=$(mktemp -d /tmp/payplane-lifecycle.XXXXXX)
if [ -d "$CS" ]; then echo "a cluster is up: tearing it down first"; "$CLUSTER" down; fi
snap "$W/before"

t=$SECONDS
if "$CLUSTER" up; then ok "up from scratch ($((SECONDS - t)) s)"; else fail "up from scratch"; fi
t=$SECONDS
if "$CLUSTER" up >"$W/up2.log" 2>&1 && grep -q 'already up' "$W/up2.log"; then ok "second up is a no-op health check ($((SECONDS - t)) s)"
else fail "second up is not a no-op"; tail -n 20 "$W/up2.log"; fi
if "$CLUSTER" smoke; then ok "smoke after first up"; else fail "smoke after first up"; fi
if "$CLUSTER" down; then ok "down"; else fail "down"; fi
snap "$W/after1"
compare "$W/before" "$W/after1" "after first down"

t=$SECONDS
if "$CLUSTER" up; then ok "up after down ($((SECONDS - t)) s; bring-up $(cat "$CS/bringup-seconds" 2>/dev/null) s)"; else fail "up after down"; fi
if "$CLUSTER" status; then ok "status after second up"; else fail "status after second up"; fi
if "$CLUSTER" smoke; then ok "smoke after up-after-down"; else fail "smoke after up-after-down"; fi
# A crash (every process of ours SIGKILLed, as after a reboot): up must clean up and come back.
for f in "$CLUSTER_PIDS"/*.pid; do read -r p _ <"$f" && kill -KILL "$p" 2>/dev/null; done
sleep 1
if "$CLUSTER" up >"$W/up3.log" 2>&1 && grep -q 'tearing it down first' "$W/up3.log" && "$CLUSTER" status >/dev/null; then
  ok "up after every process was SIGKILLed tears down and comes back"
else fail "up after a crash"; tail -n 20 "$W/up3.log"; fi
if "$CLUSTER" down; then ok "second down"; else fail "second down"; fi
snap "$W/after2"
compare "$W/before" "$W/after2" "after second down"

echo "cluster lifecycle: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
