#!/usr/bin/env python3
"""Turns the rendered chart (plain sidecar variant) into what `podman kube play` runs here:
the Deployment with one replica, and every Secret and ConfigMap volume replaced by a
hostPath folder that the test lays out exactly as the kubelet projects Secrets and
ConfigMaps (and the data claim by a folder the test fills) (`..data` -> `..<version>/`, each file a link through `..data`), so rotating one
is the kubelet's own atomic swap. podman 4.3 cannot project Secrets itself. It also
publishes containerPorts (refused with --network none) and runs httpGet probes with curl
inside the container (scratch has none): ports are dropped and each httpGet probe becomes the
equivalent exec probe, `gateway health --url http://127.0.0.1:PORT/PATH`.

usage: pod_manifest.py RENDERED.yaml VOLUMES_DIR OUT.yaml CONFIG_DIR
  writes OUT.yaml, and each ConfigMap's data (gateway.yaml, ...) into CONFIG_DIR/<volume>/
"""
import pathlib
import sys

import yaml


def main() -> int:
    rendered, volumes_dir, out, config_dir = sys.argv[1:5]
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    spec = deployment["spec"]["template"]["spec"]
    for volume in spec["volumes"]:
        name = volume["name"]
        if "configMap" in volume and volume["configMap"]["name"] in configmaps:
            # The chart's own ConfigMaps: their data, projected like the kubelet does.
            folder = pathlib.Path(config_dir) / name
            folder.mkdir(parents=True, exist_ok=True)
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (folder / key).write_text(text)
        if "configMap" in volume or "secret" in volume or "persistentVolumeClaim" in volume:
            del volume[next(k for k in ("configMap", "secret", "persistentVolumeClaim") if k in volume)]
            volume["hostPath"] = {"path": f"{volumes_dir}/{name}", "type": "Directory"}
    for container in spec.get("initContainers", []) + spec["containers"]:
        ports = {p["name"]: p["containerPort"] for p in container.pop("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container.get(probe, {}).pop("httpGet", None)
            if get:
                port = ports.get(get["port"], get["port"])
                url = f"http://127.0.0.1:{port}{get['path']}"
                container[probe]["exec"] = {"command": ["/usr/local/bin/gateway", "health", "--url", url]}
    pathlib.Path(out).write_text(yaml.safe_dump(deployment, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
