#!/usr/bin/env bash
# What row and column policy costs the engine, on loopback, in one go: 10,000,000 rows in
# one Parquet file served twice, as `bench.plain` (no declared columns) and `bench.governed`
# (five tagged columns, `id` and `tenant` typed). The same aggregate over the five columns
# runs, straight at the engine with stamps signed as the gateway signs them
# (loadtests/stamp.py), as:
#   plain     no policy
#   open      the governed table under a decision that restricts nothing
#   filtered  a row filter every row passes, no mask
#   masked    a row filter every row passes and five masks (null, constant, last4,
#             email_domain, year_only)
#   selective a row filter 1% of the rows pass (id < 100000), the same five masks
# Medians of ROUNDS runs each (interleaved), and the Parquet bytes each scan read (EXPLAIN ANALYZE).
#
#   bash loadtests/run-data-policy-benchmark.sh
#   ROWS=1000000 ROUNDS=3 bash loadtests/run-data-policy-benchmark.sh
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
ROUNDS=${ROUNDS:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release -q -p engine -p gateway
BIN="$CARGO_TARGET_DIR/release"
STATE=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT

# The data, written by the engine itself (a development engine that may write).
cat >"$STATE/write.yaml" <<YAML
http_listen: 127.0.0.1:28191
flight_listen: 127.0.0.1:25152
sql: {allow_dml: true}
YAML
"$BIN/engine" --config "$STATE/write.yaml" --dangerous-dev-principal bench 2>/dev/null &
PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:28191/health >/dev/null && break; sleep 0.2; done
curl -sf -X POST http://127.0.0.1:28191/v1/sql -d "COPY (SELECT value AS id,
    CASE WHEN value % 2 = 0 THEN 'acme' ELSE 'globex' END AS tenant,
    concat('user', value, '@mail', value % 97, '.example') AS email,
    concat('+1 555 ', lpad(CAST(value % 10000000 AS VARCHAR), 7, '0')) AS phone,
    concat('ID-', value * 7919 % 1000003) AS national_id,
    concat('note ', value % 1013) AS note,
    CAST(DATE '2020-01-01' + CAST(value % 2000 AS INT) AS DATE) AS joined
  FROM range($ROWS)) TO '$STATE/data.parquet'" >/dev/null
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS=()

"$BIN/gateway" stamp keygen --dir "$STATE" >/dev/null
cat >"$STATE/engine.yaml" <<YAML
http_listen: 127.0.0.1:28191
flight_listen: 127.0.0.1:25152
stamp: {public_key_files: [$STATE/stamp-pub.pem]}
datasets:
  - {name: bench.plain, path: $STATE/data.parquet}
  - {name: bench.governed, path: $STATE/data.parquet}
columns:
  bench.governed:
    id: {type: long}
    tenant: {type: string}
    email: {type: string, tags: [pii.email]}
    phone: {type: string, tags: [pii.phone]}
    national_id: {type: string, tags: [pii.national_id]}
    note: {type: string, tags: [free_text]}
    joined: {type: date, tags: [pii.date]}
YAML
"$BIN/engine" --config "$STATE/engine.yaml" 2>"$STATE/engine.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:28191/health >/dev/null && break; sleep 0.2; done

QUERY="SELECT count(*) AS n, sum(length(email)) AS e, sum(length(phone)) AS p, sum(length(national_id)) AS i, sum(length(note)) AS t, max(joined) AS j"
stamp() { python3 loadtests/stamp.py "$STATE/stamp-key.pem" "$1"; }
# The cases interleave, one query of each per round, so a drift of the machine's speed
# during the run (another tenant of the host, the CPU's clock) weighs on all of them alike.
CASES=(plain open filtered masked selective)
declare -A TABLE=([plain]=bench.plain) STAMP=() TIMES=()
for c in "${CASES[@]}"; do STAMP[$c]=$(stamp "$c"); done
for _ in $(seq "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    TIMES[$c]+="$(curl -sf -o /dev/null -w '%{time_total}' -X POST http://127.0.0.1:28191/v1/sql \
      -H "x-portcullis-stamp: ${STAMP[$c]}" -d "$QUERY FROM ${TABLE[$c]:-bench.governed}") "
  done
done
median() { tr ' ' '\n' <<<"${TIMES[$1]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bytes() { # TABLE CASE -> Parquet bytes scanned
  curl -sf -X POST http://127.0.0.1:28191/v1/sql -H "x-portcullis-stamp: $(stamp "$2")" \
    -d "EXPLAIN ANALYZE $QUERY FROM $1" | grep -o "bytes_scanned=[0-9.]* *[A-Za-z]*" | head -1 || echo "bytes_scanned: not reported"
}
plain=$(median plain); open=$(median open); filtered=$(median filtered); masked=$(median masked)
selective=$(median selective)
echo "rows: $ROWS, rounds: $ROUNDS (median seconds per query)"
echo "plain:     $plain   $(bytes bench.plain plain)"
echo "open:      $open   $(bytes bench.governed open)"
echo "filtered:  $filtered   $(bytes bench.governed filtered)"
echo "masked:    $masked   $(bytes bench.governed masked)"
echo "selective: $selective   $(bytes bench.governed selective)"
awk -v p="$plain" -v m="$masked" -v o="$open" -v f="$filtered" \
  'BEGIN {printf "open / plain: %.3f   filtered / plain: %.3f   masked / plain: %.3f\n", o / p, f / p, m / p}'
