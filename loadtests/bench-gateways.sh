# shellcheck shell=bash
# Sourced by the benchmarks that compare gateways in front of one engine
# (run-audit-benchmark.sh, run-limits-benchmark.sh). Needs BIN (the release binaries) and
# PIDS (the caller's list of processes to stop).

# bench_stack DIR N: the shipped policies plus a permit for the development workload
# (loadgen's client certificate) in DIR/policies, and `gateway up` with its state in DIR:
# its gateway on 127.0.0.1:28N90 (API), 25N51 (Flight), 29N90 (health), its engine on
# 127.0.0.1:28N91 (HTTP) and 25N52 (Flight). Returns once the gateway is ready.
bench_stack() {
  local dir="$1" n="$2"
  mkdir -p "$dir/policies"
  cp policies/*.cedar policies/schema.cedarschema policies/entities.json "$dir/policies/"
  cat >"$dir/policies/90-benchmark.cedar" <<'CEDAR'
@id("benchmark-reader")
permit(principal == Workload::"spiffe://portcullis.dev/workload/dev-client", action, resource);
CEDAR
  "$BIN/gateway" up --state-dir "$dir" --api-listen "127.0.0.1:28${n}90" --flight-listen "127.0.0.1:25${n}51" \
    --health-listen "127.0.0.1:29${n}90" --engine-http-listen "127.0.0.1:28${n}91" \
    --engine-flight-listen "127.0.0.1:25${n}52" >/dev/null 2>"$dir/up.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:29${n}90/readyz" >/dev/null && break; sleep 0.2; done
}

# bench_gateway DIR N NAME PORTS SECTION: another gateway in front of bench_stack DIR N's
# engine, alike but for SECTION (YAML appended to its config), with its API on
# 127.0.0.1:38PORTS, Flight on 35PORTS and health on 39PORTS; its config is DIR/NAME.yaml
# and its PID in DIR/NAME.pid. Returns once it is ready.
bench_gateway() {
  local dir="$1" n="$2" name="$3" ports="$4" section="$5"
  cat >"$dir/$name.yaml" <<YAML
api: {listen: 127.0.0.1:38$ports, upstream: http://127.0.0.1:28${n}91}
flight: {listen: 127.0.0.1:35$ports, upstream: http://127.0.0.1:25${n}52}
health: {listen: 127.0.0.1:39$ports}
tls:
  certificate_file: $dir/tls/server.pem
  key_file: $dir/tls/server-key.pem
  client_auth: optional
  client_ca_file: $dir/tls/ca.pem
stamp: {key_file: $dir/stamp-key.pem}
authorization: {policies: $dir/policies}
$section
YAML
  "$BIN/gateway" run -c "$dir/$name.yaml" 2>"$dir/$name.log" &
  PIDS+=($!)
  echo $! >"$dir/$name.pid"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:39$ports/readyz" >/dev/null && break; sleep 0.2; done
}
