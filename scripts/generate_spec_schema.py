"""Regenerate operator/src/modelroll/spec_schema.py from the CRD (crds/modeldeployment.yaml).

    .venv/bin/python scripts/generate_spec_schema.py [--check]

The CRD is the one source of every default, enum, pattern and bound of ``spec``; the operator's
parser validates and defaults against this copy of its schema (descriptions left out; of the
CEL rules only the message of a pattern's ``self.matches`` rule, shown instead of the regex).
A Python module, so the operator image needs neither the CRD file nor package data.
``make chart-crds`` runs this; tests/unit/test_spec_schema.py fails while the module is stale.
With ``--check``: exit 1 if the module differs from what the CRD gives, write nothing.
"""

from __future__ import annotations

import argparse
import pprint
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "crds" / "modeldeployment.yaml"
MODULE = ROOT / "operator" / "src" / "modelroll" / "spec_schema.py"
MESSAGE = "x-modelroll-message"  # the CEL message of a pattern, for the parser's error
HEADER = '''# ruff: noqa: E501 (generated: patterns are long single tokens)
"""The CRD's schema of ``spec``, generated from crds/modeldeployment.yaml by
scripts/generate_spec_schema.py (`make chart-crds`): do not edit. spec.py validates and
defaults against it, so the CRD is the one source of every default, enum, pattern and bound."""

from typing import Any

SPEC_SCHEMA: dict[str, Any] = '''


def spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The schema of ``spec`` as the parser uses it."""
    (version,) = crd["spec"]["versions"]
    return _strip(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _strip(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strip(v) for k, v in node.items() if k not in ("description", "x-kubernetes-validations")}
    for rule in node.get("x-kubernetes-validations") or []:
        if "pattern" in node and rule["rule"].startswith("self.matches("):
            out[MESSAGE] = rule["message"]
    return out


def render(schema: dict[str, Any]) -> str:
    return HEADER + pprint.pformat(schema, width=110, sort_dicts=False) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the module is stale; write nothing")
    args = p.parse_args()
    schema = spec_schema(yaml.safe_load(CRD.read_text()))
    if args.check:
        namespace: dict[str, Any] = {}
        exec(MODULE.read_text(), namespace)  # noqa: S102 - our own generated module
        stale = namespace["SPEC_SCHEMA"] != schema
        print(f"{MODULE.relative_to(ROOT)} is {'stale: run `make chart-crds`' if stale else 'up to date'}")
        return 1 if stale else 0
    MODULE.write_text(render(schema))
    # The formatter the repository is checked with, so a regenerated module passes the lint.
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(MODULE)], check=True)
    print(MODULE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
