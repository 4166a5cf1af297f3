"""A tiny stand-in for the cluster's controllers, for planner tests: applied Deployments
become complete at once with Ready Pods (unless their revision is marked unready)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from modelroll.children import Owner, build_feedback_secret
from modelroll.observed import Observed
from modelroll.planner import Plan, Subject, plan
from modelroll_contract import LABEL_REVISION, LABEL_TRACK

IMAGE = "registry.example/modelroll-server:test"
OWNER = Owner("fraud", "ml", "uid-1")
KINDS = {
    "Deployment": "deps",
    "Service": "svcs",
    "HTTPRoute": "routes",
    "HorizontalPodAutoscaler": "hpas",
    "ConfigMap": "cms",
}


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
        self.cms: dict[str, Any] = {}
        self.secrets: dict[str, Any] = {}  # created once, as the controller does, with a key of its own
        self.unready: set[str] = set()  # revisions whose Pods never become Ready
        self.plans: list[Plan] = []

    def set_spec(self, spec: dict[str, Any]) -> None:
        self.spec, self.generation = spec, self.generation + 1

    def _observed(self, deps: dict[str, Any], pods: list[dict[str, Any]]) -> Observed:
        """What the planner reads: these Deployments and Pods, and the other children as applied."""
        return Observed(
            deployments=deps,
            services=dict(self.svcs),
            routes=dict(self.routes),
            autoscalers=dict(self.hpas),
            configmaps=dict(self.cms),
            secrets=dict(self.secrets),
            pods=pods,
        )

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
        return self._observed(deps, pods)

    def reconcile(self, now: datetime) -> Plan:
        subject = Subject(
            owner=OWNER,
            generation=self.generation,
            spec=copy.deepcopy(self.spec),
            status=copy.deepcopy(self.status),
            annotations=dict(self.annotations),
        )
        result = plan(subject, self.observed(), now, IMAGE)
        if result.create_feedback_secret:
            secret = build_feedback_secret(OWNER, f"sim-key-{len(self.plans)}")
            self.secrets.setdefault(secret["metadata"]["name"], secret)  # create: never replaces
        for obj in result.apply:
            store, name = getattr(self, KINDS[obj["kind"]]), obj["metadata"]["name"]
            obj = copy.deepcopy(obj)
            if obj["kind"] == "Service":  # the API server allocates a ClusterIP once, kept on re-apply
                ip = (store.get(name) or {}).get("spec", {}).get("clusterIP") or f"10.96.0.{len(self.svcs) + 10}"
                obj["spec"]["clusterIP"] = ip
            store[name] = obj
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


class LaggyCluster(Cluster):
    """The simulated cluster with time in it: a Pod comes up Ready one reconcile after it was
    created, scale-down and Recreate are instant, and a rolling update keeps the old Pods until
    the new ones are all Ready. ``ready_seen`` records the ready Pods (of every track: what the
    main Service's EndpointSlices list) after every step, to check they never drop too low."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.pods: dict[str, list[list[Any]]] = {}  # Deployment -> [[revision, ready], ...]
        self.ready_seen: list[int] = []

    def observed(self) -> Observed:
        pods, deps = [], {}
        for name, dep in self.deps.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            mine = self.pods.get(name, [])
            ready = sum(1 for _, ok in mine if ok)
            updated = sum(1 for rev, _ in mine if rev == labels[LABEL_REVISION])
            deps[name] = {
                **dep,
                "metadata": {**dep["metadata"], "generation": 1},
                "status": {
                    "observedGeneration": 1,
                    "replicas": len(mine),
                    "updatedReplicas": updated,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                },
            }
            for i, (rev, ok) in enumerate(mine):
                pods.append(
                    {
                        "metadata": {"name": f"{name}-{i}", "labels": {**labels, LABEL_REVISION: rev}},
                        "status": {"conditions": [{"type": "Ready", "status": "True" if ok else "False"}]},
                    }
                )
        return self._observed(deps, pods)

    def reconcile(self, now: datetime) -> Plan:
        result = super().reconcile(now)
        self.tick()
        return result

    def tick(self) -> None:
        """What the Deployment controllers and kubelet do between two reconciles."""
        self.pods = {name: pods for name, pods in self.pods.items() if name in self.deps}
        for name, dep in self.deps.items():
            rev = dep["spec"]["template"]["metadata"]["labels"][LABEL_REVISION]
            n = dep["spec"]["replicas"]
            pods = self.pods.setdefault(name, [])
            for pod in pods:  # created at the previous step: up now
                pod[1] = pod[1] or (pod[0] == rev and rev not in self.unready)
            new = sorted((p for p in pods if p[0] == rev), key=lambda p: not p[1])[:n]
            old = [p for p in pods if p[0] != rev]
            if dep["spec"]["strategy"]["type"] == "Recreate" or sum(ok for _, ok in new) >= n:
                old = []
            self.pods[name] = old + new + [[rev, False] for _ in range(n - len(new))]
        self.ready_seen.append(sum(1 for pods in self.pods.values() for _, ok in pods if ok))

    def run(self, now: datetime, limit: int = 40) -> Plan:
        """Reconcile until nothing more is written and every Pod is what its Deployment asks."""
        for _ in range(limit):
            result = self.reconcile(now)
            settled = all(
                len(pods) == self.deps[name]["spec"]["replicas"] and all(ok for _, ok in pods)
                for name, pods in self.pods.items()
            )
            if result.writes == 0 and settled:
                return result
        raise AssertionError(f"no convergence after {limit} reconciles: {self.status.get('message')}")

    def ready(self, track: str) -> int:
        return sum(1 for _, ok in self.pods.get(f"fraud-{track}", []) if ok)
