#!/usr/bin/env bash
# Pre-deployment checks for a Portcullis pod, one line each (✅ / ❌ with the command that
# fixes a failure). Exit 0 when every check passes, 1 otherwise, 2 on bad usage.
#
#   compose/k8s/validate.sh -n portcullis                 # against the live cluster (kubectl)
#   compose/k8s/validate.sh -n portcullis --file x.yaml   # offline, against rendered manifests
#
# Options: -n NAMESPACE (default portcullis), -d DEPLOYMENT (default portcullis).
set -uo pipefail

ns=portcullis
deployment=portcullis
file=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) ns="$2"; shift 2 ;;
    -d|--deployment) deployment="$2"; shift 2 ;;
    -f|--file) file="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "validate.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "$file" ] && [ ! -r "$file" ]; then
  echo "validate.sh: cannot read $file" >&2
  exit 2
fi

# Prints BODY (a Go template over one object) for every object of KIND in the namespace:
# from the cluster, or from the file with `kubectl patch --local` (no cluster needed).
each() {
  local kind="$1" body="$2"
  if [ -n "$file" ]; then
    kubectl patch --local -f "$file" --type merge -p '{}' \
      -o go-template="{{if and (eq .kind \"$kind\") (or (eq .kind \"Namespace\") (eq (or .metadata.namespace \"\") \"$ns\"))}}$body{{end}}"
  elif [ "$kind" = Namespace ]; then
    kubectl get namespace "$ns" -o go-template="$body"
  else
    kubectl get "$kind" -n "$ns" -o go-template="{{range .items}}$body{{end}}"
  fi
}

failures=0
pass() { printf '✅ %s\n' "$1"; }
fail() { printf '❌ %s\n   fix: %s\n' "$1" "$2"; failures=$((failures + 1)); }

