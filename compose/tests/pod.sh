#!/usr/bin/env bash
# The sidecar pod from the Kubernetes manifests, run with `podman kube play`: the chart
# rendered with the plain-sidecar value (podman 4.3 runs init containers to completion, so
# not the native sidecar) and this image by digest; Secrets and the policy ConfigMap laid
# out as the kubelet projects them. A real curl in the pod's network namespace (the pod has
# only loopback: --network none) checks the principal and a tenant's rows; then a Secret
# rotation and a ConfigMap change are made the kubelet's way and must be picked up.
#
#   compose/tests/pod.sh IMAGE GATEWAY_BIN     (the host gateway binary makes the dev PKI)
#   KEEP_POD=1 leaves the pod running to look at (podman kube down to remove it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="$1"
gateway="$2"
: "${CONTAINERS_CONF:?set CONTAINERS_CONF (runtime = runc and lower ulimits; see .ci/containers.conf)}"

work="$(mktemp -d)"
pod_yaml="$work/pod.yaml"
cleanup() {
  podman kube down "$pod_yaml" >/dev/null 2>&1 || true
  rm -rf "$work"
}
[ -n "${KEEP_POD:-}" ] || trap cleanup EXIT
fail() { echo "pod.sh: $*" >&2; podman logs "${gw:-none}" 2>&1 | tail -n 20 >&2 || true; exit 1; }

