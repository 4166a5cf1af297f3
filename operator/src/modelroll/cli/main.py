"""``kubectl modelroll``: a readable view of ModelDeployments (reads through kubectl, so the
user's kubeconfig, context and credentials apply unchanged)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from .render import list_view, status_view


def kubectl(*args: str) -> Any:
    proc = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout)


def _ns(args: argparse.Namespace) -> list[str]:
    return ["-n", args.namespace] if args.namespace else []


def cmd_list(args: argparse.Namespace) -> None:
    scope = ["-A"] if args.all_namespaces or not args.namespace else _ns(args)
    print(list_view(kubectl("get", "modeldeployments.modelroll.io", *scope)["items"]))


def cmd_status(args: argparse.Namespace) -> None:
    while True:
        obj = kubectl("get", "modeldeployments.modelroll.io", args.name, *_ns(args))
        events = kubectl("get", "events", *_ns(args), "--field-selector", f"involvedObject.name={args.name}")["items"]
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        text = status_view(obj, events)
        if not args.watch:
            print(text)
            return
        print("\033[2J\033[H" + text, flush=True)
        time.sleep(2)


def main(argv: list[str] | None = None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    parser = argparse.ArgumentParser(prog="kubectl modelroll", description="Inspect and steer ModelDeployments.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", parents=[common], help="every ModelDeployment with phase, versions and weights")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("status", parents=[common], help="phase, tracks, conditions, history and recent events of one")
    p.add_argument("name")
    p.add_argument("-w", "--watch", action="store_true")
    p.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
