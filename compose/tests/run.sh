#!/usr/bin/env bash
# Every deployment test, in order: offline checks of the files, the image (from binaries
# the test build already made), the sidecar pod, the compose stack, signing.
#
#   compose/tests/run.sh BINARIES_DIR [ADVISORY_DB]
# BINARIES_DIR holds `gateway` and `engine` (e.g. $CARGO_TARGET_DIR/debug after cargo test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binaries="$(cd "$1" && pwd)"
export ADVISORY_DB="${2:-}"
export CONTAINERS_CONF="$here/containers.conf"
out="$(mktemp -d)"
tag="localhost/portcullis:test"
cleanup() {
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT
echo "== deployment files (offline)"
bash "$here/check-files.sh" "$binaries/gateway"
echo "== image"
bash "$here/image.sh" "$binaries" "$tag" "$out"
echo "== sidecar pod (podman kube play)"
bash "$here/pod.sh" "$tag" "$binaries/gateway"
echo "== docker compose (podman's Docker socket)"
bash "$here/compose.sh" "$tag"
echo "== signing (skopeo + GPG, minisign)"
bash "$here/sign.sh" "$out/portcullis.tar" "$out/portcullis.cdx.json" "$tag"
if [ -n "${SBOM_DIR:-}" ]; then
  mkdir -p "$SBOM_DIR"
  cp "$out/portcullis.cdx.json" "$SBOM_DIR/"
  echo "SBOM: $SBOM_DIR/portcullis.cdx.json"
fi
