#!/usr/bin/env python3
"""Checks what the chart renders for compose/tests/values-your-data.yaml: the engine's file
mounted into both containers and named by the gateway (authorization.engine_config), the
data claim read-only in the engine only, the S3 Secret in the engine only, the pod values,
the passthrough Ingress and TLSRoutes. Exits 1 naming the first thing that is not so.

usage: your_data.py RENDERED.yaml
"""
import sys

import yaml


def main() -> int:
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = kinds[("Deployment", "portcullis")]
    spec = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}
    mounts = {name: {m["name"]: m for m in c["volumeMounts"]} for name, c in containers.items()}
    volumes = {v["name"]: v for v in spec["volumes"]}
    gateway_yaml = yaml.safe_load(kinds[("ConfigMap", "portcullis-gateway")]["data"]["gateway.yaml"])
    engine_yaml = yaml.safe_load(kinds[("ConfigMap", "portcullis-engine")]["data"]["engine.yaml"])
    checks = [
        ("the engine's file in the engine", mounts["engine"].get("engine-config", {}).get("mountPath") == "/etc/portcullis/engine"),
        ("the engine's file in the gateway", mounts["gateway"].get("engine-config", {}).get("mountPath") == "/etc/portcullis/engine"),
        ("the gateway reads it", gateway_yaml["authorization"].get("engine_config") == "/etc/portcullis/engine/engine.yaml"),
        ("the engine runs it", "/etc/portcullis/engine/engine.yaml" in containers["engine"]["args"]),
        ("its datasets", [d["name"] for d in engine_yaml["datasets"]] == ["sales.orders", "sales.events"]),
        ("the data claim", volumes.get("data", {}).get("persistentVolumeClaim") == {"claimName": "sales-data", "readOnly": True}),
        ("data read-only in the engine", mounts["engine"].get("data") == {"name": "data", "mountPath": "/data", "readOnly": True}),
        ("no data in the gateway", "data" not in mounts["gateway"] and "s3-credentials" not in mounts["gateway"]),
        ("the S3 Secret", volumes.get("s3-credentials", {}).get("secret", {}).get("secretName") == "portcullis-s3"),
        ("the S3 Secret in the engine", mounts["engine"].get("s3-credentials", {}).get("readOnly") is True),
        ("imagePullSecrets", spec.get("imagePullSecrets") == [{"name": "registry-credentials"}]),
        ("podAnnotations", deployment["spec"]["template"]["metadata"]["annotations"].get("team") == "data-platform"),
        ("nodeSelector", spec.get("nodeSelector") == {"kubernetes.io/os": "linux"}),
        ("tolerations", spec.get("tolerations", [{}])[0].get("key") == "dedicated"),
        ("affinity", "nodeAffinity" in spec.get("affinity", {})),
        ("the service account's role", kinds[("ServiceAccount", "portcullis")]["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "").endswith("portcullis-read")),
        ("egress to the object store", any(r["to"][0].get("ipBlock", {}).get("cidr") == "52.218.0.0/17" for r in kinds[("NetworkPolicy", "portcullis")]["spec"]["egress"])),
        ("the passthrough Ingress", kinds.get(("Ingress", "portcullis"), {}).get("metadata", {}).get("annotations", {}).get("nginx.ingress.kubernetes.io/ssl-passthrough") == "true"),
        ("the TLSRoutes", {n for k, n in kinds if k == "TLSRoute"} == {"portcullis-api", "portcullis-flight"}),
        ("TLSRoute ports", sorted(kinds[("TLSRoute", n)]["spec"]["rules"][0]["backendRefs"][0]["port"] for n in ("portcullis-api", "portcullis-flight")) == [8090, 50051]),
    ]
    for what, ok in checks:
        if not ok:
            print(f"your_data.py: {what}: not as expected", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
