#!/usr/bin/env bash
# End-to-end payments/s: starts routing, accounting, settlement, channel-sim and the gateway on
# ports 5205x with fresh databases, runs `payplane load "$@"`, then prints the gateway's saga step
# time by action. Binaries: the debug builds of the target directory, or those in $B (e.g.
# B=$CARGO_TARGET_DIR/release). Needs `ci/devenv up` and the binaries built. RATIO: the trace
# sampling ratio (0.01).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
eval "$(ci/devenv env)"
B=${B:-${CARGO_TARGET_DIR:-${PAYPLANE_CACHE:-$HOME/.cache/payplane}/target}/debug}
base=${DATABASE_URL%/*}
for db in bench_gw bench_acc bench_set; do
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
export LOG_FORMAT=text RUST_LOG=warn OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=${RATIO:-0.01}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
GRPC_ADDR=127.0.0.1:52052 ADMIN_ADDR=127.0.0.1:52092 POLICY_FILE=services/routing/policy/default.yaml $B/routing & pids+=($!)
GRPC_ADDR=127.0.0.1:52053 ADMIN_ADDR=127.0.0.1:52093 DATABASE_URL=$base/bench_acc $B/accounting & pids+=($!)
GRPC_ADDR=127.0.0.1:52054 ADMIN_ADDR=127.0.0.1:52094 DATABASE_URL=$base/bench_set ACCOUNTING_TARGET=127.0.0.1:52053 $B/settlement & pids+=($!)
GRPC_ADDR=127.0.0.1:52055 ADMIN_ADDR=127.0.0.1:52095 CHANNEL_SIM_CHANNELS='unionpay:p50=2,p99=10;netsunion:p50=2,p99=10;bank-direct:p50=2,p99=10;wallet:p50=2,p99=10' $B/channel-sim & pids+=($!)
sleep 3
GRPC_ADDR=127.0.0.1:52051 ADMIN_ADDR=127.0.0.1:52091 DATABASE_URL=$base/bench_gw MERCHANTS='*' DATABASE_MAX_CONNECTIONS=20 \
  ROUTING_URL=http://127.0.0.1:52052 ACCOUNTING_URL=http://127.0.0.1:52053 SETTLEMENT_URL=http://127.0.0.1:52054 CHANNEL_URL=http://127.0.0.1:52055 \
  $B/gateway & pids+=($!)
sleep 3
# Where the CPU goes: user + system time of each process over the load, from /proc.
hz=$(getconf CLK_TCK)
names=(routing accounting settlement channel-sim gateway)
postmaster=$(head -1 "${PAYPLANE_STATE:-/var/tmp/payplane}/devenv/postgres/data/postmaster.pid")
ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
snapshot() {
  local i
  for i in "${!pids[@]}"; do ticks "${pids[$i]}"; done
  # shellcheck disable=SC2046
  ticks "$postmaster" $(pgrep -P "$postmaster")
  # shellcheck disable=SC2046
  ticks $(pgrep -f devenv/jaeger/config)
}
mapfile -t before < <(snapshot)
load_before=$(awk '{print $16 + $17}' /proc/$$/stat)
$B/payplane load --gateway http://127.0.0.1:52051 "$@" --no-progress
load_after=$(awk '{print $16 + $17}' /proc/$$/stat)
mapfile -t after < <(snapshot)
echo "CPU seconds during the load, by process (user + system):"
labels=("${names[@]}" postgres jaeger)
for i in "${!labels[@]}"; do
  printf '  %-12s %8.2f\n' "${labels[$i]}" "$(echo "(${after[$i]} - ${before[$i]}) / $hz" | bc -l)"
done
printf '  %-12s %8.2f\n' "load tool" "$(echo "($load_after - $load_before) / $hz" | bc -l)"
echo "PostgreSQL work by database (fresh databases: the whole run):"
psql "$DATABASE_URL" -qAt -F ' ' -c "SELECT rpad(datname, 10), 'commits', xact_commit, 'inserted', tup_inserted, \
  'updated', tup_updated, 'fetched', tup_fetched FROM pg_stat_database WHERE datname IN ('bench_gw', 'bench_acc', 'bench_set') ORDER BY 1" | sed 's/^/  /'
curl -s 127.0.0.1:52091/metrics | grep -E '^gateway_saga_step_duration_seconds_(sum|count)' | sed 's/{[^}]*action="\([a-z_]*\)"[^}]*result="ok"[^}]*}/ \1/' | grep -v 'result=' | sort
