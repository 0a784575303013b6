#!/usr/bin/env bash
# Scale test against the running local cluster: 100 kwok nodes Ready and 1,000 pods on them Running
# (override with NODES= PODS=). Prints "N passed, M failed".
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=${NODES:-100} PODS=${PODS:-1000}
if out=$("$HERE/cluster" kwok-scale "$NODES" "$PODS" | tee /dev/stderr | grep '^kwok-scale:'); then
  echo "kwok scale: 1 passed, 0 failed ($out)"
else
  echo "kwok scale: 0 passed, 1 failed"; exit 1
fi
