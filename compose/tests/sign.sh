#!/usr/bin/env bash
# Image and SBOM signing, as far as it can be done here (cosign cannot be installed): the
# image is pushed to a loopback registry (Debian's docker-registry) and signed with skopeo
# (GPG, simple signing); a containers policy that requires that key (signedBy) accepts it
# and refuses an unsigned image and a re-tagged one. The SBOM is signed with minisign and a
# changed SBOM is refused. docs/deployment.md shows the cosign + Kyverno equivalent for clusters.
#
#   compose/tests/sign.sh IMAGE.tar SBOM.json [IMAGE]
# With IMAGE (a local podman image), docs/deployment.md's "Your image" runs too: the push that
# prints the digest, and the sed that pins the plain manifest to it.
set -euo pipefail
archive="$1"
sbom="$2"
image="${3:-}"
work="$(mktemp -d)"
registry_pid=""
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
  gpgconf --homedir "$work/gnupg" --kill all 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "sign.sh: $*" >&2; exit 1; }

# A registry on a free loopback port.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
repo="127.0.0.1:$port/portcullis"

# A signing key (no passphrase: CI only) and where signatures live (a lookaside store).
export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Portcullis CI <ci@portcullis.invalid>' ed25519 sign never 2>/dev/null
fingerprint="$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')"
gpg --batch --export --armor "$fingerprint" >"$work/signing-key.pub.asc" 2>/dev/null
mkdir -p "$work/registries.d" "$work/sigstore"
cat >"$work/registries.d/local.yaml" <<YAML
docker:
  127.0.0.1:$port:
    lookaside: file://$work/sigstore
    lookaside-staging: file://$work/sigstore
YAML
cat >"$work/policy.json" <<JSON
{"default": [{"type": "reject"}],
 "transports": {"docker": {"127.0.0.1:$port": [
   {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "$work/signing-key.pub.asc"}]}}}
JSON
accept_all="$work/insecure-policy.json"
echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$accept_all"
skopeo_() { skopeo --registries.d "$work/registries.d" "$@"; }

skopeo_ copy --quiet --policy "$accept_all" --dest-tls-verify=false --sign-by "$fingerprint" \
  "docker-archive:$archive" "docker://$repo:release"
skopeo_ copy --quiet --policy "$accept_all" --dest-tls-verify=false "docker-archive:$archive" "docker://$repo-unsigned:release"
# Re-tagged: the same manifest under another tag; its signature names :release.
skopeo_ copy --quiet --policy "$accept_all" --src-tls-verify=false --dest-tls-verify=false \
  "docker://$repo:release" "docker://$repo:latest"

pull() { skopeo_ copy --quiet --policy "$work/policy.json" --src-tls-verify=false "docker://$1" "dir:$work/pulled-$2"; }
pull "$repo:release" signed || fail "the signed image was refused by the signedBy policy"
echo "ok: signed image accepted by a signedBy policy"
pull "$repo-unsigned:release" unsigned 2>"$work/unsigned.log" && fail "an unsigned image was accepted"
grep -qi "signature" "$work/unsigned.log" || fail "unsigned image refused for another reason: $(cat "$work/unsigned.log")"
echo "ok: unsigned image refused ($(tail -n1 "$work/unsigned.log" | cut -c1-90))"
pull "$repo:latest" retagged 2>"$work/retagged.log" && fail "a re-tagged image was accepted"
grep -qi "signature\|identity" "$work/retagged.log" || fail "re-tagged image refused for another reason: $(cat "$work/retagged.log")"
echo "ok: re-tagged image refused ($(tail -n1 "$work/retagged.log" | cut -c1-90))"

if [ -n "$image" ]; then
  # docs/deployment.md's push and pin, with this registry for registry.example.com (plain
  # HTTP here: --tls-verify=false).
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  push="$(grep -E '^podman push --digestfile digest ' "$root/docs/deployment.md")"
  pin="$(grep -E '^sed "s\|ghcr.io/portcullis-dev/portcullis@sha256:SET-YOUR-IMAGE-DIGEST\|' "$root/docs/deployment.md")"
  { [ -n "$push" ] && [ -n "$pin" ]; } || fail "docs/deployment.md lost its push or pin command"
  mkdir -p "$work/pin"
  ln -s "$root/compose" "$work/pin/compose"
  push="${push/localhost\/portcullis:0.1.0/$image}"
  (cd "$work/pin" && eval "${push/registry.example.com\/portcullis/$repo} --tls-verify=false") >"$work/push.log" 2>&1 \
    || fail "the documented push: $push: $(cat "$work/push.log")"
  (cd "$work/pin" && eval "${pin/registry.example.com\/portcullis/$repo}") || fail "the documented pin: $pin"
  digest="$(cat "$work/pin/digest")"
  [ "$digest" = "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$repo:0.1.0")" ] \
    || fail "the digest file does not name what the registry holds"
  grep -q "image: $repo@$digest" "$work/pin/portcullis.yaml" || fail "the pinned manifest does not pull $repo@$digest"
  "$root/compose/k8s/validate.sh" -n portcullis -f "$work/pin/portcullis.yaml" >"$work/validate.log" \
    || { cat "$work/validate.log" >&2; fail "validate.sh refuses the pinned manifest"; }
  echo "ok: docs/deployment.md's push and pin: $repo@${digest:0:19}… in the plain manifest, validate.sh passes"
fi

# The SBOM: signed with minisign; verification fails once it changes.
minisign -G -W -p "$work/sbom.pub" -s "$work/sbom.key" >/dev/null
minisign -S -s "$work/sbom.key" -m "$sbom" -x "$work/sbom.minisig" >/dev/null
minisign -V -q -p "$work/sbom.pub" -m "$sbom" -x "$work/sbom.minisig" || fail "the SBOM signature does not verify"
cp "$sbom" "$work/changed.json"
printf ' ' >>"$work/changed.json"
minisign -V -q -p "$work/sbom.pub" -m "$work/changed.json" -x "$work/sbom.minisig" 2>/dev/null && fail "a changed SBOM verified"
echo "ok: SBOM signed with minisign; a changed SBOM is refused"
