"""Helpers for tests: polling instead of sleeping, placing Pods on kwok's fake nodes, and
steering kwok's fake Pods.

The test cluster's kwok nodes are tainted (``KWOK_TAINT``, applied by tests/cluster/launcher.py),
so a Pod lands there only if it asks to (``on_kwok`` / ``KWOK_NODE_SELECTOR`` +
``KWOK_TOLERATIONS``); everything else runs on the real node.

Import as ``from tests.helpers import wait_for, make_pod_unready, ...`` (the repo root is on
``sys.path`` via tests/conftest.py). The Pod helpers call kubectl (I/O); ``wait_for`` only
calls the predicate it is given.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Labels matched by the kwok Stages in tests/cluster/kwok-stages.yaml.
UNREADY_LABEL = "modelroll.test/unready"
CRASHLOOP_LABEL = "modelroll.test/crashloop"
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"

# The one definition of kwok placement. tests/cluster/launcher.py puts this taint and the label
# below on its kwok nodes (benchmarks/operator_scale.py on its bench nodes), so only Pods that
# tolerate the taint run on fake nodes and every other Pod goes to the real node.
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_NODE_SELECTOR = {"type": "kwok"}
KWOK_TOLERATIONS = [{"key": KWOK_TAINT["key"], "operator": "Exists", "effect": KWOK_TAINT["effect"]}]


def on_kwok(server: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ModelDeployment ``spec.server`` that places its Pods on kwok's fake nodes: `server`
    (not modified) with KWOK_NODE_SELECTOR and KWOK_TOLERATIONS merged in, other keys kept.

    Why: scale and fault-injection tests use fake model URIs and images and steer Pods with
    kwok Stage labels; only kwok can make such Pods Running and Ready. A real model served by
    the real image needs no placement: untolerating Pods land on the real node.
    """
    server = dict(server or {})
    server["nodeSelector"] = {**server.get("nodeSelector", {}), **KWOK_NODE_SELECTOR}
    tolerations = [dict(t) for t in server.get("tolerations", [])]
    server["tolerations"] = tolerations + [dict(t) for t in KWOK_TOLERATIONS if t not in tolerations]
    return server


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


class WaitTimeout(AssertionError):
    """The condition did not hold in time; an AssertionError so pytest reports it as a failure."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    Raises WaitTimeout naming `message` (a string, or a callable giving one, e.g. the current
    state) and the predicate's last value or exception. An exception from the predicate counts
    as "not yet", so a predicate may read objects that do not exist yet.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported in the timeout message
            last = e
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {text}; last: {last!r}")
        time.sleep(interval)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    """`kubectl get ... -o json`, parsed."""
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def pod_is_ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def make_pod_unready(kubectl: Kubectl, namespace: str, pod: str) -> None:
    """Turn a running Pod unready (kwok flips its Ready condition to False), as a failing
    readiness probe would. Pods created with the label on their template start unready."""
    kubectl("label", "pod", "-n", namespace, pod, f"{UNREADY_LABEL}=true", "--overwrite")


def make_pod_ready(kubectl: Kubectl, namespace: str, pod: str) -> None:
    """Undo make_pod_unready / make_pod_crashloop: kwok marks the Pod Ready again."""
    kubectl("label", "pod", "-n", namespace, pod, f"{UNREADY_LABEL}-", f"{CRASHLOOP_LABEL}-")


def make_pod_crashloop(kubectl: Kubectl, namespace: str, pod: str) -> None:
    """Make a Pod's containers crash-loop: not Ready, waiting in CrashLoopBackOff."""
    kubectl("label", "pod", "-n", namespace, pod, f"{CRASHLOOP_LABEL}=true", "--overwrite")


def make_pod_fail(kubectl: Kubectl, namespace: str, pod: str) -> None:
    """Make a running Pod fail (phase Failed), via kwok's own chaos Stage."""
    kubectl("label", "pod", "-n", namespace, pod, f"{FAIL_LABEL}=true", "--overwrite")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: what a kubelet does to a container."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
