#!/usr/bin/env python3
"""Writes the zlib-compressed dependency list of one workspace binary in cargo-auditable's
format (https://rustsec.org/schemas/cargo-auditable.json), for `objcopy --add-section
.dep-v0=...`. Scanners (trivy, syft, `cargo audit bin`) read that section, so the image's
binaries carry their crate list without cargo-auditable installed.

usage: dep_list.py PACKAGE OUTPUT   (run from the workspace; uses `cargo metadata --locked`)
"""
import json
import subprocess
import sys
import zlib


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root_name, output = sys.argv[1], sys.argv[2]
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    roots = [p["id"] for p in metadata["packages"]
             if p["name"] == root_name and p["id"] in metadata["workspace_members"]]
    if len(roots) != 1:
        print(f"dep_list.py: {root_name} is not a workspace package", file=sys.stderr)
        return 1
    root = roots[0]
    # What the binary links: normal and build dependencies, never dev-dependencies.
    kinds: dict[str, str] = {root: "runtime"}
    edges: dict[str, set[str]] = {}
    todo = [root]
    while todo:
        current = todo.pop()
        edges[current] = set()
        for dep in nodes[current]["deps"]:
            dep_kinds = {k["kind"] for k in dep["dep_kinds"]}
            if dep_kinds <= {"dev"}:
                continue
            kind = "runtime" if None in dep_kinds and kinds[current] == "runtime" else "build"
            edges[current].add(dep["pkg"])
            if dep["pkg"] not in kinds or (kind == "runtime" and kinds[dep["pkg"]] == "build"):
                kinds[dep["pkg"]] = kind
                todo.append(dep["pkg"])
    ordered = sorted(kinds, key=lambda i: (packages[i]["name"], packages[i]["version"], i))
    index = {pkg: n for n, pkg in enumerate(ordered)}

    def source(pkg: dict) -> str:
        src = pkg.get("source") or ""
        if src == "registry+https://github.com/rust-lang/crates.io-index":
            return "crates.io"
        if src.startswith("git+"):
            return "git"
        return "registry" if src else "local"

    out = []
    for pkg_id in ordered:
        pkg = packages[pkg_id]
        entry = {"name": pkg["name"], "version": pkg["version"], "source": source(pkg)}
        if kinds[pkg_id] == "build":
            entry["kind"] = "build"
        deps = sorted(index[d] for d in edges.get(pkg_id, ()))
        if deps:
            entry["dependencies"] = deps
        if pkg_id == root:
            entry["root"] = True
        out.append(entry)
    data = json.dumps({"format": 1, "packages": out}, separators=(",", ":")).encode()
    with open(output, "wb") as f:
        f.write(zlib.compress(data, 9))
    print(f"{root_name}: {len(out)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