# 1. Pod Security Standards on the namespace.
labels=$(each Namespace "{{if eq .metadata.name \"$ns\"}}{{range \$k, \$v := .metadata.labels}}{{\$k}}={{\$v}}
{{end}}{{end}}" 2>/dev/null)
pss_ok=1
for mode in enforce audit warn; do
  grep -qx "pod-security.kubernetes.io/$mode=restricted" <<<"$labels" || pss_ok=0
  grep -q "^pod-security.kubernetes.io/$mode-version=v1\.[0-9]*$" <<<"$labels" || pss_ok=0
done
if [ "$pss_ok" = 1 ]; then
  pass "namespace $ns enforces, audits and warns Pod Security Standards restricted (versioned)"
else
  fail "namespace $ns is not labelled restricted for enforce, audit and warn with a version" \
    "kubectl label namespace $ns --overwrite pod-security.kubernetes.io/{enforce,audit,warn}=restricted pod-security.kubernetes.io/{enforce,audit,warn}-version=v1.32"
fi

# The Deployment's pod template, one field per line; a container as name|image|security|limit.
container='{{.name}}|{{.image}}|{{with .securityContext}}{{.runAsNonRoot}}|{{.runAsUser}}|{{.allowPrivilegeEscalation}}|{{.readOnlyRootFilesystem}}|{{.privileged}}|{{with .capabilities}}{{range .drop}}{{.}} {{end}}{{end}}{{end}}|{{with .resources}}{{with .limits}}{{.memory}}{{end}}{{end}}'
pod=$(each Deployment "{{if eq .metadata.name \"$deployment\"}}{{with .spec.template}}labels={{range \$k, \$v := .metadata.labels}}{{\$k}}={{\$v}},{{end}}
nonroot={{.spec.securityContext.runAsNonRoot}}
seccomp={{with .spec.securityContext.seccompProfile}}{{.type}}{{end}}
automount={{.spec.automountServiceAccountToken}}
host={{.spec.hostNetwork}}{{.spec.hostPID}}{{.spec.hostIPC}}
sa={{.spec.serviceAccountName}}
{{range .spec.volumes}}volume={{.name}}:{{if .hostPath}}hostPath{{else}}ok{{end}}
{{end}}{{range .spec.initContainers}}container=$container
{{end}}{{range .spec.containers}}container=$container
{{end}}{{end}}{{end}}" 2>/dev/null)
if ! grep -q '^labels=' <<<"$pod"; then
  fail "Deployment $deployment not found in namespace $ns" "kubectl apply -f compose/k8s/portcullis.yaml"
  echo "$failures check(s) failed"
  exit 1
fi
field() { sed -n "s/^$1=//p" <<<"$pod" | head -n1; }

# 2. Pod security context.
if [ "$(field nonroot)" = true ] && [ "$(field seccomp)" = RuntimeDefault ] && [ "$(field automount)" = false ] \
  && ! grep -q true <<<"$(field host)"; then
  pass "pod: runAsNonRoot, seccomp RuntimeDefault, no service account token, no host namespaces"
else
  fail "pod security context of $deployment is missing runAsNonRoot, seccompProfile RuntimeDefault or automountServiceAccountToken: false (or shares a host namespace)" \
    "kubectl patch deployment $deployment -n $ns --type merge -p '{\"spec\":{\"template\":{\"spec\":{\"automountServiceAccountToken\":false,\"hostNetwork\":false,\"securityContext\":{\"runAsNonRoot\":true,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}}}}}}'"
fi

# 3. Every container hardened; 4. images by digest; 5. limits.
digest_bad=""
limits_bad=""
while IFS='|' read -r name image nonroot user ape rorf priv drop limit; do
  [ -n "$name" ] || continue
  if [ "$nonroot" = true ] && [ "$user" != 0 ] && [ "$user" != "<no value>" ] && [ "$ape" = false ] \
    && [ "$rorf" = true ] && [ "$priv" != true ] && grep -qw ALL <<<"$drop"; then
    pass "container $name: non-root (UID $user), read-only root, no privilege escalation, capabilities dropped"
  else
    fail "container $name: needs runAsNonRoot, runAsUser 65534, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities.drop [ALL]" \
      "set them in the chart (compose/helm/portcullis) or: kubectl edit deployment $deployment -n $ns"
  fi
  # A digest, and not the all-zero placeholder (which pins nothing anyone can pull).
  if ! grep -Eq '@sha256:[0-9a-f]{64}$' <<<"$image" || grep -Eq '@sha256:0{64}$' <<<"$image"; then
    digest_bad="$digest_bad $name=$image"
  fi
  { [ -n "$limit" ] && [ "$limit" != "<no value>" ]; } || limits_bad="$limits_bad $name"
done < <(sed -n 's/^container=//p' <<<"$pod")
if [ -z "$digest_bad" ]; then
  pass "every image is pinned by digest"
else
  fail "images not pinned by a real digest (a tag, a placeholder or all zeros):$digest_bad" \
    "set your image's digest (docs/deployment.md, \"Your image\"): helm upgrade ... --set image.digest=sha256:<digest>, or for the plain manifests sed 's|ghcr.io/portcullis-dev/portcullis@sha256:SET-YOUR-IMAGE-DIGEST|REGISTRY/portcullis@sha256:<digest>|'"
fi
if [ -z "$limits_bad" ]; then
  pass "every container has a memory limit"
else
  fail "containers without a memory limit:$limits_bad" "set gateway.resources / engine.resources in the chart values"
fi
if grep -q '^volume=.*:hostPath$' <<<"$pod"; then
  fail "hostPath volumes: $(sed -n 's/^volume=\(.*\):hostPath$/\1/p' <<<"$pod" | tr '\n' ' ')" \
    "use a Secret, ConfigMap, emptyDir or CSI volume (the SPIFFE CSI driver for SVIDs: values-spiffe.yaml)"
else
  pass "no hostPath volume"
fi

# 6. A NetworkPolicy selects the pod for ingress and egress.
pod_labels=",$(field labels)"
selected=0
while IFS=' ' read -r selector types; do
  ok=1
  IFS=',' read -ra pairs <<<"$selector"
  for pair in "${pairs[@]}"; do
    [ -z "$pair" ] || [[ "$pod_labels" == *",$pair,"* ]] || ok=0
  done
  if [ "$ok" = 1 ] && [[ "$types" == *Ingress* ]] && [[ "$types" == *Egress* ]]; then selected=1; fi
done < <(each NetworkPolicy "{{with .spec.podSelector}}{{range \$k, \$v := .matchLabels}}{{\$k}}={{\$v}},{{end}}{{end}} {{range .spec.policyTypes}}{{.}}{{end}}
" 2>/dev/null)
if [ "$selected" = 1 ]; then
  pass "a NetworkPolicy selects the pod for Ingress and Egress"
else
  fail "no NetworkPolicy selects the $deployment pod for both Ingress and Egress" \
    "kubectl apply -f compose/k8s/portcullis.yaml (NetworkPolicies default-deny and $deployment)"
fi

# 7. No secret in a ConfigMap (private keys, Portcullis API keys, JWTs, literal credentials).
# shellcheck disable=SC2016 # the patterns are literal
leaks=$(each ConfigMap "{{\$n := .metadata.name}}{{range \$k, \$v := .data}}{{\$v}}
{{end}}" 2>/dev/null | grep -En -- '-----BEGIN [A-Z ]*PRIVATE KEY-----|pcl_[A-Za-z0-9_-]{43}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.|(client_secret|password|token): *[^ ${]' | cut -c1-60)
names=$(each ConfigMap "{{.metadata.name}} " 2>/dev/null)
if [ -z "$leaks" ]; then
  pass "no secret value in ConfigMaps ($names)"
else
  fail "secret-looking values in ConfigMaps ($names): $(head -n1 <<<"$leaks")…" \
    "move it into a Secret (kubectl create secret generic ... --from-file=...) and reference it as a file or \${file:...}"
fi

# 8. Least privilege: nothing binds a role to the pod's service account.
sa=$(field sa)
bound=$(each RoleBinding "{{range .subjects}}{{if eq .name \"$sa\"}}{{.name}} {{end}}{{end}}" 2>/dev/null)
if [ -z "$bound" ]; then
  pass "no RoleBinding grants the service account $sa anything (the pod calls no Kubernetes API)"
else
  fail "RoleBindings grant $sa permissions it does not need" "kubectl get rolebinding -n $ns -o wide; kubectl delete rolebinding -n $ns NAME"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
