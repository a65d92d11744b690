#!/usr/bin/env python3
"""Writes the gateway.yaml a rendered manifest carries, with the container paths it names
replaced by files of a development state folder, so `gateway check` can validate what the
chart would run (unknown fields and bad values are refused there).

usage: chart_config.py MANIFEST.yaml STATE_DIR POLICIES_DIR OUT.yaml
"""
import pathlib
import sys

import yaml


def main() -> int:
    manifest, state, policies, out = sys.argv[1:5]
    docs = [d for d in yaml.safe_load_all(pathlib.Path(manifest).read_text()) if d]
    text = next(d for d in docs if d["kind"] == "ConfigMap" and "gateway.yaml" in d["data"])["data"]["gateway.yaml"]
    mounts = {
        "/var/run/secrets/portcullis/tls/tls.crt": f"{state}/tls/server.pem",
        "/var/run/secrets/portcullis/tls/tls.key": f"{state}/tls/server-key.pem",
        "/var/run/secrets/portcullis/client-ca/ca.crt": f"{state}/tls/ca.pem",
        "/var/run/secrets/spiffe/svid.pem": f"{state}/tls/server.pem",
        "/var/run/secrets/spiffe/svid-key.pem": f"{state}/tls/server-key.pem",
        "/var/run/secrets/spiffe/bundle.pem": f"{state}/tls/ca.pem",
        "/var/run/secrets/portcullis/stamp/stamp-key.pem": f"{state}/stamp-key.pem",
        "/var/run/secrets/portcullis/api-keys/api-keys.yaml": f"{state}/api-keys.yaml",
        "/var/run/secrets/portcullis/browser/session-key": f"{state}/session-key",
        "/var/run/secrets/portcullis/browser/client-secret": f"{state}/client-secret",
        "/etc/portcullis/policies": policies,
        # The shadow set: the same folder will do for a config check.
        "/etc/portcullis/shadow-policies": policies,
    }
    for path, local in mounts.items():
        text = text.replace(path, local)
    # Paths alone or in a ${file:...} reference.
    words = [word.strip("'\"[],").removeprefix("${file:") for word in text.split()]
    left = [word for word in words if word.startswith(("/var/run/", "/etc/portcullis"))]
    if left:
        print(f"chart_config.py: {manifest} names paths the test does not map: {left}", file=sys.stderr)
        return 1
    pathlib.Path(out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
