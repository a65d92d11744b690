#!/usr/bin/env bash
# Offline checks of every deployment file: the chart renders the plain manifests; the
# manifests (default, hardened, SPIFFE) pass schema validation, the Pod Security Standards
# restricted compliance check and trivy's misconfiguration rules, and validate.sh; the
# compose file, the Containerfile, the alert rules and the shell scripts pass their linters.
# Every check is first shown to fail on a planted bad input.
#
#   compose/tests/check-files.sh [GATEWAY_BIN]   (with the binary: docs/deployment.md's kubectl commands too)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "check-files.sh: $*" >&2; exit 1; }
must_fail() { # WHAT COMMAND...
  local what="$1"
  shift
  if "$@" >"$work/planted.log" 2>&1; then fail "$what passed a planted bad input"; fi
}

# Kubernetes: the checks one manifest must pass (each prints why it fails).
# (No schema exists offline for the Prometheus Operator's CRDs: those two kinds are skipped.)
schema() { kubernetes-validate --kubernetes-version 1.32.0 --strict --quiet --no-warn "$1"; }
pss() {
  local dir
  dir="$(mktemp -d -p "$work")"
  cp "$1" "$dir/"
  trivy config --quiet --skip-check-update --compliance k8s-pss-restricted-0.1 --format json "$dir" >"$dir/pss.json"
  python3 - "$dir/pss.json" <<'PY'
import json, sys
failed = [f"{c['ID']} {c['Name']} ({m['ID']})" for c in json.load(open(sys.argv[1]))["Results"]
          for r in c.get("Results") or [] for m in r.get("Misconfigurations") or [] if m["Status"] == "FAIL"]
if failed:
    sys.exit("PSS restricted: " + "; ".join(failed))
PY
}
misconfig() {
  local dir
  dir="$(mktemp -d -p "$work")"
  cp "$1" "$dir/"
  trivy config --quiet --skip-check-update --ignorefile compose/k8s/.trivyignore --severity MEDIUM,HIGH,CRITICAL \
    --exit-code 1 "$dir"
}
offline_validate() { compose/k8s/validate.sh -n portcullis -f "$1"; }

echo "== chart and plain manifests"
python3 compose/k8s/render.py --check
# The plain manifests name no real image (sha256:SET-YOUR-IMAGE-DIGEST): validate.sh refuses
# them as shipped, and passes them once pinned by docs/deployment.md's own sed command.
stand_in="sha256:$(printf '%s' portcullis | sha256sum | cut -c1-64)"
pin_command="$(grep -E '^sed "s\|ghcr.io/portcullis-dev/portcullis@sha256:SET-YOUR-IMAGE-DIGEST\|' docs/deployment.md)"
[ -n "$pin_command" ] || fail "docs/deployment.md has no sed command pinning the plain manifests' image"
for manifest in compose/k8s/portcullis.yaml compose/k8s/portcullis-hardened.yaml compose/k8s/portcullis-spiffe.yaml; do
  must_fail "validate.sh on the image placeholder" offline_validate "$manifest"
  grep -q '❌ images not pinned by a real digest.*SET-YOUR-IMAGE-DIGEST' "$work/planted.log" || fail "$manifest: validate.sh failed for another reason"
  pin="$work/pin-$(basename "$manifest" .yaml)"
  mkdir -p "$pin"
  ln -s "$root/compose" "$pin/compose"
  echo "$stand_in" >"$pin/digest"
  (cd "$pin" && eval "${pin_command//compose\/k8s\/portcullis.yaml/$manifest}") || fail "$pin_command"
  pinned="$pin/portcullis.yaml"
  # The SPIFFE variant's helper image is the user's to pin as well.
  sed -i "s|ghcr.io/spiffe/spiffe-helper@sha256:SET-YOUR-IMAGE-DIGEST|ghcr.io/spiffe/spiffe-helper@$stand_in|" "$pinned"
  schema "$pinned" || fail "$manifest: schema"
  pss "$pinned" || fail "$manifest: Pod Security Standards restricted"
  misconfig "$pinned" >"$work/misconfig.log" || { cat "$work/misconfig.log" >&2; fail "$manifest: trivy config"; }
  offline_validate "$pinned" >"$work/validate.log" || { cat "$work/validate.log" >&2; fail "$manifest: validate.sh"; }
  echo "ok: $manifest: refused as shipped (image placeholder); pinned: schema, PSS restricted, trivy config, validate.sh ($(grep -c '✅' "$work/validate.log") ✅)"
