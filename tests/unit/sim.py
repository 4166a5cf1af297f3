"""A tiny stand-in for the cluster's controllers, for planner tests: applied Deployments
become complete at once with Ready Pods (unless their revision is marked unready)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from modelroll.children import Owner
from modelroll.observed import Observed
from modelroll.planner import Plan, Subject, plan
from modelroll_contract import LABEL_REVISION, LABEL_TRACK

IMAGE = "registry.example/modelroll-server:test"
OWNER = Owner("fraud", "ml", "uid-1")
KINDS = {"Deployment": "deps", "Service": "svcs", "HTTPRoute": "routes", "HorizontalPodAutoscaler": "hpas"}


class Cluster:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.generation = 1
        self.status: dict[str, Any] = {}
        self.annotations: dict[str, str] = {}
        self.deps: dict[str, Any] = {}
        self.svcs: dict[str, Any] = {}
        self.routes: dict[str, Any] = {}
        self.hpas: dict[str, Any] = {}
        self.unready: set[str] = set()  # revisions whose Pods never become Ready
        self.plans: list[Plan] = []

    def set_spec(self, spec: dict[str, Any]) -> None:
        self.spec, self.generation = spec, self.generation + 1

    def observed(self) -> Observed:
        pods, deps = [], {}
        for name, dep in self.deps.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            n = dep["spec"]["replicas"]
            ready = 0 if labels[LABEL_REVISION] in self.unready else n
            deps[name] = {
                **dep,
                "metadata": {**dep["metadata"], "generation": 1},
                "status": {
                    "observedGeneration": 1,
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                },
            }
            for i in range(n):
                pods.append(
                    {
                        "metadata": {"name": f"{name}-{i}", "labels": dict(labels)},
                        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
                    }
                )
        return Observed(
            deployments=deps, services=dict(self.svcs), routes=dict(self.routes), autoscalers=dict(self.hpas), pods=pods
        )

    def reconcile(self, now: datetime) -> Plan:
        subject = Subject(
            owner=OWNER,
            generation=self.generation,
            spec=copy.deepcopy(self.spec),
            status=copy.deepcopy(self.status),
            annotations=dict(self.annotations),
        )
        result = plan(subject, self.observed(), now, IMAGE)
        for obj in result.apply:
            getattr(self, KINDS[obj["kind"]])[obj["metadata"]["name"]] = copy.deepcopy(obj)
        for ref in result.delete:
            getattr(self, KINDS[ref.kind]).pop(ref.name, None)
        for name, n in result.scale:
            self.deps[name]["spec"]["replicas"] = n
        if result.status is not None:
            self.status = result.status
        self.plans.append(result)
        return result

    def settle(self, now: datetime, limit: int = 10) -> Plan:
        """Reconcile until nothing more is written (what a real operator converges to)."""
        for _ in range(limit):
            result = self.reconcile(now)
            if result.writes == 0:
                return result
        raise AssertionError(f"no convergence after {limit} reconciles: {self.status.get('message')}")

    def replicas(self, track: str) -> int:
        dep = self.deps.get(f"fraud-{track}")
        return dep["spec"]["replicas"] if dep else 0

    def revision(self, track: str) -> str | None:
        dep = self.deps.get(f"fraud-{track}")
        return dep["spec"]["template"]["metadata"]["labels"][LABEL_REVISION] if dep else None

    def selector(self, service: str) -> dict[str, str]:
        return self.svcs[service]["spec"]["selector"]

    def events(self) -> list[str]:
        return [e.reason for p in self.plans for e in p.events]


def track_of(selector: dict[str, str]) -> str | None:
    return selector.get(LABEL_TRACK)
