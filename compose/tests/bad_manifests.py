#!/usr/bin/env python3
"""Writes deliberately bad copies of a rendered manifest, one fault each, so that
check-files.sh can show every check is able to fail:

  bad-privileged.yaml          the gateway container privileged
  bad-hostpath.yaml            a hostPath volume mounted into the engine
  bad-floating-tag.yaml        images by a moving tag (:latest) instead of a digest
  bad-secret-in-configmap.yaml the stamp private key pasted into the gateway ConfigMap

usage: bad_manifests.py GOOD.yaml OUT_DIR
"""
import copy
import pathlib
import sys

import yaml


def containers(doc):
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def main() -> int:
    good = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[1]).read_text()) if d]
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    def write(name, change):
        docs = copy.deepcopy(good)
        for doc in docs:
            change(doc)
        (out / name).write_text("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs))

    def privileged(doc):
        if doc["kind"] == "Deployment":
            gateway = next(c for c in containers(doc) if c["name"] == "gateway")
            gateway["securityContext"]["privileged"] = True
            gateway["securityContext"]["allowPrivilegeEscalation"] = True

    def host_path(doc):
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
            engine = next(c for c in containers(doc) if c["name"] == "engine")
            engine["volumeMounts"].append({"name": "host", "mountPath": "/host"})

    def floating_tag(doc):
        if doc["kind"] == "Deployment":
            for c in containers(doc):
                c["image"] = c["image"].split("@")[0] + ":latest"
                c["imagePullPolicy"] = "Always"

    def secret_in_configmap(doc):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-gateway"):
            # A made-up key (not a real secret): the shape a pasted stamp key has.
            doc["data"]["stamp-key.pem"] = (
                "-----BEGIN PRIVATE KEY-----\n"
                "MC4CAQAwBQYDK2VwBCIEIBadKeyPastedIntoAConfigMapForTheCheck0000\n"
                "-----END PRIVATE KEY-----\n"
            )

    write("bad-privileged.yaml", privileged)
    write("bad-hostpath.yaml", host_path)
    write("bad-floating-tag.yaml", floating_tag)
    write("bad-secret-in-configmap.yaml", secret_in_configmap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