done
# What cannot work does not render: no digest, the all-zero digest, a value of the wrong
# type (values.schema.json), a misspelt value, two data sources; validate.sh refuses zeros.
image="--set-image=ghcr.io/portcullis-dev/portcullis@$stand_in"
must_fail "render without a digest" python3 compose/k8s/render.py -o "$work/x.yaml"
grep -q 'a digest is required' "$work/planted.log" || fail "render without a digest failed for another reason"
zeros="sha256:$(printf '0%.0s' $(seq 64))"
must_fail "render with the all-zero digest" python3 compose/k8s/render.py --set-image "ghcr.io/portcullis-dev/portcullis@$zeros" -o "$work/x.yaml"
grep -q 'all-zero placeholder' "$work/planted.log" || fail "render with zeros failed for another reason"
sed "s|@$stand_in|@$zeros|" "$work/pin-portcullis/portcullis.yaml" >"$work/zeros.yaml"
must_fail "validate.sh on the all-zero digest" offline_validate "$work/zeros.yaml"
grep -q '❌ images not pinned by a real digest' "$work/planted.log" || fail "validate.sh on zeros failed for another reason"
for bad in 'replicas: two' 'replicaz: 2' 'data: {existingClaim: a, csi: {driver: b}}' 'engine: {extraArgs: --x}'; do
  printf '%s\n' "$bad" >"$work/bad-values.yaml"
  must_fail "render with $bad" python3 compose/k8s/render.py --values "$work/bad-values.yaml" "$image" -o "$work/x.yaml"
  grep -Eq "want integer|additional properties 'replicaz'|at most one of|want array" "$work/planted.log" \
    || { cat "$work/planted.log" >&2; fail "render with $bad failed for another reason"; }
