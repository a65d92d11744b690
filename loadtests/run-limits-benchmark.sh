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
# Medians of ROUNDS runs each, the cases interleaved, which goes first alternating.
#
# Then what the gateway's side costs: two gateways in front of one engine (from `gateway
# up`) that differ only in `query_limits` (none / a default tier that never trips: caps, a
# budget, concurrency slots, so every query is admitted, metered and its rows counted),
# with the same mTLS `SELECT 1` load (loadgen: throughput and the gateway's CPU per request)
# and a 10M-row Arrow result through each (curl).
#
#   bash loadtests/run-limits-benchmark.sh
#   ROUNDS=3 bash loadtests/run-limits-benchmark.sh
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release -q -p engine -p gateway -p loadtests
N=${N:-10000}
C=${C:-4}
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

WITHIN=${WITHIN:-'{"tier":"group:bench","statement_timeout_secs":3600,"memory_percent":90,"max_result_rows":1000000000,"max_result_bytes":1000000000000}'}
SMALL='{"tier":"group:small","memory_percent":1}'
declare -A SQL=(
  [agg]="SELECT count(*) AS n, sum(value % 7) AS s FROM range(0, 100000000)"
  [groups]="SELECT count(*) AS g, sum(c) AS n FROM (SELECT value % 1000000 AS k, count(*) AS c FROM range(0, 20000000) GROUP BY k)"
  [rows]="SELECT value AS a, value * 2 AS b FROM range(0, 10000000)"
  [spill]="SELECT count(*) AS g FROM (SELECT (value * 7919) % 6000011 AS k, count(*) AS c FROM range(0, 6000000) GROUP BY k)"
)
run() { # STAMP SQL -> seconds (a failed statement stops the run, saying why)
  local out
  out=$(curl -s -o "$STATE/body" -w '%{http_code} %{time_total}' -X POST http://127.0.0.1:28191/v1/sql \
    -H 'accept: application/vnd.apache.arrow.stream' -H "x-portcullis-stamp: $1" -d "$2")
  if [ "${out%% *}" != 200 ]; then
    echo "run-limits-benchmark: $2 answered ${out%% *}: $(head -c 300 "$STATE/body")" >&2
    exit 1
  fi
  echo "${out#* }"
}
declare -A TIMES=()
for round in $(seq "$ROUNDS"); do
  # Stamps live 60 s: signed afresh each round.
  declare -A STAMPS=(
    [none]=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain)
    [within]=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain "$WITHIN")
    [small]=$(python3 loadtests/stamp.py "$STATE/stamp-key.pem" plain "$SMALL")
  )
  # Which case goes first alternates: the second run of a statement that just freed a large
  # result is slower whatever its limits (measured with a `limits` claim that limits nothing).
  if ((round % 2)); then order=(none within); else order=(within none); fi
  for q in agg groups rows; do
    for c in "${order[@]}"; do
      TIMES[$q.$c]+="$(run "${STAMPS[$c]}" "${SQL[$q]}") "
    done
  done
  if ((round % 2)); then order=(none small); else order=(small none); fi
  for c in "${order[@]}"; do
    TIMES[spill.$c]+="$(run "${STAMPS[$c]}" "${SQL[spill]}") "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %10s %8s\n' statement base_s limited_s ratio
for q in agg groups rows spill; do
  base=$(median "${TIMES[$q.none]}")
  other=$([ "$q" = spill ] && echo small || echo within)
  limited=$(median "${TIMES[$q.$other]}")
  printf '%-8s %10s %10s %8s\n' "$q" "$base" "$limited" "$(awk -v a="$limited" -v b="$base" 'BEGIN {printf "%.3fx", a / b}')"
done

# The gateway's side.
kill "${PIDS[@]}" 2>/dev/null || true
wait 2>/dev/null || true
PIDS=()
# shellcheck source=loadtests/bench-gateways.sh
. loadtests/bench-gateways.sh
bench_stack "$STATE/up" 2
bench_gateway "$STATE/up" 2 plain 101 "query_limits: {}"
bench_gateway "$STATE/up" 2 limited 102 "query_limits:
  default: {statement_timeout_secs: 3600, max_result_rows: 1000000000, concurrent_queries: 64,
            rows_per_window: {rows: 1000000000000, window_secs: 3600}}
  concurrent_queries: 256"
TLS=(--ca "$STATE/up/tls/ca.pem" --cert "$STATE/up/tls/client.pem" --key "$STATE/up/tls/client-key.pem")
CURL_TLS=(--cacert "$STATE/up/tls/ca.pem" --cert "$STATE/up/tls/client.pem" --key "$STATE/up/tls/client-key.pem")
declare -A RPS=() CPU=() BIG=()
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order=(plain limited); else order=(limited plain); fi
  for name in "${order[@]}"; do
    port=$(grep -o '381[0-9][0-9]' "$STATE/up/$name.yaml" | head -1)
    out=$("$BIN/loadgen" http --target "https://127.0.0.1:$port" "${TLS[@]}" -n "$N" -c "$C" --sql "SELECT 1" \
      --server-pid "$(cat "$STATE/up/$name.pid")")
    RPS[$name]+="$(awk '$1 == "throughput" {print $2}' <<<"$out") "
    CPU[$name]+="$(awk '$1 == "server" {print $3}' <<<"$out") "
    BIG[$name]+="$(curl -sf "${CURL_TLS[@]}" -o /dev/null -w '%{time_total}' -H 'accept: application/vnd.apache.arrow.stream' \
      "https://localhost:$port/v1/sql" -d "${SQL[rows]}") "
  done
done
printf '%-8s %12s %16s %14s\n' gateway 'SELECT 1/s' 'CPU µs/request' '10M rows s'
for name in plain limited; do
  printf '%-8s %12s %16s %14s\n' "$name" "$(median "${RPS[$name]}")" "$(median "${CPU[$name]}")" "$(median "${BIG[$name]}")"
done

