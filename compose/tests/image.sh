#!/usr/bin/env bash
# The image, built from binaries already built (no second workspace build): reproducible,
# FROM scratch as documented, runs hardened, and scanners read its dependency list.
#
#   compose/tests/image.sh BINARIES_DIR TAG OUT_DIR
# leaves TAG in the local image store, OUT_DIR/portcullis.tar (docker-archive) and
# OUT_DIR/portcullis.cdx.json (the CycloneDX SBOM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
binaries="$1"
tag="$2"
out="$3"
: "${CONTAINERS_CONF:?set CONTAINERS_CONF (see .ci/containers.conf)}"
mkdir -p "$out"
fail() { echo "image.sh: $*" >&2; exit 1; }

# Reproducible: two builds from scratch (no layer cache) give one digest.
first="$(bash "$root/compose/image/build.sh" --binaries "$binaries" --tag "$tag-a" 2>/dev/null | awk '{print $2}')"
bash "$root/compose/image/build.sh" --binaries "$binaries" --tag "$tag" --save "$out/portcullis.tar" >/dev/null 2>&1
second="$(podman image inspect --format '{{.Id}}' "$tag")"
podman rmi "$tag-a" >/dev/null
if [ -z "$first" ] || [ "$first" != "$second" ]; then
  fail "two builds of the same inputs differ: $first vs $second"
fi
echo "ok: reproducible (two uncached builds: image $second)"

# What is in it: the two binaries, CA roots, passwd/group, /tmp, and (dynamic builds only)
# the binaries' shared libraries. No shell, no package manager.
layers="$(tar -tf "$out/portcullis.tar" | grep -E '^[^/]+\.tar$')"
files="$(for layer in $layers; do tar -xOf "$out/portcullis.tar" "$layer" | tar -t; done | sort -u)"
unexpected="$(grep -vE '^(usr/|usr/local/|usr/local/bin/|usr/local/bin/(gateway|engine)|etc/|etc/(passwd|group)|etc/ssl/|etc/ssl/certs/|etc/ssl/certs/ca-certificates\.crt|etc/portcullis/|var/|var/lib/|var/lib/portcullis/|tmp/|lib/.*|lib64/.*|usr/lib/.*)$' <<<"$files" || true)"
[ -z "$unexpected" ] || fail "unexpected files in the image: $unexpected"
grep -qE '(^|/)(sh|bash|busybox|apt|dpkg)$' <<<"$files" && fail "the image has a shell or package manager"
echo "ok: FROM scratch: $(wc -l <<<"$files") entries, gateway and engine only"

read -r user revision licenses version <<<"$(podman image inspect "$tag" --format \
  '{{.Config.User}} {{index .Config.Labels "org.opencontainers.image.revision"}} {{index .Config.Labels "org.opencontainers.image.licenses"}} {{index .Config.Labels "org.opencontainers.image.version"}}')"
[ "$user" = 65534:65534 ] || fail "image user $user"
[ "$revision" = "$(git -C "$root" rev-parse HEAD)" ] || fail "revision label $revision"
if [ "$licenses" != Apache-2.0 ] || [ -z "$version" ]; then
  fail "labels: licenses $licenses version $version"
fi
echo "ok: user 65534:65534; OCI labels revision $revision, version $version, licences $licenses"

# Hardened run: read-only root, every capability dropped, no new privileges, no network.
hardened=(--rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges)
podman run "${hardened[@]}" "$tag" --version | grep -q '^gateway ' || fail "gateway does not run hardened"
podman run "${hardened[@]}" --entrypoint /usr/local/bin/engine "$tag" --version | grep -q '^engine ' \
  || fail "engine does not run hardened"
podman run "${hardened[@]}" --entrypoint /bin/sh "$tag" -c true >/dev/null 2>&1 && fail "/bin/sh runs in the image"
# Writes go to /tmp only (a tmpfs here, an emptyDir in Kubernetes); the root is read-only.
podman run "${hardened[@]}" --tmpfs /tmp "$tag" tls init --dir /tmp/pki >/dev/null || fail "cannot write /tmp"
podman run "${hardened[@]}" "$tag" tls init --dir /etc/portcullis/pki >/dev/null 2>&1 && fail "the root is writable"
echo "ok: runs with a read-only root, no capabilities, no new privileges; writes only /tmp"

# The dependency list in the binaries (.dep-v0) is what scanners read: the SBOM must list
# the crates at their locked versions, and cargo-audit must read the binaries.
trivy image --quiet --input "$out/portcullis.tar" --format cyclonedx --output "$out/portcullis.cdx.json"
python3 - "$out/portcullis.cdx.json" "$root/Cargo.lock" <<'PY'
import json, re, sys
sbom = json.load(open(sys.argv[1]))
lock = open(sys.argv[2]).read()
found = {(c["name"], c.get("version")) for c in sbom.get("components", [])}
for crate in ["rustls", "cedar-policy", "hyper", "datafusion", "aws-lc-rs", "jsonwebtoken"]:
    version = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), lock).group(1)
    assert (crate, version) in found, f"SBOM lacks {crate} {version}"
assert not any(n == "criterion" for n, _ in found), "dev-dependencies in the SBOM"
print(f"ok: CycloneDX SBOM lists {len(found)} components at their locked versions")
PY
if [ -n "${ADVISORY_DB:-}" ]; then
  # cargo-audit reads binaries up to 100 MB: the gateway's, as the image carries it (a
  # debug engine is larger; trivy above read both).
  for layer in $layers; do
    tar -xOf "$out/portcullis.tar" "$layer" | tar -x -C "$out" --wildcards 'usr/local/bin/gateway' 2>/dev/null || true
  done
  [ -x "$out/usr/local/bin/gateway" ] || fail "no gateway binary in the image's layers"
  cargo audit --no-fetch -d "$ADVISORY_DB" -D warnings bin "$out/usr/local/bin/gateway" >"$out/audit-bin.log" 2>&1 \
    || { cat "$out/audit-bin.log" >&2; fail "cargo audit bin on the image's gateway"; }
  grep -q "not built with 'cargo auditable'" "$out/audit-bin.log" && fail "cargo audit cannot read the gateway's dependency list"
  echo "ok: cargo audit bin reads the image's gateway dependency list: no advisory"
fi
