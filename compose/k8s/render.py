#!/usr/bin/env python3
"""The Helm chart (compose/helm/portcullis) is the source of truth; the plain manifests in
compose/k8s/ are the chart rendered with fixed values, written by this script.

  python3 compose/k8s/render.py            # write the plain manifests
  python3 compose/k8s/render.py --check    # fail if they differ from the chart (CI)
  python3 compose/k8s/render.py --values F [--set-image REPO@DIGEST] [--no-native-sidecar] -o OUT
                                           # render one variant (tests)
  python3 compose/k8s/render.py --set-image REPO@DIGEST --notes   # what `helm install` prints

The plain manifests carry the image placeholder sha256:SET-YOUR-IMAGE-DIGEST, which
validate.sh refuses: set your digest first (docs/deployment.md, "Your image").

Every render is linted first (helm lint --strict through helm-python-sdk, the Helm Go library).
"""
import argparse
import pathlib
import sys

import helm_python as helm
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE.parent / "helm" / "portcullis"
RELEASE, NAMESPACE = "portcullis", "portcullis"
HEADER = (
    "# Generated from compose/helm/portcullis by `python3 compose/k8s/render.py` ({values}).\n"
    "# Do not edit: change the chart and render again (CI checks they agree).\n"
)
# The plain manifests name no real image: they are rendered with a stand-in digest that is
# then written as this placeholder, which validate.sh refuses until you set your own
# (docs/deployment.md, "Your image").
PLACEHOLDER = "sha256:SET-YOUR-IMAGE-DIGEST"
STAND_IN = "sha256:" + "5e7" * 21 + "5"
# Plain manifest -> the chart values it is rendered with.
PLAIN = {
    "portcullis.yaml": [],
    "portcullis-hardened.yaml": ["values-hardened.yaml"],
    "portcullis-spiffe.yaml": ["values-spiffe.yaml"],
}


def merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def values_of(value_files: list[str], overrides: dict | None) -> dict:
    """The chart's values: the files in order (a bare name is the chart's), then `overrides`."""
    values: dict = {}
    for name in value_files:
        path = pathlib.Path(name) if "/" in name else CHART / name
        merge(values, yaml.safe_load(path.read_text()) or {})
    return merge(values, overrides or {})


def render(value_files: list[str], overrides: dict | None = None) -> str:
    values = values_of(value_files, overrides)
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.32.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"path": "", "error": e} for e in report["errors"]
    ]
    if problems:
        raise SystemExit("helm lint: " + "; ".join(f"{m['path']}: {m['error']}" for m in problems))
    chart = helm.Chart.load(str(CHART))
    try:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.errors.HelmRenderError as error:
        raise SystemExit(f"helm render: {error}") from None
    docs = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifests[template]):
            if doc:
                docs.append(doc)
    order = ["Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
             "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"]
    docs.sort(key=lambda d: (order.index(d["kind"]) if d["kind"] in order else 99, d["metadata"]["name"]))
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)


def notes(value_files: list[str], overrides: dict | None = None) -> str:
    """The chart's NOTES.txt as `helm install` prints it."""
    values = values_of(value_files, overrides)
    manifests = helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for template, text in manifests.items() if template.endswith("NOTES.txt"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--values", action="append", default=[])
    parser.add_argument("--set-image", help="repository@sha256:digest")
    parser.add_argument("--no-native-sidecar", action="store_true")
    parser.add_argument("--notes", action="store_true", help="print NOTES.txt as helm install would")
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    if args.output or args.notes:
        overrides: dict = {}
        if args.set_image:
            repository, digest = args.set_image.split("@", 1)
            overrides["image"] = {"repository": repository, "digest": digest}
        if args.no_native_sidecar:
            overrides["sidecar"] = {"native": False}
        if args.notes:
            print(notes(args.values, overrides))
        if args.output:
            pathlib.Path(args.output).write_text(render(args.values, overrides))
        return 0
    stale = []
    stand_in = {"image": {"digest": STAND_IN}, "spiffe": {"helperImage": {"digest": STAND_IN}}}
    for name, value_files in PLAIN.items():
        rendered = render(value_files, stand_in).replace(STAND_IN, PLACEHOLDER)
        text = HEADER.format(values=", ".join(value_files) or "default values") + rendered
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"render.py: {', '.join(stale)} differ from the chart; run python3 compose/k8s/render.py",
              file=sys.stderr)
        return 1
    print("render.py: plain manifests " + ("match the chart" if args.check else "written"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
