#!/usr/bin/env bash
# What the engine's access report (identity::AccessReport, asked for by the gateway when audit
# is on) costs a small query: the same statements with and without `x-portcullis-report`,
# interleaved on one keep-alive connection, medians of 3,000 each (a table, a join, a view).
#
#   bash loadtests/run-access-report-cost.sh
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
cargo build --release -q -p engine -p gateway
STATE=$(mktemp -d)
cat >"$STATE/engine.yaml" <<YAML
http_listen: 127.0.0.1:28291
flight_listen: 127.0.0.1:25252
demo_data: true
views:
  - {name: contacts, sql: "SELECT name, email, tenant FROM demo.customers"}
YAML
"$CARGO_TARGET_DIR/release/engine" --config "$STATE/engine.yaml" --dangerous-dev-principal bench 2>/dev/null &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$STATE"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:28291/health >/dev/null && break; sleep 0.2; done
python3 - <<'PY'
import http.client, statistics, time
conn = http.client.HTTPConnection("127.0.0.1", 28291)
def one(sql, report):
    headers = {"x-portcullis-report": "1"} if report else {}
    started = time.perf_counter()
    conn.request("POST", "/v1/sql", body=sql, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
    assert ("x-portcullis-access" in response.headers) == report
    return time.perf_counter() - started
print("without      with report   cost")
for sql in ["SELECT name, email FROM demo.customers WHERE tenant = 'acme'",
            "SELECT c.name, sum(o.amount) AS total FROM demo.customers c JOIN demo.orders o ON c.customer_id = o.customer_id GROUP BY c.name",
            "SELECT name FROM contacts WHERE email LIKE '%example'"]:
    for _ in range(200):
        one(sql, False), one(sql, True)
    plain, reported = [], []
    for _ in range(3000):
        plain.append(one(sql, False))
        reported.append(one(sql, True))
    a, b = statistics.median(plain) * 1e6, statistics.median(reported) * 1e6
    print(f"{a:7.0f} us   {b:7.0f} us   +{b - a:4.0f} us ({b / a:.3f})   {sql[:70]}")
PY
