#!/usr/bin/env bash
# What audit costs, in one go, on loopback only: one engine (from `gateway up`) and four
# gateways in front of it that differ only in `audit:` — off, file, HTTP to a live receiver,
# HTTP to a dead one (nothing listening: events pile up in the spool). The same `SELECT 1`
# load (mTLS, keep-alive) runs against each, with the gateway's CPU per request.
#
#   bash loadtests/run-audit-benchmark.sh
#   N=10000 C=4 ROUNDS=3 bash loadtests/run-audit-benchmark.sh   # rounds interleave the four, medians at the end
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-4}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release -q -p engine
cargo build --release -q -p gateway -p loadtests
BIN="$CARGO_TARGET_DIR/release"
STATE=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT

# shellcheck source=loadtests/bench-gateways.sh
. loadtests/bench-gateways.sh
bench_stack "$STATE" 0

# A webhook receiver that takes every batch and answers 200.
python3 - 127.0.0.1 28999 >/dev/null 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
PY
PIDS+=($!)

bench_gateway "$STATE" 0 off 001 "audit:
  sinks: []"
bench_gateway "$STATE" 0 file 002 "audit:
  sinks: [{type: file, path: $STATE/audit-file.log, fsync: interval}]"
bench_gateway "$STATE" 0 http 003 "audit:
  spool_dir: $STATE/spool-live
  sinks: [{type: http, url: http://127.0.0.1:28999/events}]"
bench_gateway "$STATE" 0 dead 004 "audit:
  on_failure: allow
  spool_dir: $STATE/spool-dead
  sinks: [{type: http, url: http://127.0.0.1:28998/events}]"

TLS=(--ca "$STATE/tls/ca.pem" --cert "$STATE/tls/client.pem" --key "$STATE/tls/client-key.pem")
ROUNDS=${ROUNDS:-3}
echo "# $(date -u +%F) $(nproc) cores; N=$N C=$C; $ROUNDS interleaved rounds of: audit off / file / http (live) / http (dead receiver)"
for round in $(seq "$ROUNDS"); do
  for name in off file http dead; do
    port=$(grep -o '380[0-9][0-9]' "$STATE/$name.yaml" | head -1)
    "$BIN/loadgen" http --target "https://127.0.0.1:$port" "${TLS[@]}" -n "$N" -c "$C" --sql "SELECT 1" \
      --server-pid "$(cat "$STATE/$name.pid")" | sed "s/^/$name $round /" | tee -a "$STATE/runs.txt"
  done
done
# Medians per configuration: throughput (req/s) and gateway CPU per request (µs).
echo "## medians over $ROUNDS rounds"
for name in off file http dead; do
  rps=$(awk -v n="$name" '$1 == n && $3 == "throughput" {print $4}' "$STATE/runs.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  cpu=$(awk -v n="$name" '$1 == n && $3 == "server" {print $5}' "$STATE/runs.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$name: $rps req/s, $cpu µs CPU/request"
done
echo "## spool of the dead receiver: $(du -sh "$STATE/spool-dead" | cut -f1); file sink: $(wc -l <"$STATE/audit-file.log") events"