# project DIR VERSION NAME=SOURCE...: the kubelet's layout and atomic `..data` swap.
project() {
  local dir="$1" version="$2"
  shift 2
  mkdir -p "$dir/..$version"
  for pair in "$@"; do
    cp "${pair#*=}" "$dir/..$version/${pair%%=*}"
    [ -L "$dir/${pair%%=*}" ] || ln -s "..data/${pair%%=*}" "$dir/${pair%%=*}"
  done
  # Mode 0440, group = the pod's fsGroup, as the chart's defaultMode and fsGroup give.
  chgrp -R 65534 "$dir" && chmod 0750 "$dir" "$dir/..$version" && chmod 0440 "$dir/..$version"/*
  ln -s "..$version" "$dir/..data_tmp"
  mv -T "$dir/..data_tmp" "$dir/..data"
}

"$gateway" up --state-dir "$work/state" --init-only >/dev/null
state="$work/state"
vol="$work/volumes"
digest="$(podman image inspect --format '{{.Digest}}' "$image")"
repository="${image%:*}"
# Your data, as docs/deployment.md sets it: the engine's file (the demo's views and a dataset
# on the data volume) as engine.config, mounted into both containers, and a data claim.
python3 - "$root/engine/demo/engine.yaml" "$work/values-pod.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["datasets"] = [{"name": "acme.invoices", "path": "/data/invoices.csv", "tenant": "acme"}]
yaml.safe_dump({"engine": {"config": config}, "data": {"existingClaim": "pod-data"}}, open(sys.argv[2], "w"))
PY
python3 "$root/compose/k8s/render.py" --no-native-sidecar --values "$work/values-pod.yaml" \
  --set-image "$repository@$digest" -o "$work/rendered.yaml"
python3 "$here/pod_manifest.py" "$work/rendered.yaml" "$vol" "$pod_yaml" "$work/configmaps"
grep -q "image: $repository@$digest" "$pod_yaml" || fail "the manifest does not pull the image by digest"

project "$vol/gateway-config" v1 "gateway.yaml=$work/configmaps/gateway-config/gateway.yaml"
project "$vol/tls" v1 "tls.crt=$state/tls/server.pem" "tls.key=$state/tls/server-key.pem"
project "$vol/client-ca" v1 "ca.crt=$state/tls/ca.pem"
project "$vol/stamp-key" v1 "stamp-key.pem=$state/stamp-key.pem"
project "$vol/stamp-public" v1 "stamp.pub.pem=$state/stamp-pub.pem"
project "$vol/api-keys" v1 "api-keys.yaml=$state/api-keys.yaml"
policy_files=()
for f in "$root"/policies/*.cedar "$root/policies/schema.cedarschema" "$root/policies/entities.json"; do
  policy_files+=("$(basename "$f")=$f")
done
project "$vol/policies" v1 "${policy_files[@]}"
project "$vol/engine-config" v1 "engine.yaml=$work/configmaps/engine-config/engine.yaml"
mkdir -p "$vol/data"
printf 'invoice_id,amount\n1,10\n2,20\n' >"$vol/data/invoices.csv"
printf 'payment_id,amount\n1,5\n2,6\n3,7\n' >"$vol/data/payments.csv"
chmod 0755 "$vol/data" && chmod 0644 "$vol/data"/*.csv

# (Without systemd, podman cannot schedule the probes itself: it says so, and the test runs them.)
podman kube play --network none "$pod_yaml" >"$work/play.log" 2>&1 || { cat "$work/play.log" >&2; exit 1; }
pod_name="$(podman pod ps --format '{{.Name}}' | grep '^portcullis-pod' | head -n1)"
gw="$pod_name-gateway"
for _ in $(seq 60); do
  if podman exec "$gw" /usr/local/bin/gateway health --url http://127.0.0.1:9090/readyz >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 1
done
[ "${ready:-0}" = 1 ] || fail "the gateway did not become ready (its exec probe never passed)"
echo "ok: pod ready (exec probe: gateway health --url http://127.0.0.1:9090/readyz)"

# Both containers run hardened.
for c in gateway engine; do
  read -r ro user caps <<<"$(podman inspect "$pod_name-$c" --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{len .EffectiveCaps}}')"
  if [ "$ro" != true ] || [ "${user%%:*}" != 65534 ] || [ "$caps" != 0 ]; then
    fail "$c: read-only root $ro, user $user, $caps capabilities (want true, 65534, 0)"
  fi
  podman exec "$pod_name-$c" /bin/sh -c true >/dev/null 2>&1 && fail "$c: the image has a shell"
done
echo "ok: gateway and engine read-only, UID 65534, no capabilities, no shell"
# podman 4.3 wraps exec probes in /bin/sh (which scratch has not), so run each probe as
# the manifest states it.
for c in gateway engine; do
  for probe in livenessProbe readinessProbe; do
    mapfile -t command < <(python3 -c 'import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]
c = next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == sys.argv[2])
print("\n".join(c[sys.argv[3]]["exec"]["command"]))' "$pod_yaml" "$c" "$probe")
    podman exec "$pod_name-$c" "${command[@]}" >/dev/null || fail "$c $probe failed: ${command[*]}"
  done
done
echo "ok: liveness and readiness probes of both containers pass"

# The engine's memory pool is half its container's memory limit (the downward API's
# PORTCULLIS_MEMORY_LIMIT_BYTES), whatever the host has.
want="$(python3 -c 'import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]
limit = next(c for c in spec["containers"] if c["name"] == "engine")["resources"]["limits"]["memory"]
units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
print(int(limit[:-2]) * units[limit[-2:]] // 2)' "$pod_yaml")"
podman logs "$pod_name-engine" 2>&1 | grep -q "memory_pool_bytes=$want" \
  || fail "the engine's pool is not half its container's limit ($want): $(podman logs "$pod_name-engine" 2>&1 | grep memory_pool)"
echo "ok: the engine's memory pool is $want bytes, half its container's limit"

pid="$(podman inspect --format '{{.State.Pid}}' "$(podman pod inspect "$pod_name" --format '{{.InfraContainerID}}')")"
inpod() { nsenter -t "$pid" -n "$@"; }
acme="$(cat "$state/dev-api-key-acme")"
sql() { # KEY SQL -> body, then the status on the last line
  inpod curl -sS --cacert "$state/tls/ca.pem" -H "X-API-Key: $1" -w '\n%{http_code}' \
    https://localhost:8090/v1/sql -d "$2"
}
out="$(sql "$acme" 'SELECT order_id, tenant FROM my_orders')"
if [ "$(tail -n1 <<<"$out")" != 200 ] || ! grep -q '"tenant":"acme"' <<<"$out" || grep -q globex <<<"$out"; then
  fail "acme's rows through the pod: $out"
fi
out="$(sql "$acme" 'SELECT current_principal() AS p FROM whoami')"
grep -q '"p":"dev-acme"' <<<"$out" || fail "current_principal() for the acme key: $out"
out="$(inpod curl -sS --cacert "$state/tls/ca.pem" --cert "$state/tls/client.pem" --key "$state/tls/client-key.pem" \
  https://localhost:8090/v1/sql -d 'SELECT current_principal() AS p FROM whoami')"
grep -q 'spiffe://portcullis.dev/workload/dev-client' <<<"$out" || fail "current_principal() over mTLS: $out"
out="$(sql "$acme" 'SELECT * FROM globex.orders')"
[ "$(tail -n1 <<<"$out")" = 403 ] || fail "acme reading globex.orders: $out"
out="$(sql "pcl_$(printf 'A%.0s' $(seq 43))" 'SELECT 1')"
[ "$(tail -n1 <<<"$out")" = 401 ] || fail "an unknown API key: $out"
echo "ok: curl in the pod: current_principal() = dev-acme / the SPIFFE ID, acme's rows only, 403, 401"

# Secret rotation, the kubelet's way: a new server certificate behind a swapped ..data.
serial() {
  inpod openssl s_client -connect 127.0.0.1:8090 -servername localhost </dev/null 2>/dev/null \
    | openssl x509 -noout -serial
}
before="$(serial)"
"$gateway" tls add rotated --dir "$state/tls" --host localhost --ip 127.0.0.1 --days 30 >/dev/null
project "$vol/tls" v2 "tls.crt=$state/tls/rotated.pem" "tls.key=$state/tls/rotated-key.pem"
for _ in $(seq 50); do
  [ "$(serial)" != "$before" ] && break
  sleep 0.2
done
[ "$(serial)" != "$before" ] || fail "the rotated Secret was not picked up"
out="$(sql "$acme" 'SELECT 1 AS one')"
[ "$(tail -n1 <<<"$out")" = 200 ] || fail "after the rotation: $out"
echo "ok: Secret rotation (..data swap) picked up without a restart"

# ConfigMap update: a new policy file arrives by the same swap and is enforced.
out="$(sql "$acme" 'SELECT * FROM acme.orders')"
[ "$(tail -n1 <<<"$out")" = 200 ] || fail "acme reading acme.orders before the change: $out"
printf '@id("freeze-acme-orders")\nforbid(principal, action == Action::"select", resource == Dataset::"datafusion.acme.orders");\n' \
  >"$work/99-freeze.cedar"
project "$vol/policies" v2 "${policy_files[@]}" "99-freeze.cedar=$work/99-freeze.cedar"
for _ in $(seq 50); do
  out="$(sql "$acme" 'SELECT * FROM acme.orders')"
  [ "$(tail -n1 <<<"$out")" = 403 ] && break
  sleep 0.2
done
[ "$(tail -n1 <<<"$out")" = 403 ] || fail "the updated policy ConfigMap was not picked up: $out"
echo "ok: policy ConfigMap update (..data swap) hot-reloaded"

# Your data: a dataset on the data volume, served under the tenant policy; then a dataset
# added to the engine's ConfigMap (the kubelet's ..data swap) is served through the gateway
# within seconds with no restart, and a broken ConfigMap keeps the old set.
out="$(sql "$acme" 'SELECT sum(amount) AS total FROM acme.invoices')"
{ [ "$(tail -n1 <<<"$out")" = 200 ] && grep -q '"total":30' <<<"$out"; } || fail "acme.invoices from the data volume: $out"
out="$(sql "$acme" 'SELECT count(*) AS n FROM acme.payments')"
[ "$(tail -n1 <<<"$out")" = 404 ] || fail "acme.payments before it is added: $out"
python3 - "$work/configmaps/engine-config/engine.yaml" "$work/engine-v2.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["datasets"].append({"name": "acme.payments", "path": "/data/payments.csv", "tenant": "acme"})
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY
project "$vol/engine-config" v2 "engine.yaml=$work/engine-v2.yaml"
started=$SECONDS
for _ in $(seq 100); do
  out="$(sql "$acme" 'SELECT count(*) AS n FROM acme.payments')"
  [ "$(tail -n1 <<<"$out")" = 200 ] && break
  sleep 0.2
done
{ [ "$(tail -n1 <<<"$out")" = 200 ] && grep -q '"n":3' <<<"$out"; } || fail "the dataset added to the engine's ConfigMap was not served: $out"
echo "ok: a dataset on the data volume served; one added to the engine's ConfigMap (..data swap) served through the gateway in $((SECONDS - started)) s, no restart"
printf 'datasets: [\n' >"$work/engine-broken.yaml"
project "$vol/engine-config" v3 "engine.yaml=$work/engine-broken.yaml"
for _ in $(seq 50); do
  podman logs "$pod_name-engine" 2>&1 | grep -q 'reload rejected' && break
  sleep 0.2
done
podman logs "$pod_name-engine" 2>&1 | grep -q 'reload rejected' || fail "the engine did not refuse the broken ConfigMap"
out="$(sql "$acme" 'SELECT count(*) AS n FROM acme.payments')"
[ "$(tail -n1 <<<"$out")" = 200 ] || fail "after a broken engine ConfigMap: $out"
echo "ok: a broken engine ConfigMap is refused (logged) and the old set keeps serving"

for c in gateway engine; do
  restarts="$(podman inspect "$pod_name-$c" --format '{{.RestartCount}}')"
  [ "$restarts" = 0 ] || fail "$c restarted $restarts times"
done
echo "ok: no container restarted"
