#!/usr/bin/env bash
# Scale-out, in one go, on loopback only: a scan-and-aggregate over a generated Parquet
# dataset (ROWS rows in FILES files, written by the engine itself) on one engine, then on a
# Ballista cluster of one and of two executors (each its own process, mTLS), and `SELECT 1`
# on each, as latency. Every engine runs in development-principal mode (no gateway, no stamp):
# what is measured is the engine and the cluster. Medians of REPS runs; everything it starts
# is stopped by PID at the end, the data removed.
#
#   bash loadtests/cluster-benchmark.sh
#   ROWS=50000000 FILES=16 REPS=3 PINGS=50 bash loadtests/cluster-benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-50000000}
FILES=${FILES:-16}
REPS=${REPS:-3}
PINGS=${PINGS:-50}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release --locked -q -p engine -p gateway
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
PIDS=()
stop() { # stops what this script started, by PID
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; rm -rf "$WORK"' EXIT

wait_http() { # URL: up to 60 s
  for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "cluster-benchmark: $1 never answered" >&2
  exit 1
}
engine() { # CONFIG HTTP_PORT FLIGHT_PORT: a development-mode engine, in the background
  "$BIN/engine" --config "$1" --dangerous-dev-principal bench --dev-group acme \
    --http-listen "127.0.0.1:$2" --flight-listen "127.0.0.1:$3" 2>>"$WORK/engines.log" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$2/health"
}
sql() { # PORT SQL: prints the response body, fails on a non-200
  curl -sf -H 'accept: application/json' --data-binary "$2" "http://127.0.0.1:$1/v1/sql"
}
seconds() { # PORT SQL: wall time of one query
  curl -sf -o /dev/null -w '%{time_total}' --data-binary "$2" "http://127.0.0.1:$1/v1/sql"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The data: FILES Parquet files written by an engine allowed to write (COPY), in this folder.
mkdir -p "$WORK/data/orders"
cat >"$WORK/writer.yaml" <<EOF
sql: {allow_dml: true}
EOF
engine "$WORK/writer.yaml" 38091 35052
per=$((ROWS / FILES))
for i in $(seq 0 $((FILES - 1))); do
  sql 38091 "COPY (SELECT value AS order_id, CASE WHEN value % 2 = 0 THEN 'acme' ELSE 'globex' END AS tenant,
    (value * 7919) % 10007 AS amount, (value * 104729) % 100003 AS customer
    FROM generate_series($((i * per)), $(((i + 1) * per - 1))))
    TO '$WORK/data/orders/part-$i.parquet' STORED AS PARQUET" >/dev/null
done
stop
PIDS=()
echo "data: $ROWS rows in $FILES Parquet files ($(du -sh "$WORK/data" | cut -f1))"

# Integer amounts: sums do not depend on the order partials are merged in. About 200,000 groups (tenant x customer), the 20 biggest returned: the work is the scan and
# the aggregation, not encoding the answer.
QUERY="SELECT tenant, customer, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM orders
  GROUP BY tenant, customer ORDER BY total DESC, tenant, customer LIMIT 20"
datasets="datasets: [{name: orders, path: $WORK/data/orders, format: parquet}]"
echo "$datasets" >"$WORK/single.yaml"

# Cluster certificates, exactly as docs/engine.md's "Scaling out".
"$BIN/gateway" tls init --dir "$WORK/tls" >/dev/null
for node in scheduler executor-1 executor-2 coordinator; do
  "$BIN/gateway" tls add "$node" --node --dir "$WORK/tls" --ip 127.0.0.1 --host localhost >/dev/null
done
mtls() { echo "--node-mtls-ca-certificate-file $WORK/tls/ca.pem --node-mtls-certificate-file $WORK/tls/$1.pem --node-mtls-key-file $WORK/tls/$1-key.pem"; }
cat >"$WORK/coordinator.yaml" <<EOF
$datasets
cluster:
  scheduler_address: 127.0.0.1:38050
  mtls: {ca_certificate_file: $WORK/tls/ca.pem, certificate_file: $WORK/tls/coordinator.pem, key_file: $WORK/tls/coordinator-key.pem}
EOF

measure() { # NAME PORT: REPS timed runs of QUERY (after one warm-up), PINGS of SELECT 1
  local expected
  expected=$(sql "$2" "$QUERY" | sha256sum)
  [ "$expected" = "$REFERENCE" ] || { echo "cluster-benchmark: $1 returned other rows" >&2; exit 1; }
  local scan ping
  scan=$(for _ in $(seq "$REPS"); do seconds "$2" "$QUERY"; echo; done | median)
  ping=$(for _ in $(seq "$PINGS"); do seconds "$2" "SELECT 1"; echo; done | median)
  awk -v n="$1" -v s="$scan" -v p="$ping" 'BEGIN { printf "%-24s scan+aggregate %8.3f s   SELECT 1 %7.1f ms\n", n, s, p * 1000 }'
  echo "$scan $ping $1" >>"$WORK/results"
}

engine "$WORK/single.yaml" 38091 35052
REFERENCE=$(sql 38091 "$QUERY" | sha256sum)
measure "single node" 38091
stop
PIDS=()

# shellcheck disable=SC2046 # one word per flag
"$BIN/engine" scheduler --node-bind-address 127.0.0.1:38050 $(mtls scheduler) 2>>"$WORK/cluster.log" &
PIDS+=($!)
for n in 1 2; do
  # shellcheck disable=SC2046
  "$BIN/engine" executor --node-bind-address "127.0.0.1:$((38060 + n))" --scheduler-address 127.0.0.1:38050 \
    --vcores 2 $(mtls "executor-$n") 2>>"$WORK/cluster.log" &
  PIDS+=($!)
  sleep 2
  engine "$WORK/coordinator.yaml" 38091 35052
  measure "cluster, $n executor(s)" 38091
  kill "${PIDS[-1]}"
  wait "${PIDS[-1]}" 2>/dev/null || true
  unset 'PIDS[-1]'
done

echo "same run, relative to the single node:"
awk 'NR == 1 { s = $1; p = $2 }
     { name = $3; for (i = 4; i <= NF; i++) name = name " " $i
       printf "  %-24s scan+aggregate %5.2fx the time, SELECT 1 %5.2fx\n", name, $1 / s, $2 / p }' "$WORK/results"