done
echo "ok: no render without a digest or with zeros, nor with a wrong value (values.schema.json); validate.sh refuses zeros"
# The engine's memory pool is sized from its container's limit: the downward API passes it.
memory_env() {
  python3 - "$1" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
engine = next(c for c in docs[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "engine")
env = {e["name"]: e.get("valueFrom", {}) for e in engine.get("env", [])}
field = env.get("PORTCULLIS_MEMORY_LIMIT_BYTES", {}).get("resourceFieldRef", {})
sys.exit(0 if field == {"containerName": "engine", "resource": "limits.memory"} else 1)
PY
}
sed 's/PORTCULLIS_MEMORY_LIMIT_BYTES/PORTCULLIS_UNREAD/' "$work/pin-portcullis/portcullis.yaml" >"$work/no-memory-env.yaml"
must_fail "the memory check on a manifest without the downward API env" memory_env "$work/no-memory-env.yaml"
for manifest in compose/k8s/portcullis.yaml compose/k8s/portcullis-hardened.yaml compose/k8s/portcullis-spiffe.yaml; do
  memory_env "$manifest" || fail "$manifest: the engine is not given its container's memory limit"
done
echo "ok: the engine gets its container's memory limit (downward API) in every manifest"
# Your data: the engine's file in both containers (authorization.engine_config set), a data
# claim read-only, S3 credentials by Secret, the conventional pod values, the passthrough
# Ingress and Gateway API routes; still restricted, and NOTES.txt says what to do next.
python3 compose/k8s/render.py --values compose/tests/values-your-data.yaml "$image" -o "$work/your-data.yaml"
schema "$work/your-data.yaml" || fail "values-your-data.yaml: schema"
pss "$work/your-data.yaml" || fail "values-your-data.yaml: PSS restricted"
offline_validate "$work/your-data.yaml" >/dev/null || fail "values-your-data.yaml: validate.sh"
must_fail "your_data.py on a render without your data" python3 compose/tests/your_data.py "$work/pin-portcullis/portcullis.yaml"
python3 compose/tests/your_data.py "$work/your-data.yaml" || fail "values-your-data.yaml: what it renders"
python3 compose/k8s/render.py --values compose/tests/values-your-data.yaml "$image" --notes >"$work/notes.txt"
if ! { grep -q 'rollout status deployment/portcullis' "$work/notes.txt" \
  && grep -q 'Datasets come from engine.config (2 listed)' "$work/notes.txt"; }; then
  cat "$work/notes.txt" >&2
  fail "NOTES.txt"
fi
echo "ok: your data overlay (engine config in both containers, data claim, S3 Secret, pod values, passthrough routes), NOTES.txt"
# The plain-container sidecar variant (older clusters) too.
python3 compose/k8s/render.py --no-native-sidecar "$image" -o "$work/plain-sidecar.yaml"
schema "$work/plain-sidecar.yaml" || fail "the plain-sidecar variant: schema"
pss "$work/plain-sidecar.yaml" || fail "the plain-sidecar variant: PSS restricted"
offline_validate "$work/plain-sidecar.yaml" >/dev/null || fail "the plain-sidecar variant: validate.sh"
echo "ok: plain-container sidecar variant"
# The browser sign-in overlay (values-browser.yaml): its Secret mounted, still restricted.
python3 compose/k8s/render.py --values compose/helm/portcullis/values-browser.yaml "$image" -o "$work/browser-overlay.yaml"
schema "$work/browser-overlay.yaml" || fail "values-browser.yaml: schema"
pss "$work/browser-overlay.yaml" || fail "values-browser.yaml: PSS restricted"
offline_validate "$work/browser-overlay.yaml" >/dev/null || fail "values-browser.yaml: validate.sh (no secret in the ConfigMap)"
grep -q 'mountPath: /var/run/secrets/portcullis/browser' "$work/browser-overlay.yaml" || fail "values-browser.yaml: the Secret is not mounted"
echo "ok: browser sign-in overlay (values-browser.yaml)"
# The shadow policy overlay (values-shadow.yaml): its ConfigMap mounted, still restricted.
python3 compose/k8s/render.py --values compose/helm/portcullis/values-shadow.yaml "$image" -o "$work/shadow-overlay.yaml"
schema "$work/shadow-overlay.yaml" || fail "values-shadow.yaml: schema"
pss "$work/shadow-overlay.yaml" || fail "values-shadow.yaml: PSS restricted"
offline_validate "$work/shadow-overlay.yaml" >/dev/null || fail "values-shadow.yaml: validate.sh"
grep -q 'mountPath: /etc/portcullis/shadow-policies' "$work/shadow-overlay.yaml" || fail "values-shadow.yaml: the shadow ConfigMap is not mounted"
grep -q 'name: portcullis-policies-next' "$work/shadow-overlay.yaml" || fail "values-shadow.yaml: the shadow ConfigMap is not a volume"
echo "ok: shadow policy overlay (values-shadow.yaml)"

if [ -n "${1:-}" ]; then
  # The Secret and ConfigMap commands of docs/deployment.md, run as written (client-side dry run, no
  # cluster) from a development state folder, make what the manifest mounts.
  mkdir -p "$work/readme"
  "$1" up --state-dir "$work/readme/.portcullis" --init-only >/dev/null
  cp -r policies "$work/readme/policies"
  # The S3 credentials file the optional portcullis-s3 command reads (made-up keys).
  printf '[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = not-a-secret\n' >"$work/readme/aws-credentials"
  grep -E '^kubectl -n portcullis create (secret|configmap) ' docs/deployment.md >"$work/readme/commands"
  [ "$(wc -l <"$work/readme/commands")" -ge 7 ] || fail "docs/deployment.md's kubectl create commands are missing"
  while read -r command; do
    (cd "$work/readme" && eval "$command --dry-run=client -o yaml") || fail "docs/deployment.md: $command"
    echo "---"
  done <"$work/readme/commands" >"$work/readme/created.yaml"
  schema "$work/readme/created.yaml" || fail "docs/deployment.md kubectl output: schema"
  sed 's/^  stamp-key.pem:/  stamp.pem:/' "$work/readme/created.yaml" >"$work/readme/planted.yaml"
  must_fail "readme_secrets.py" python3 compose/tests/readme_secrets.py compose/k8s/portcullis.yaml "$work/readme/planted.yaml"
  python3 compose/tests/readme_secrets.py compose/k8s/portcullis.yaml "$work/readme/created.yaml"
  # The gateway.yaml each render carries is one the gateway accepts (unknown fields refused).
  for manifest in compose/k8s/portcullis.yaml compose/k8s/portcullis-hardened.yaml compose/k8s/portcullis-spiffe.yaml; do
    python3 compose/tests/chart_config.py "$manifest" "$work/readme/.portcullis" "$PWD/policies" "$work/gateway.yaml"
    "$1" check -c "$work/gateway.yaml" >/dev/null || fail "$manifest: gateway check refuses its gateway.yaml"
  done
  # The browser sign-in overlay: its Secret's files, then the same check.
  "$1" session-key new >"$work/readme/.portcullis/session-key"
  echo development-client-secret >"$work/readme/.portcullis/client-secret"
  python3 compose/k8s/render.py --values compose/helm/portcullis/values-browser.yaml "$image" -o "$work/browser.yaml"
  python3 compose/tests/chart_config.py "$work/browser.yaml" "$work/readme/.portcullis" "$PWD/policies" "$work/gateway.yaml"
  "$1" check -c "$work/gateway.yaml" >/dev/null || fail "values-browser.yaml: gateway check refuses its gateway.yaml"
  # The shadow policy overlay: the same check (authorization.shadow is loaded and validated).
  python3 compose/k8s/render.py --values compose/helm/portcullis/values-shadow.yaml "$image" -o "$work/shadow.yaml"
  python3 compose/tests/chart_config.py "$work/shadow.yaml" "$work/readme/.portcullis" "$PWD/policies" "$work/gateway.yaml"
  grep -q "shadow: $PWD/policies" "$work/gateway.yaml" || fail "values-shadow.yaml: no authorization.shadow in its gateway.yaml"
  "$1" check -c "$work/gateway.yaml" >/dev/null || fail "values-shadow.yaml: gateway check refuses its gateway.yaml"
  sed 's/^  client_auth:/  client_authz:/' "$work/gateway.yaml" >"$work/gateway-bad.yaml"
  must_fail "gateway check" "$1" check -c "$work/gateway-bad.yaml"
  echo "ok: gateway check accepts the gateway.yaml of every render"
fi

echo "== deliberately bad manifests fail the same checks"
python3 compose/tests/bad_manifests.py "$work/pin-portcullis/portcullis.yaml" "$work/bad"
must_fail "a manifest with an unknown field (schema)" schema <(sed 's/^  replicas: 2$/  replicas: 2\n  replicaz: 2/' compose/k8s/portcullis.yaml)
for case in privileged hostpath floating-tag secret-in-configmap; do
  bad="$work/bad/bad-$case.yaml"
  caught=""
  pss "$bad" >/dev/null 2>&1 || caught="$caught PSS-restricted"
  misconfig "$bad" >"$work/bad-$case.trivy" 2>&1 || caught="$caught trivy:$(grep -oE 'KSV-[0-9]+' "$work/bad-$case.trivy" | sort -u | tr '\n' ',' | sed 's/,$//')"
  offline_validate "$bad" >"$work/bad-$case.validate" || caught="$caught validate.sh:\"$(grep -m1 '❌' "$work/bad-$case.validate" | cut -c5-60)…\""
  [ -n "$caught" ] || fail "bad-$case passed every check"
  case "$case" in
    privileged | hostpath) [[ "$caught" == *PSS-restricted* ]] || fail "bad-$case passed the PSS check" ;;
  esac
  [[ "$caught" == *validate.sh* ]] || fail "bad-$case passed validate.sh"
  echo "ok: bad-$case refused by:$caught"
