"""``kubectl modelroll``: a readable view of ModelDeployments (reads through kubectl, so the
user's kubeconfig, context and credentials apply unchanged)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from .. import actions
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
        # This object's Events only: by uid, not name (the Service NAME shares it, and so does an
        # earlier object of the same name), in the object's own namespace.
        where = f"involvedObject.uid={obj['metadata']['uid']}"
        events = kubectl("get", "events", "-n", obj["metadata"]["namespace"], "--field-selector", where)["items"]
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        text = status_view(obj, events)
        if not args.watch:
            print(text)
            return
        print("\033[2J\033[H" + text, flush=True)
        time.sleep(2)


def annotate(args: argparse.Namespace, *pairs: str) -> None:
    proc = subprocess.run(
        ["kubectl", "annotate", "modeldeployments.modelroll.io", args.name, *_ns(args), "--overwrite", *pairs],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)


def request(action: str, done: str) -> Any:
    """A command that asks the operator for one action, identified by a fresh token."""

    def run(args: argparse.Namespace) -> None:
        token = f"{time.time_ns():x}"
        if action == actions.UNDO and args.to_revision:
            token += f"/{args.to_revision}"
        name = actions.PROMOTE_FULL if action == actions.PROMOTE and args.full else action
        annotate(args, f"{actions.annotation(name)}={token}")
        print(
            f"{args.name}: {done} (the operator acts on it at its next reconcile; "
            f"see `kubectl modelroll status {args.name}`)"
        )

    return run


def cmd_pause(args: argparse.Namespace) -> None:
    annotate(args, f"{actions.annotation(actions.PAUSED)}=true")
    print(f"{args.name}: paused; `kubectl modelroll resume {args.name}` continues")


def cmd_resume(args: argparse.Namespace) -> None:
    # Lifts a person's pause, and (a fresh token) restarts an analysis's Inconclusive count,
    # which also ends a pause that inconclusiveLimit caused.
    token = f"{time.time_ns():x}"
    annotate(args, f"{actions.annotation(actions.PAUSED)}-", f"{actions.annotation(actions.RESUME)}={token}")
    print(f"{args.name}: resumed (an analysis's Inconclusive count starts again)")


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
    for name, action, done, help_text in (
        (
            "promote",
            actions.PROMOTE,
            "promotion requested",
            "advance past the current pause (--full: skip every remaining step)",
        ),
        (
            "abort",
            actions.ABORT,
            "abort requested",
            "stop the rollout: stable at full weight and scale, canary to zero",
        ),
        ("retry", actions.RETRY, "retry requested", "restart an aborted rollout from its first step, or lift an undo"),
        ("undo", actions.UNDO, "undo requested", "return to the previous promoted revision at once"),
    ):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("name")
        if name == "promote":
            p.add_argument("--full", action="store_true", help="skip every remaining step")
        if name == "undo":
            p.add_argument("--to-revision", help="a revision from status.history (default: the previous one)")
        p.set_defaults(func=request(action, done))
    for name, func, help_text in (
        ("pause", cmd_pause, "hold the rollout at its current step"),
        ("resume", cmd_resume, "continue a paused rollout; an analysis's Inconclusive count starts again"),
    ):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("name")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
