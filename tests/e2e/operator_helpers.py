"""Helpers for operator end-to-end tests: manifests, status reads, metrics scrapes (kubectl I/O)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import get_json, on_kwok

ROOT = Path(__file__).resolve().parents[2]
DIGESTS = {f"v{i}": "sha256:" + str(i) * 64 for i in range(1, 10)}
STEPS = [{"setWeight": 20}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {}}]


def manifest(name: str, version: str = "v1", replicas: int = 2, **spec: Any) -> str:
    """A ModelDeployment of a fake model (its URI resolves nowhere), so its Pods go on kwok's
    fake nodes (placement merged into any `server=` given); real models: real_node.real_manifest."""
    spec["server"] = on_kwok(spec.get("server"))
    body = {
        "apiVersion": "modelroll.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"https://models.example/{name}/{version}.joblib",
                "digest": DIGESTS[version],
                "version": version,
            },
            "replicas": replicas,
            **spec,
        },
    }
    return yaml.safe_dump(body)


def apply(kubectl, namespace: str, text: str) -> None:
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=text)


def mdep(kubectl, namespace: str, name: str) -> dict:
    return get_json(kubectl, "mdep", name, "-n", namespace)


def status_of(kubectl, namespace: str, name: str) -> dict:
    return mdep(kubectl, namespace, name).get("status") or {}


def phase_is(kubectl, namespace, name, phase, **fields):
    def check():
        status = status_of(kubectl, namespace, name)
        ok = status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())
        return status if ok else None

    return check


def stable_version_is(kubectl, namespace, name, version):
    def check():
        s = status_of(kubectl, namespace, name)
        return s if s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == version else None

    return check


def weights_are(kubectl, namespace, name, stable, canary):
    """Predicate: status.weights is exactly this split (weights follow Pod readiness, so poll)."""

    def check():
        s = status_of(kubectl, namespace, name)
        return s if s.get("weights") == {"stable": stable, "canary": canary} else None

    return check


def plugin(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the kubectl plugin the way `kubectl modelroll …` would."""
    exe = Path(sys.executable).parent / "kubectl-modelroll"
    proc = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(kubeconfig)}
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def ready_endpoints(kubectl, namespace: str, service: str) -> list[dict]:
    """The ready endpoints of a Service's EndpointSlices."""
    slices = get_json(kubectl, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    return [ep for s in slices["items"] for ep in s.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready")]


def ready_endpoints_by_track(kubectl, namespace: str, service: str) -> dict[str, int]:
    """Ready endpoints of a Service's EndpointSlices, counted by the track of their Pod."""
    pods = get_json(kubectl, "pods", "-n", namespace)["items"]
    track = {p["metadata"]["name"]: p["metadata"]["labels"].get("modelroll.io/track") for p in pods}
    counts: dict[str, int] = {}
    for ep in ready_endpoints(kubectl, namespace, service):
        t = track.get((ep.get("targetRef") or {}).get("name"), "?")
        counts[t] = counts.get(t, 0) + 1
    return counts


def scrape(port: int) -> dict[str, float]:
    return operator_metrics(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())


def operator_metrics(text: str) -> dict[str, float]:
    """The modelroll_operator_* samples of a /metrics page, by name with labels."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(modelroll_operator_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def total(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def events_of(kubectl, namespace: str, name: str) -> list[dict]:
    return get_json(kubectl, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