done

echo "== compose, Containerfile, alert rules, shell scripts"
docker-compose -f compose/docker-compose.yml config -q
printf 'services:\n  gateway:\n    image: x\n    read_onl: true\n' >"$work/bad-compose.yml"
must_fail "docker-compose config" docker-compose -f "$work/bad-compose.yml" config -q
echo "ok: compose/docker-compose.yml (docker-compose config -q)"
hadolint compose/image/Containerfile
printf 'FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n' >"$work/Containerfile.bad"
must_fail hadolint hadolint "$work/Containerfile.bad"
echo "ok: compose/image/Containerfile (hadolint)"
rules=compose/helm/portcullis/files/prometheus-alerts.yaml
promtool check rules "$rules" >/dev/null
sed 's/expr: .*gateway_audit_dropped_total.*/expr: sum(rate(gateway_audit_dropped_total[5m]) > /' "$rules" >"$work/bad-rules.yaml"
must_fail promtool promtool check rules "$work/bad-rules.yaml"
echo "ok: $rules (promtool check rules)"
scripts=(.ci/run .ci/test .ci/fuzz .ci/supply-chain .ci/check-audit-secrets compose/image/build.sh compose/k8s/validate.sh compose/tests/*.sh loadtests/*.sh)
shellcheck "${scripts[@]}"
# shellcheck disable=SC2016 # the planted script is literal
printf '#!/bin/sh\nrm -rf $1/\n' >"$work/bad.sh"
must_fail shellcheck shellcheck "$work/bad.sh"
echo "ok: ${#scripts[@]} shell scripts (shellcheck)"
