#!/usr/bin/env bash
# Builds the Portcullis image (FROM scratch: gateway + engine, UID 65534) with podman, or
# docker when podman is missing.
#
#   compose/image/build.sh                          # release: static binaries, then the image
#   compose/image/build.sh --binaries DIR           # reuse built binaries (e.g. target/debug)
#   options: --tag NAME (default localhost/portcullis:VERSION) --save FILE (docker-archive tar)
#
# Reproducible: every file and the image's creation time are pinned to the last commit's
# time (SOURCE_DATE_EPOCH), so the same binaries give the same digest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

binaries=""
tag=""
save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) binaries="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --save) save="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if command -v podman >/dev/null 2>&1; then
  runtime=podman
elif command -v docker >/dev/null 2>&1; then
  runtime=docker
else
  echo "build.sh: neither podman nor docker is installed" >&2
  exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
tag="${tag:-localhost/portcullis:$version}"

if [ -z "$binaries" ]; then
  # Static glibc binaries: no libc in the image, name resolution from /etc/hosts and
  # resolv.conf needs no NSS files. The engine and the gateway are built separately so
  # feature unification does not rebuild DataFusion for the gateway.
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  for pkg in engine gateway; do
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked -p "$pkg" --target x86_64-unknown-linux-gnu
  done
  binaries="$target_dir/x86_64-unknown-linux-gnu/release"
fi
for bin in gateway engine; do
  [ -x "$binaries/$bin" ] || { echo "build.sh: $binaries/$bin missing" >&2; exit 1; }
done

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/portcullis" "$rootfs/tmp" "$context/state"
for bin in gateway engine; do
  # Without debug information (the release profile keeps line tables: 3-5x the size).
  objcopy --strip-debug "$binaries/$bin" "$rootfs/usr/local/bin/$bin"
  # The dependency list scanners read (cargo-auditable's .dep-v0 section).
  python3 "$here/dep_list.py" "$bin" "$context/$bin.dep"
  objcopy --remove-section .dep-v0 --add-section ".dep-v0=$context/$bin.dep" \
    --set-section-flags .dep-v0=noload,readonly "$rootfs/usr/local/bin/$bin"
  # A dynamically linked binary (a debug build reused by the tests) brings its libraries.
  if ldd "$binaries/$bin" >/dev/null 2>&1; then
    ldd "$binaries/$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  fi
done
# Public CA roots for outbound TLS (IdP, remote engine, audit sinks). The gateway also has
# the Mozilla roots compiled in; this file is for anything that reads SSL_CERT_FILE.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'nogroup:x:65534:\n' >"$rootfs/etc/group"
chmod 0755 "$rootfs/usr/local/bin/"*
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$rootfs/tmp"
find "$context" -exec touch -h -d "@$epoch" {} +
cp "$here/Containerfile" "$context/Containerfile"

if [ "$runtime" = podman ]; then
  podman build --quiet --no-cache --layers=false --timestamp "$epoch" --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" -t "$tag" -f "$context/Containerfile" "$context" >/dev/null
else
  SOURCE_DATE_EPOCH="$epoch" docker build --quiet --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" -t "$tag" -f "$context/Containerfile" "$context" >/dev/null
fi
echo "$tag $($runtime image inspect --format '{{.Id}}' "$tag")"
if [ -n "$save" ]; then
  rm -f "$save"
  if [ "$runtime" = podman ]; then
    podman save --quiet --format docker-archive -o "$save" "$tag"
  else
    docker save -o "$save" "$tag"
  fi
fi
