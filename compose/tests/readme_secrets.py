#!/usr/bin/env python3
"""docs/deployment.md's `kubectl create secret|configmap` commands make exactly what the manifest
mounts: every Secret and ConfigMap volume of the Deployment (but the chart's own ConfigMaps)
is created under its name, and every file the gateway config and the engine's arguments
name under a mount is a key of it.

usage: readme_secrets.py MANIFEST.yaml CREATED.yaml   (CREATED: the commands' --dry-run output)
"""
import pathlib
import sys

import yaml


def main() -> int:
    docs = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[1]).read_text()) if d]
    created = {d["metadata"]["name"]: d for d in yaml.safe_load_all(pathlib.Path(sys.argv[2]).read_text()) if d}
    own = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    gateway_yaml = next(d for d in docs if d["kind"] == "ConfigMap" and "gateway.yaml" in d["data"])["data"]["gateway.yaml"]
    spec = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    containers = spec.get("initContainers", []) + spec["containers"]
    referenced = gateway_yaml + " " + " ".join(" ".join(c.get("args", [])) for c in containers)
    problems = []
    for volume in spec["volumes"]:
        source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
        if not source or source in own:
            continue
        if source not in created:
            problems.append(f"volume {volume['name']}: docs/deployment.md creates no {source}")
            continue
        keys = set(created[source].get("data", {})) | set(created[source].get("stringData", {}))
        mounts = [m["mountPath"] for c in containers for m in c.get("volumeMounts", []) if m["name"] == volume["name"]]
        for mount in mounts:
            for word in referenced.replace(",", " ").split():
                if word.startswith(mount + "/"):
                    key = word[len(mount) + 1:]
                    if key not in keys:
                        problems.append(f"{source} has no {key} (keys: {sorted(keys)})")
        if not keys:
            problems.append(f"{source} is empty")
    if problems:
        print("readme_secrets.py: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"ok: docs/deployment.md's kubectl commands create {', '.join(sorted(created))}, with every key the pod reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
