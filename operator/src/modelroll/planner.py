"""plan(subject, observed, now, image) -> Plan: what to apply, delete and report (pure).

The planner imports no kopf and no client, reads no environment and no clock: time and
the default server image are arguments. Every decision is derived from the object's
spec and status plus the observed children, so an operator restarted at any moment
makes the same decision again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import conditions as c
from .children import HASH_ANNOTATION, Owner, selector_string
from .observed import Observed
from .spec import ModelDeploymentSpec, SpecError, parse_spec
from .strategies.outcome import Outcome
from .strategies.rolling import plan_rolling

WARNING_PHASES = {c.DEGRADED, c.FAILED}


@dataclass(frozen=True)
class Subject:
    """The ModelDeployment being reconciled, as read from the API."""

    owner: Owner
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    apply: tuple[dict[str, Any], ...] = ()
    delete: tuple[ChildRef, ...] = ()
    status: dict[str, Any] | None = None  # the complete new status; None = unchanged
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None

    @property
    def writes(self) -> int:
        return len(self.apply) + len(self.delete) + (self.status is not None) + len(self.events)


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(subject: Subject, error: SpecError, now: datetime) -> Plan:
    message = f"invalid spec: {error}"
    status = {
        **subject.status,
        "observedGeneration": subject.generation,
        "phase": c.FAILED,
        "reason": c.INVALID_SPEC,
        "message": message,
        "conditions": c.merge_conditions(
            subject.status.get("conditions"),
            [
                c.condition(c.READY, False, c.INVALID_SPEC, message),
                c.condition(c.DEGRADED_COND, True, c.INVALID_SPEC, message),
            ],
            timestamp(now),
            subject.generation,
        ),
    }
    return _finish(subject, status, Plan(), [])


def _unsupported(spec: ModelDeploymentSpec) -> str | None:
    if spec.strategy.type != "Rolling":
        return f"spec.strategy.type {spec.strategy.type} is not supported by this operator version yet"
    if spec.traffic.gateway_api:
        return "spec.trafficRouting.gatewayAPI is not supported by this operator version yet"
    return None


def _history(previous: Mapping[str, Any], outcome: Outcome, limit: int, now: datetime) -> list[Any]:
    history = list(previous.get("history") or [])
    if outcome.promoted:
        entry = {**{k: outcome.promoted[k] for k in ("revision", "version", "digest")}, "promotedAt": timestamp(now)}
        history = [entry, *(h for h in history if h.get("revision") != entry["revision"])]
    return history[: max(limit, 1)]


def _changed_children(desired: list[dict[str, Any]], observed: Observed) -> list[dict[str, Any]]:
    """Desired children whose content hash differs from what is in the cluster."""
    live = {(kind, name): obj for _api, kind, name, obj in observed.owned()}
    out = []
    for obj in desired:
        current = live.get((obj["kind"], obj["metadata"]["name"]))
        have = (current or {}).get("metadata", {}).get("annotations", {}) or {}
        if have.get(HASH_ANNOTATION) != obj["metadata"]["annotations"][HASH_ANNOTATION]:
            out.append(obj)
    return out


def _stale_children(desired: list[dict[str, Any]], observed: Observed) -> list[ChildRef]:
    wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
    return [ChildRef(api, kind, name) for api, kind, name, _ in observed.owned() if (kind, name) not in wanted]


def _finish(subject: Subject, status: dict[str, Any], plan: Plan, events: list[Event]) -> Plan:
    """Attach the status (only if it changed) and the phase-change event."""
    old_phase = subject.status.get("phase")
    if status.get("phase") != old_phase:
        kind = "Warning" if status["phase"] in WARNING_PHASES else "Normal"
        events.append(Event(kind, status.get("reason") or status["phase"], status.get("message", "")))
    changed = dict(status) != dict(subject.status)
    return Plan(
        apply=plan.apply,
        delete=plan.delete,
        status=status if changed else None,
        events=tuple(events),
        requeue_after=plan.requeue_after,
    )


def effective_weights(outcome: Outcome) -> dict[str, int]:
    """The split the ready Pods really get (replica ratio), not the wish."""
    stable = (outcome.stable or {}).get("readyReplicas", 0)
    canary = (outcome.canary or {}).get("readyReplicas", 0)
    if not canary:
        return {"stable": 100, "canary": 0}
    share = round(100 * canary / (stable + canary))
    return {"stable": 100 - share, "canary": share}


def plan(subject: Subject, observed: Observed, now: datetime, image: str) -> Plan:
    owner = subject.owner
    try:
        spec = parse_spec(subject.spec)
    except SpecError as error:
        return _invalid(subject, error, now)
    unsupported = _unsupported(spec)
    if unsupported:
        return _invalid(subject, SpecError("spec", unsupported), now)

    image = spec.server.image or image
    outcome = plan_rolling(spec, owner, observed, subject.status, image)
    events: list[Event] = []
    if outcome.canary and (subject.status.get("canary") or {}).get("revision") != outcome.canary["revision"]:
        events.append(Event("Normal", "RolloutStarted", f"rolling out {outcome.canary.get('version') or outcome.canary['revision']}"))
    if outcome.promoted:
        events.append(Event("Normal", "Promoted", f"{outcome.promoted.get('version') or outcome.promoted['revision']} is now stable"))

    status: dict[str, Any] = {
        **{k: v for k, v in subject.status.items() if k not in ("canary",)},
        "observedGeneration": subject.generation,
        "phase": outcome.phase,
        "reason": outcome.reason,
        "message": outcome.message,
        "replicas": outcome.replicas,
        "readyReplicas": outcome.ready_replicas,
        "ready": f"{outcome.ready_replicas}/{outcome.desired_replicas}",
        "selector": selector_string(owner),
        "url": f"http://{owner.name}.{owner.namespace}.svc.cluster.local",
        "conditions": c.merge_conditions(
            subject.status.get("conditions"), outcome.conditions, timestamp(now), subject.generation
        ),
        "history": _history(subject.status, outcome, spec.revision_history_limit, now),
        **outcome.extra_status,
    }
    if outcome.stable:
        status["stable"] = outcome.stable
    if outcome.canary:
        status["canary"] = outcome.canary
    status["weights"] = effective_weights(outcome)
    body = Plan(
        apply=tuple(_changed_children(outcome.children, observed)),
        delete=tuple(_stale_children(outcome.children, observed)),
        requeue_after=outcome.requeue_after,
    )
    return _finish(subject, status, body, events)
