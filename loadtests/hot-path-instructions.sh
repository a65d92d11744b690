#!/usr/bin/env bash
# Instructions per request on the gateway's hot path, counted by callgrind (repeatable on a
# noisy machine, unlike time): sanitize → authenticate (API key) → authorize (decision cache)
# → stamp, and the audit event's JSON line. Each is run twice (N and 11 N iterations); the
# difference divided by 10 N is the cost of one, without the set-up.
#
#   bash loadtests/hot-path-instructions.sh          # needs valgrind (apt-get install valgrind)
#   N=2000 bash loadtests/hot-path-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
bench=$(cargo bench -q -p loadtests --bench hot_path --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "hot_path" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # PART ITERATIONS
  HOT_PATH_PART=$1 HOT_PATH_ITERATIONS=$2 valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bench" 2>/dev/null >/dev/null
  awk '/^summary:/ {print $2}' "$out/cg"
}
for part in request audit; do
  small=$(count "$part" "$N")
  large=$(count "$part" $((N * 11)))
  case $part in
    request) label="hot path (sanitize → API key → authorize, cached → stamp)" ;;
    audit) label="audit event → JSON line" ;;
  esac
  echo "$label: $(((large - small) / (N * 10))) instructions per request"
done
