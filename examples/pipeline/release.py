"""Write a pushed model into the GitOps manifest (reads PUSHED and MANIFEST, writes --out).

PUSHED is ``modelroll push --json``'s output; its ``spec`` holds the fields that name the
release: ``model.uri``, ``model.digest``, ``model.version``, ``model.format``, ``model.method``
and ``monitoring.drift.referenceUri`` / ``referenceDigest``. Each is set at its path under the
manifest's ``spec``, which must already have it: this script changes values, never the shape.

The edit is made in the text, not by loading and dumping the YAML: PyYAML's composer gives
each value's exact position, and only those characters are replaced, so comments, key order,
flow style and quoting elsewhere stay byte for byte (PyYAML's dumper would drop every comment,
and ruamel.yaml is not a dependency of this project). A value keeps its quoting unless it would
read back as something else (``1.10`` is quoted). The result is parsed again and must equal
the old manifest with exactly those values changed, or nothing is written.

The result goes to ``--out`` (default: MANIFEST itself, as the release workflow wants it);
local runs write a copy in the build directory, so they never edit the committed file.

    python examples/pipeline/release.py build/push.json examples/pipeline/deploy/modeldeployment.yaml \
        --out build/modeldeployment.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every scalar in a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


def scalar_node(root: yaml.Node, path: tuple[str, ...]) -> yaml.ScalarNode:
    node = root
    for depth, key in enumerate(path):
        if not isinstance(node, yaml.MappingNode):
            raise KeyError(".".join(path[:depth]) + " is not a mapping")
        found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
        if not found:
            raise KeyError(".".join(path[: depth + 1]))
        node = found[0]
    if not isinstance(node, yaml.ScalarNode):
        raise KeyError(".".join(path) + " is not a single value")
    return node


def render(value: str, style: str | None) -> str:
    """``value`` as YAML text, plain if the node was plain and it reads back as itself."""
    if style is None and "\n" not in value and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)  # a double-quoted YAML scalar


def release(text: str, fields: dict[str, Any]) -> tuple[str, list[str]]:
    """``text`` with every leaf of ``fields`` set under ``spec``, and one line per change."""
    root = yaml.compose(text)
    if root is None:
        raise KeyError("spec (the manifest is empty)")
    edits, changes = [], []
    for path, value in leaves(fields):
        node = scalar_node(root, ("spec", *path))
        if node.value != str(value):
            edits.append((node.start_mark.index, node.end_mark.index, render(str(value), node.style)))
            changes.append(f"spec.{'.'.join(path)}: {node.value} -> {value}")
    for start, end, new in sorted(edits, reverse=True):  # from the end, so earlier offsets hold
        text = text[:start] + new + text[end:]
    return text, changes


def expected(old: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    new: dict[str, Any] = json.loads(json.dumps(old))  # a deep copy
    for path, value in leaves(fields):
        parent = new["spec"]
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pushed", type=Path, help="`modelroll push --json` output")
    parser.add_argument("manifest", type=Path, help="the ModelDeployment YAML to start from")
    parser.add_argument("--out", type=Path, help="where to write the result (default: MANIFEST)")
    args = parser.parse_args()
    out: Path = args.out or args.manifest
    if not args.pushed.is_file():
        sys.exit(f"release.py: no {args.pushed}: run `make pipeline-push` first")
    fields = json.loads(args.pushed.read_text())["spec"]
    text = args.manifest.read_text()
    try:
        new_text, changes = release(text, fields)
    except KeyError as e:
        sys.exit(f"release.py: {args.manifest} has no {e.args[0]}; add the field once by hand")
    if yaml.safe_load(new_text) != expected(yaml.safe_load(text), fields):
        sys.exit(f"release.py: editing {args.manifest} would change more than the release's fields; not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(new_text)
    os.chmod(tmp, args.manifest.stat().st_mode)  # mkstemp's file is 0600; keep the manifest's mode
    os.replace(tmp, out)  # a reader (or a crash) never sees half a manifest
    for line in changes:
        print(line)
    print(f"wrote {out}: {len(changes)} fields changed from {args.manifest}")


if __name__ == "__main__":
    main()
