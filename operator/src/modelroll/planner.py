"""plan(subject, observed, now, image) -> Plan: what to apply, delete and report (pure).

The planner imports no kopf and no client, reads no environment and no clock: time and
the default server image are arguments. Every decision is derived from the object's
spec and status plus the observed children, so an operator restarted at any moment
makes the same decision again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from . import actions
from . import conditions as c
from .actions import Requests, read_requests, settle
from .analysis import state as analysis_state
from .children import (
    HASH_ANNOTATION,
    Owner,
    build_shadow_config,
    feedback_secret_name,
    selector_string,
    shadow_config,
    shadow_version,
)
from .events import Event
from .observed import Observed
from .spec import SpecError, parse_spec
from .strategies.bluegreen import plan_bluegreen
from .strategies.canary import plan_canary
from .strategies.context import Context
from .strategies.outcome import Outcome
from .strategies.rolling import plan_rolling
from .strategies.tracks import IDENTITY_KEYS, canary_floor, ready_on_track, spec_for
from .strategies.undo import resolve_pin
from .traffic import router_for

WARNING_PHASES = {c.DEGRADED, c.FAILED}
timestamp = analysis_state.stamp  # status times: whole seconds, UTC
NO_ACTIONS_IN_ROLLING = (
    "a rolling update has no steps to promote and cannot be aborted (`kubectl modelroll undo {name}`)"
)


@dataclass(frozen=True)
class Subject:
    """The ModelDeployment being reconciled, as read from the API."""

    owner: Owner
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    apply: tuple[dict[str, Any], ...] = ()
    delete: tuple[ChildRef, ...] = ()
    scale: tuple[tuple[str, int], ...] = ()  # (Deployment, replicas) through the scale subresource
    # create Secret NAME-feedback (children.build_feedback_secret) with a random key, before the
    # Pods that read it: only when it is not known to exist, and never written afterwards
    create_feedback_secret: bool = False
    status: dict[str, Any] | None = None  # the complete new status; None = unchanged
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None

    @property
    def writes(self) -> int:
        return (len(self.apply) + len(self.delete) + len(self.scale) + self.create_feedback_secret
                + (self.status is not None) + len(self.events))  # fmt: skip


def _invalid(subject: Subject, requests: Requests, error: SpecError, now: datetime) -> Plan:
    message = f"invalid spec: {error}"
    settled = settle(requests, subject.status, (), (), {}, None, "the spec is invalid")
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
    settled.record(status)
    return _finish(subject, status, Plan(), settled.events)


def _history(previous: Mapping[str, Any], outcome: Outcome, limit: int, now: datetime) -> list[Any]:
    history = list(previous.get("history") or [])
    if outcome.promoted:
        entry = {
            **{k: outcome.promoted[k] for k in IDENTITY_KEYS if k in outcome.promoted},
            "promotedAt": timestamp(now),
        }
        history = [entry, *(h for h in history if h.get("revision") != entry["revision"])]
    return history[: max(limit, 1)]


def _changed_children(desired: list[dict[str, Any]], observed: Observed) -> list[dict[str, Any]]:
    """Desired children whose content hash differs from what is in the cluster, or whose
    replicas do (a held track is scaled through the scale subresource, which keeps the hash)."""
    live = {(kind, name): obj for _api, kind, name, obj in observed.owned()}
    out = []
    for obj in desired:
        current = live.get((obj["kind"], obj["metadata"]["name"])) or {}
        have = current.get("metadata", {}).get("annotations", {}) or {}
        scaled = obj["kind"] == "Deployment" and (current.get("spec") or {}).get("replicas") != obj["spec"]["replicas"]
        if have.get(HASH_ANNOTATION) != obj["metadata"]["annotations"][HASH_ANNOTATION] or scaled:
            out.append(obj)
    return out


def _stale_children(desired: list[dict[str, Any]], observed: Observed, held: Mapping[str, int]) -> list[ChildRef]:
    wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
    wanted |= {("Deployment", name) for name in held}
    return [ChildRef(api, kind, name) for api, kind, name, _ in observed.owned() if (kind, name) not in wanted]


def _finish(subject: Subject, status: dict[str, Any], plan: Plan, events: list[Event]) -> Plan:
    """Attach the status (only if it changed) and the phase-change event, unless an event of
    this reconcile already gives its reason (an abort's Warning, say)."""
    old_phase = subject.status.get("phase")
    told = {event.reason for event in events}
    if status.get("phase") != old_phase and (status.get("reason") or status["phase"]) not in told:
        kind = "Warning" if status["phase"] in WARNING_PHASES else "Normal"
        events.append(Event(kind, status.get("reason") or status["phase"], status.get("message", "")))
    changed = dict(status) != dict(subject.status)
    return Plan(
        apply=plan.apply,
        delete=plan.delete,
        scale=plan.scale,
        create_feedback_secret=plan.create_feedback_secret,
        status=status if changed else None,
        events=tuple(events),
        requeue_after=plan.requeue_after,
    )


def _ready_split(outcome: Outcome, observed: Observed, rolling: bool) -> tuple[int, int]:
    """Ready Pods (stable, canary) the router splits traffic between. A rolling update has
    one track, so there the split is between the ready Pods of the old and the new revision."""
    if rolling:
        return (outcome.stable or {}).get("readyReplicas", 0), (outcome.canary or {}).get("readyReplicas", 0)
    return ready_on_track(observed, TRACK_STABLE), ready_on_track(observed, TRACK_CANARY)


STRATEGIES: dict[str, Callable[[Context], Outcome]] = {
    "Rolling": plan_rolling,
    "Canary": plan_canary,
    "BlueGreen": plan_bluegreen,
}


def _pinned(ctx: Context, pinned: Mapping[str, Any]) -> Outcome:
    """Serve the revision an undo pinned, as a rolling update of the stable track."""
    outcome = plan_rolling(replace(ctx, spec=spec_for(ctx.spec, pinned)))
    name, asked = ctx.owner.name, ctx.spec.model.version or "the spec's model"
    note = (
        f"; pinned to {pinned.get('version') or pinned['revision']} by undo while spec asks for {asked} "
        f"(change the spec or `kubectl modelroll retry {name}`)"
    )
    why = f"serving {pinned.get('version') or pinned['revision']}, pinned by undo"
    return replace(
        outcome,
        message=outcome.message + note,
        extra_status={"pinned": pinned},
        drop_status=("currentStep", "stepStartedAt", "aborted", "blueGreen"),
        declined={action: why for action in actions.ONE_SHOT},
    )


def _strategy(ctx: Context, generation: int) -> Outcome:
    """Undo first (it decides which revision is wanted), then the spec's strategy."""
    pinned, pin_events, pin_acted = resolve_pin(ctx.status, ctx.requests, generation)
    ctx = replace(ctx, requests=ctx.requests.without(pin_acted))
    if pinned:
        outcome = _pinned(ctx, pinned)
    else:
        outcome = STRATEGIES[ctx.spec.strategy.type](ctx)
        outcome = replace(outcome, drop_status=(*outcome.drop_status, "pinned"))
    outcome = replace(outcome, events=pin_events + outcome.events, acted=outcome.acted | pin_acted)
    return _keep_needed_canary(ctx, outcome)


def _keep_needed_canary(ctx: Context, outcome: Outcome) -> Outcome:
    """A canary track the outcome drops (undo, a spec back at the stable revision) keeps the
    Pods the ready count still needs until the stable track alone is back at full strength."""
    name = ctx.name(TRACK_CANARY)
    wanted = any(o["kind"] == "Deployment" and o["metadata"]["name"] == name for o in outcome.children)
    floor = canary_floor(ctx)
    if wanted or name in outcome.held or not floor:
        return outcome
    return replace(outcome, held={**outcome.held, name: floor})


def _shadow(owner: Owner, outcome: Outcome, observed: Observed) -> dict[str, Any]:
    """ConfigMap NAME-shadow: what the stable track copies to the canary (empty: nothing). It
    names the canary Service by its ClusterIP, so it stays empty until that Service is seen."""
    canary = outcome.canary or {}
    service = observed.services.get(f"{owner.name}-{TRACK_CANARY}") or {}
    ip = (service.get("spec") or {}).get("clusterIP")
    if not outcome.routing.shadow_percent or not canary or not ip or ip == "None":
        return build_shadow_config(owner, None)
    version = shadow_version(str(canary.get("version") or ""), str(canary["revision"]))
    return build_shadow_config(owner, shadow_config(ip, outcome.routing.shadow_percent, version))


def plan(subject: Subject, observed: Observed, now: datetime, image: str) -> Plan:
    owner = subject.owner
    requests = read_requests(subject.annotations, subject.status)
    try:
        spec = parse_spec(subject.spec)
    except SpecError as error:
        return _invalid(subject, requests, error, now)
    router = router_for(spec)  # the one place that looks at which router the spec asks for
    refusal = router.refusal()
    if refusal:
        return _invalid(subject, requests, SpecError("spec", refusal), now)

    ctx = Context(spec, owner, observed, subject.status, requests, now, spec.server.image or image, router)
    outcome = _strategy(ctx, subject.generation)
    rollout = (outcome.canary or {}).get("revision")
    why = "no rollout in progress" if outcome.canary is None else NO_ACTIONS_IN_ROLLING.format(name=owner.name)
    settled = settle(requests, subject.status, outcome.acted, outcome.deferred, outcome.declined, rollout, why)
    desired = [*outcome.children, *router.build(owner, outcome.routing), _shadow(owner, outcome, observed)]
    events = list(outcome.events) + settled.events
    rolling = spec.strategy.type == "Rolling"
    if rolling and outcome.canary and (subject.status.get("canary") or {}).get("revision") != rollout:
        events.append(Event("Normal", "RolloutStarted", f"rolling out {outcome.canary.get('version') or rollout}"))
    if outcome.promoted:
        label = outcome.promoted.get("version") or outcome.promoted["revision"]
        events.append(Event("Normal", "Promoted", f"{label} is now stable"))

    status: dict[str, Any] = {
        **{k: v for k, v in subject.status.items() if k not in ("canary", "deferred", *outcome.drop_status)},
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
    settled.record(status)
    if outcome.stable:
        status["stable"] = outcome.stable
    if outcome.canary:
        status["canary"] = outcome.canary
    status["weights"] = router.weights(outcome.routing, *_ready_split(outcome, observed, rolling))
    live = observed.deployments
    body = Plan(
        apply=tuple(_changed_children(desired, observed)),
        delete=tuple(_stale_children(desired, observed, outcome.held)),
        scale=tuple(
            (name, n) for name, n in outcome.held.items() if (live.get(name) or {}).get("spec", {}).get("replicas") != n
        ),
        create_feedback_secret=feedback_secret_name(owner) not in observed.secrets,
        requeue_after=outcome.requeue_after,
    )
    return _finish(subject, status, body, events)
