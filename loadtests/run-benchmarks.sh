#!/usr/bin/env bash
# Reproduces the performance figures of docs/performance.md in one go, on loopback only: the stack from
# `gateway up` (release build) on its own ports, then direct-to-engine and through-gateway
# runs of the same scenario back to back, with each server's CPU per request.
#
#   bash loadtests/run-benchmarks.sh            # figures on stdout
#   N=20000 C=4 bash loadtests/run-benchmarks.sh
#   GATEWAY=/path/to/other/gateway bash loadtests/run-benchmarks.sh   # another gateway build
#                                  (an earlier commit's, say) in front of the same engine
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}     # requests per latency scenario
C=${C:-4}         # concurrent connections
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
# Two builds: the engine's dependency features stay independent of the gateway's, so the
# (long) DataFusion release build is shared with `cargo build --release -p engine`.
# BIN=DIR: binaries already built (gateway, engine, loadgen).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p engine
  cargo build --release -q -p gateway -p loadtests
  BIN="$CARGO_TARGET_DIR/release"
fi
GATEWAY=${GATEWAY:-$BIN/gateway}
STATE=$(mktemp -d)
trap 'kill "$UP" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT

# The shipped policies plus one permit for the benchmark's workload on the demo table, so the
# figures include Cedar as deployed (`gateway up` keeps a policy folder that exists).
mkdir -p "$STATE/policies"
cp policies/*.cedar policies/schema.cedarschema policies/entities.json "$STATE/policies/"
cat >"$STATE/policies/90-benchmark.cedar" <<'CEDAR'
@id("benchmark-reader")
permit(
  principal == Workload::"spiffe://portcullis.dev/workload/dev-client",
  action == Action::"select",
  resource == Dataset::"datafusion.demo.orders"
);
CEDAR

"$GATEWAY" up --engine-bin "$BIN/engine" --state-dir "$STATE" --api-listen 127.0.0.1:28090 --flight-listen 127.0.0.1:25051 \
  --health-listen 127.0.0.1:29090 --engine-http-listen 127.0.0.1:28091 --engine-flight-listen 127.0.0.1:25052 \
  >/dev/null 2>"$STATE/up.log" &
UP=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:29090/readyz >/dev/null && break; sleep 0.2; done
ENGINE=$(pgrep -P "$UP" engine)
TLS=(--ca "$STATE/tls/ca.pem" --cert "$STATE/tls/client.pem" --key "$STATE/tls/client-key.pem")
STAMP=(--stamp-key "$STATE/stamp-key.pem" --principal spiffe://portcullis.dev/workload/dev-client --scope datafusion.demo.orders)
LG="$BIN/loadgen"

# A reference L7 proxy: HAProxy terminating the same mTLS and proxying HTTP to the engine, with
# no authentication, policy or audit (the client brings its own stamp). `apt-get install
# haproxy` to include it; skipped when it is not installed.
HAPROXY=""
if command -v haproxy >/dev/null; then
  cat "$STATE/tls/server.pem" "$STATE/tls/server-key.pem" >"$STATE/haproxy.pem"
  cat >"$STATE/haproxy.cfg" <<CFG
global
  nbthread 2
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend api
  bind 127.0.0.1:28190 ssl crt $STATE/haproxy.pem ca-file $STATE/tls/ca.pem verify optional alpn http/1.1
  default_backend engine
backend engine
  server engine 127.0.0.1:28091
# Flight: TLS terminated, the h2 stream passed through as bytes (the least a TLS hop can cost).
frontend flight
  mode tcp
  bind 127.0.0.1:25190 ssl crt $STATE/haproxy.pem ca-file $STATE/tls/ca.pem verify optional alpn h2
  default_backend engine_flight
backend engine_flight
  mode tcp
  server engine 127.0.0.1:25052
CFG
  haproxy -f "$STATE/haproxy.cfg" -D -p "$STATE/haproxy.pid"
  sleep 0.5
  HAPROXY=$(cat "$STATE/haproxy.pid")
  trap 'kill "$UP" "$HAPROXY" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT
fi

echo "# $(date -u +%F) $(nproc) cores; N=$N C=$C"
for SQL in "SELECT 1" "SELECT order_id, amount FROM demo.orders WHERE tenant = 'acme' AND amount > 50"; do
  "$LG" http --target http://127.0.0.1:28091 "${STAMP[@]}" -n "$N" -c "$C" --sql "$SQL" --server-pid "$ENGINE"
  if [ -n "$HAPROXY" ]; then
    echo "(HAProxy reference)"
    "$LG" http --target https://127.0.0.1:28190 "${TLS[@]}" "${STAMP[@]}" -n "$N" -c "$C" --sql "$SQL" --server-pid "$HAPROXY"
  fi
  "$LG" http --target https://127.0.0.1:28090 "${TLS[@]}" -n "$N" -c "$C" --sql "$SQL" --server-pid "$UP"
  "$LG" flight --target http://127.0.0.1:25052 "${STAMP[@]}" -n "$((N / 4))" -c "$C" --sql "$SQL" --server-pid "$ENGINE"
  "$LG" flight --target https://127.0.0.1:25051 "${TLS[@]}" -n "$((N / 4))" -c "$C" --sql "$SQL" --server-pid "$UP"
done
BIG="SELECT value, value * 2 AS doubled FROM generate_series(1, 10000000)"
"$LG" flight --target http://127.0.0.1:25052 "${STAMP[@]}" -n 3 -c 1 --warmup 1 --sql "$BIG" --server-pid "$ENGINE"
if [ -n "$HAPROXY" ]; then
  echo "(HAProxy reference: TLS + TCP pass-through)"
  "$LG" flight --target https://127.0.0.1:25190 "${TLS[@]}" "${STAMP[@]}" -n 3 -c 1 --warmup 1 --sql "$BIG" --server-pid "$HAPROXY"
fi
"$LG" flight --target https://127.0.0.1:25051 "${TLS[@]}" -n 3 -c 1 --warmup 1 --sql "$BIG" --server-pid "$UP"
"$LG" handshakes --target https://127.0.0.1:28090 "${TLS[@]}" -n 2000 -c 2 --server-pid "$UP"
