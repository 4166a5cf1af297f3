"""What the operator saw in the cluster for one ModelDeployment, as plain data (pure).

Filled by the I/O side from its watch caches; read by the planner. Helpers here turn raw
Deployment and Pod objects into the few numbers and reasons rollout decisions need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelroll_contract import LABEL_REVISION, REASON_BY_EXIT_CODE, termination_detail

from . import conditions as c
from .analysis.gates import Measurement
from .children import FETCH_CONTAINERS

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Observed:
    deployments: Mapping[str, Obj] = field(default_factory=dict)  # by name
    services: Mapping[str, Obj] = field(default_factory=dict)
    autoscalers: Mapping[str, Obj] = field(default_factory=dict)
    routes: Mapping[str, Obj] = field(default_factory=dict)  # HTTPRoutes
    configmaps: Mapping[str, Obj] = field(default_factory=dict)  # NAME-shadow
    # NAME-feedback, known to exist (metadata only). The operator may create Secrets but not read
    # them (list or watch would mean reading every Secret of the namespace), so this is
    # learnt from its own create, which answers AlreadyExists when the Secret is there. Not in
    # owned(): never deleted by the operator, garbage-collected with the ModelDeployment.
    secrets: Mapping[str, Obj] = field(default_factory=dict)
    pods: Sequence[Obj] = ()
    # The analysis measurement the controller took just before this reconcile (Prometheus
    # numbers, not yet judged); None when none was due. The strategies fold it into status.
    measurement: Measurement | None = None

    def owned(self) -> list[tuple[str, str, str, Obj]]:
        """(apiVersion, kind, name, object) of every observed child."""
        out: list[tuple[str, str, str, Obj]] = []
        for api, kind, objs in (
            ("apps/v1", "Deployment", self.deployments),
            ("v1", "Service", self.services),
            ("autoscaling/v2", "HorizontalPodAutoscaler", self.autoscalers),
            ("gateway.networking.k8s.io/v1", "HTTPRoute", self.routes),
            ("v1", "ConfigMap", self.configmaps),
        ):
            out.extend((api, kind, name, obj) for name, obj in objs.items())
        return out


@dataclass(frozen=True)
class DeploymentProgress:
    exists: bool
    at_revision: bool  # the controller has seen our latest template
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    available: int = 0
    deadline_exceeded: bool = False

    def complete(self, want: int) -> bool:
        return (
            self.at_revision
            and self.updated == want
            and self.replicas == want
            and self.available == want
            and self.ready == want
        )


def deployment_progress(dep: Obj | None, revision: str) -> DeploymentProgress:
    if dep is None:
        return DeploymentProgress(exists=False, at_revision=False)
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status", {}) or {}
    template_rev = spec.get("template", {}).get("metadata", {}).get("labels", {}).get(LABEL_REVISION)
    seen = status.get("observedGeneration", 0) >= meta.get("generation", 1)
    at_revision = seen and template_rev == revision
    exceeded = any(
        cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded"
        for cond in status.get("conditions", ()) or ()
    )
    return DeploymentProgress(
        exists=True,
        at_revision=at_revision,
        replicas=status.get("replicas", 0) or 0,
        ready=status.get("readyReplicas", 0) or 0,
        updated=status.get("updatedReplicas", 0) or 0,
        available=status.get("availableReplicas", 0) or 0,
        deadline_exceeded=at_revision and exceeded,
    )


def pod_is_ready(pod: Obj) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in pod.get("status", {}).get("conditions", ()) or ()
    )


def pods_of_revision(pods: Sequence[Obj], revision: str) -> list[Obj]:
    return [p for p in pods if p.get("metadata", {}).get("labels", {}).get(LABEL_REVISION) == revision]


_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}


def _classify(container: str, term: Obj) -> tuple[str, str]:
    """The reason a container stopped, from its exit code (the contract's), and its detail.

    Never from words in the message: a fetch that failed with a 404 on a URL containing
    "sha256" is a fetch failure. Exit codes the server does not use (a kill, an OOM) fall
    back to what the container was doing.
    """
    reason = REASON_BY_EXIT_CODE.get(term.get("exitCode", 0))
    if reason is None:
        reason = c.FETCH_FAILED if container in FETCH_CONTAINERS else c.MODEL_LOAD_FAILED
    return reason, f"{container}: {_termination_text(term)}"


def _termination_text(term: Obj) -> str:
    """The detail of the container's termination message (the server writes one line)."""
    message = (term.get("message") or "").strip()
    if message:
        return termination_detail(message.splitlines()[-1])
    return f"exited with {term.get('reason') or 'an error'} (exit code {term.get('exitCode', '?')})"


def _container_failure(cs: Obj) -> tuple[str, str] | None:
    name = cs.get("name", "?")
    waiting = (cs.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in _PULL_REASONS:
        return c.IMAGE_PULL_FAILED, f"{name}: {waiting.get('message') or waiting['reason']}"
    last = (cs.get("lastState") or {}).get("terminated") or {}
    if waiting.get("reason") == "CrashLoopBackOff":
        why = f"; last run {_termination_text(last)}" if last else ""
        reason, _ = _classify(name, last)
        return reason, f"{name}: crash-looping ({cs.get('restartCount', 0)} restarts){why}"
    for term in ((cs.get("state") or {}).get("terminated") or {}, last):
        if term and term.get("exitCode", 0) != 0:
            return _classify(name, term)
    return None


def pod_failure(pods: Sequence[Obj]) -> tuple[str, str] | None:
    """The first explanation the Pods give for not becoming Ready: (reason, message)."""
    for pod in pods:
        status = pod.get("status", {}) or {}
        name = pod.get("metadata", {}).get("name", "?")
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key, ()) or ():
                found = _container_failure(cs)
                if found:
                    return found[0], f"pod {name}: {found[1]}"
        for cond in status.get("conditions", ()) or ():
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return "Unschedulable", f"pod {name}: {cond.get('message') or 'cannot be scheduled'}"
    return None
