#!/usr/bin/env bash
# `docker compose up` of compose/docker-compose.yml through podman's Docker-compatible socket
# (docker-compose from PyPI as the client): the one-shot secrets job, the engine and the
# gateway sharing one network namespace, both healthy; a real curl in that namespace gets a
# tenant's rows with the generated API key. The only change to the file is
# compose.no-network.yaml (no bridge network here).
#
#   compose/tests/compose.sh IMAGE
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
: "${CONTAINERS_CONF:?set CONTAINERS_CONF (see .ci/containers.conf)}"
export PORTCULLIS_IMAGE="$1"
work="$(mktemp -d)"
export DOCKER_HOST="unix://$work/podman.sock"
project="portcullis-test-$$"
compose() { docker-compose -f "$root/compose/docker-compose.yml" -f "$here/compose.no-network.yaml" -p "$project" "$@"; }
service_pid=""
driver_pid=""
cleanup() {
  [ -z "$driver_pid" ] || kill "$driver_pid" 2>/dev/null || true
  compose down -v >/dev/null 2>&1 || true
  [ -z "$service_pid" ] || kill "$service_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "compose.sh: $*" >&2; compose logs --tail 20 >&2 2>&1 || true; exit 1; }

podman system service --time=0 "$DOCKER_HOST" >"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 50); do
  [ -S "$work/podman.sock" ] && break
  sleep 0.1
done
# Without systemd podman cannot time healthchecks itself; run them as its timer would.
(
  while sleep 1; do
    for c in engine gateway; do podman healthcheck run "$project-$c-1" >/dev/null 2>&1 || true; done
  done
) &
driver_pid=$!

compose up -d --wait --wait-timeout 90 >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up did not become healthy"; }
echo "ok: docker compose up (podman socket): secrets job done, engine and gateway healthy"
for c in engine gateway; do
  read -r ro user caps <<<"$(podman inspect "$project-$c-1" --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{len .EffectiveCaps}}')"
  if [ "$ro" != true ] || [ "${user%%:*}" != 65534 ] || [ "$caps" != 0 ]; then
    fail "$c: read-only root $ro, user $user, $caps capabilities"
  fi
done
echo "ok: engine and gateway read-only, UID 65534, no capabilities"

state="$(podman volume inspect "${project}_state" --format '{{.Mountpoint}}')"
pid="$(podman inspect --format '{{.State.Pid}}' "$project-engine-1")"
out="$(nsenter -t "$pid" -n curl -sS --cacert "$state/tls/ca.pem" -H "X-API-Key: $(cat "$state/dev-api-key-globex")" \
  -w '\n%{http_code}' https://localhost:8090/v1/sql -d 'SELECT order_id, tenant FROM my_orders')"
if [ "$(tail -n1 <<<"$out")" != 200 ] || ! grep -q '"tenant":"globex"' <<<"$out" || grep -q acme <<<"$out"; then
  fail "globex's rows through the compose stack: $out"
fi
echo "ok: curl in the stack's namespace: globex's key gets globex's rows only"
