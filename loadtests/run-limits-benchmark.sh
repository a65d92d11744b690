#!/usr/bin/env bash
# What per-caller query limits cost the engine, on loopback, in one go. The same statements
# run straight at one engine with stamps signed as the gateway signs them
# (loadtests/stamp.py), as:
#   none     no `limits` claim (the engine's own pool and timeout only)
#   within   a tier's limits that never trip: statement timeout, a memory share, row and
#            byte caps (so a capped HTTP result is read whole before its head is sent)
# over three statements: `agg` (a CPU-bound aggregate), `groups` (a 1M-group hash
# aggregation, which reserves memory through the share), `rows` (10M rows as Arrow IPC).
# And what a share too small for a high-cardinality aggregation costs: `spill` runs a
# 6M-group one (keys in no order, so it hashes) with `memory_percent: 1` of a 2 GiB pool
# (it spills to disk) against `none`.
# Medians of ROUNDS runs each, the cases interleaved.
#
#   bash loadtests/run-limits-benchmark.sh
#   ROUNDS=3 bash loadtests/run-limits-benchmark.sh
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release -q -p engine -p gateway
BIN="$CARGO_TARGET_DIR/release"
STATE=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT

"$BIN/gateway" stamp keygen --dir "$STATE" >/dev/null
cat >"$STATE/engine.yaml" <<YAML
http_listen: 127.0.0.1:28191
flight_listen: 127.0.0.1:25152
stamp: {public_key_files: [$STATE/stamp-pub.pem]}
limits: {memory_pool_bytes: 2147483648}
YAML
"$BIN/engine" --config "$STATE/engine.yaml" 2>"$STATE/engine.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:28191/health >/dev/null && break; sleep 0.2; done

WITHIN='{"tier":"group:bench","statement_timeout_secs":3600,"memory_percent":90,"max_result_rows":1000000000,"max_result_bytes":1000000000000}'
SMALL='{"tier":"group:small","memory_percent":1}'
declare -A SQL=(
  [agg]="SELECT count(*) AS n, sum(value % 7) AS s FROM range(0, 100000000)"
  [groups]="SELECT count(*) AS g, sum(c) AS n FROM (SELECT value % 1000000 AS k, count(*) AS c FROM range(0, 20000000) GROUP BY k)"
  [rows]="SELECT value AS a, value * 2 AS b FROM range(0, 10000000)"
  [spill]="SELECT count(*) AS g FROM (SELECT (value * 7919) % 6000011 AS k, count(*) AS c FROM range(0, 6000000) GROUP BY k)"
)
run() { # STAMP SQL -> seconds
  curl -sf -o /dev/null -w '%{time_total}' -X POST http://127.0.0.1:28191/v1/sql \
    -H 'accept: application/vnd.apache.arrow.stream' -H "x-portcullis-stamp: $1" -d "$2"
}
declare -A TIMES=()
for _ in $(seq "$ROUNDS"); do
  # Stamps live 60 s: signed afresh each round.
  none=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain)
  within=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain "$WITHIN")
  small=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain "$SMALL")
  for q in agg groups rows; do
    TIMES[$q.none]+="$(run "$none" "${SQL[$q]}") "
    TIMES[$q.within]+="$(run "$within" "${SQL[$q]}") "
  done
  TIMES[spill.none]+="$(run "$none" "${SQL[spill]}") "
  TIMES[spill.small]+="$(run "$small" "${SQL[spill]}") "
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %10s %8s\n' statement base_s limited_s ratio
for q in agg groups rows spill; do
  base=$(median "${TIMES[$q.none]}")
  other=$([ "$q" = spill ] && echo small || echo within)
  limited=$(median "${TIMES[$q.$other]}")
  printf '%-8s %10s %10s %8s\n' "$q" "$base" "$limited" "$(awk -v a="$limited" -v b="$base" 'BEGIN {printf "%.3fx", a / b}')"
done
