"""The BlueGreen strategy: the new revision at full scale behind NAME-preview, then one
switch of the main Service (or HTTPRoute), with the old track kept warm (pure).

Stages, recorded in ``status.blueGreen.stage``:
  Preview     the new revision comes up on the canary track; NAME still selects stable.
  Switched    NAME selects the canary track (one write); the old stable Pods stay warm for
              ``scaleDownDelaySeconds`` so a switch back is instant.
  Finalizing  the stable track rolls to the new revision while the canary serves; once it
              is Ready, NAME selects stable again and the canary track goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..actions import Requests
from ..children import Owner, build_deployment, build_pod_template, revision_of
from ..observed import Observed, deployment_progress, pod_failure, pods_of_revision
from ..spec import ModelDeploymentSpec
from ..traffic.routing import Routing
from .canary import ROLLOUT_KEYS, abort_record, steady
from .outcome import Outcome
from .rolling import plan_rolling
from .tracks import hold_or_rebuild, identity, parse_time, track_status

PREVIEW, SWITCHED, FINALIZING = "Preview", "Switched", "Finalizing"


def plan_bluegreen(
    spec: ModelDeploymentSpec,
    owner: Owner,
    observed: Observed,
    status: Mapping[str, Any],
    requests: Requests,
    now: datetime,
    stamp: Callable[[datetime], str],
    image: str,
) -> Outcome:
    bg = spec.strategy.blue_green
    assert bg is not None
    template = build_pod_template(spec, owner, TRACK_CANARY, image)
    rev = revision_of(template)
    target = identity(spec, rev)
    stable = status.get("stable")
    if not stable or stable.get("revision") == rev:
        return steady(spec, owner, observed, status, image, Routing(active=TRACK_STABLE, preview=True), {})

    events: list[tuple[str, str, str]] = []
    label = spec.model.version or rev
    same = (status.get("canary") or {}).get("revision") == rev
    state = dict(status.get("blueGreen") or {}) if same else {}
    stage = state.get("stage", PREVIEW)
    started = parse_time(state.get("startedAt"), now)
    aborted = status.get("aborted") if (status.get("aborted") or {}).get("revision") == rev else None
    if not same:
        events.append(("Normal", "RolloutStarted", f"blue-green rollout of {label}: preview coming up"))
    if aborted and requests.take(actions.RETRY):
        aborted, stage, state, started = None, PREVIEW, {}, now
        events.append(("Normal", "Retry", f"blue-green rollout of {label} retried"))
    if not aborted and stage != FINALIZING and requests.take(actions.ABORT):
        aborted = abort_record(rev, "Aborted", f"rollout of {label} aborted by a user")
        events.append(("Warning", "Aborted", aborted["message"]))

    n = spec.replicas
    stable_name, canary_name = f"{owner.name}-{TRACK_STABLE}", f"{owner.name}-{TRACK_CANARY}"
    preview = track_status(target, observed, TRACK_CANARY)
    preview_ready = deployment_progress(observed.deployments.get(canary_name), rev).complete(n)
    requeue: float | None = None
    waiting_for_person = False

    if not aborted and stage == PREVIEW:
        if preview_ready:
            ready_at = parse_time(state.get("previewReadyAt"), now)
            state["previewReadyAt"] = stamp(ready_at)
            auto = bg.auto_promotion_seconds
            due = auto is not None and now >= ready_at + timedelta(seconds=auto)
            if requests.take(actions.PROMOTE) or requests.take(actions.PROMOTE_FULL) or due:
                stage, state["switchedAt"] = SWITCHED, stamp(now)
                events.append(("Normal", "Switched", f"traffic switched to {label}"))
            elif auto is not None:
                requeue = (ready_at + timedelta(seconds=auto) - now).total_seconds()
            else:
                waiting_for_person = True
        elif (now - started).total_seconds() > spec.progress_deadline_seconds:
            reason, detail = pod_failure(pods_of_revision(observed.pods, rev)) or (
                c.DEADLINE_EXCEEDED, f"{preview['readyReplicas']}/{n} preview Pods Ready")
            aborted = abort_record(rev, reason, f"preview {label} not Ready within {spec.progress_deadline_seconds}s: {detail}")
            events.append(("Warning", reason, aborted["message"]))
        else:
            requeue = spec.progress_deadline_seconds - (now - started).total_seconds() + 1
    if not aborted and stage == SWITCHED:
        switched = parse_time(state.get("switchedAt"), now)
        remaining = (switched + timedelta(seconds=bg.scale_down_delay_seconds) - now).total_seconds()
        if remaining <= 0:
            stage = FINALIZING
        else:
            requeue = remaining

    state.update(stage=stage, startedAt=stamp(started))
    children = [build_deployment(spec, owner, TRACK_CANARY, template, 0 if aborted else n, recreate=True)]
    held: dict[str, int] = {}
    if stage == FINALIZING and not aborted:
        children.append(build_deployment(spec, owner, TRACK_STABLE, build_pod_template(spec, owner, TRACK_STABLE, image), n))
        if deployment_progress(observed.deployments.get(stable_name), rev).complete(n):
            done = plan_rolling(spec, owner, observed, {**status, "stable": target}, image)
            history = status.get("history") or [{}]
            promoted = None if history[0].get("revision") == rev else target
            return replace(done, routing=Routing(active=TRACK_STABLE, preview=True), promoted=promoted,
                           events=events, extra_status={}, drop_status=ROLLOUT_KEYS + ("blueGreen",))
    else:
        rebuilt = hold_or_rebuild(observed, stable_name, spec, owner, TRACK_STABLE, stable, image)
        if rebuilt is not None:
            children.append(build_deployment(spec, owner, TRACK_STABLE, rebuilt, n))
        else:
            held[stable_name] = n

    active = TRACK_CANARY if stage in (SWITCHED, FINALIZING) and not aborted else TRACK_STABLE
    stable_now = track_status(stable, observed, TRACK_STABLE)
    extra: dict[str, Any] = {"blueGreen": state}
    if aborted:
        extra["aborted"] = aborted
    common: dict[str, Any] = dict(
        children=children, stable=stable_now, canary=preview, held=held, events=events, requeue_after=requeue,
        replicas=stable_now["replicas"] + preview["replicas"],
        ready_replicas=stable_now["readyReplicas"] + preview["readyReplicas"], desired_replicas=n,
        extra_status=extra, drop_status=() if aborted else ("aborted",),
        routing=Routing(active=active, preview=True),
    )
    old = stable.get("version") or stable["revision"]
    if aborted:
        message = f"{aborted['message']}; {old} serving"
        return Outcome(**common, phase=c.DEGRADED, reason=aborted["reason"], message=message, conditions=[
            c.condition(c.READY, True, c.ALL_READY, f"{old} serving"),
            c.condition(c.PROGRESSING_COND, False, aborted["reason"], message),
            c.condition(c.DEGRADED_COND, True, aborted["reason"], message),
            c.condition(c.MODEL_VERIFIED, False if aborted["reason"] == c.INTEGRITY_MISMATCH else None,
                        aborted["reason"], aborted["message"]),
        ])
    if stage == PREVIEW:
        message = (f"preview {label} ready on {owner.name}-preview; waiting for `kubectl modelroll promote {owner.name}`"
                   if waiting_for_person else
                   f"preview {label}: {preview['readyReplicas']}/{n} Ready" + (" (auto-promotion pending)" if preview_ready else ""))
    elif stage == SWITCHED:
        message = f"{label} active; {old} kept warm for {bg.scale_down_delay_seconds}s"
    else:
        message = f"{label} active; stable track rolling to it before the preview track scales down"
    phase = c.PAUSED if waiting_for_person else c.PROGRESSING
    return Outcome(**common, phase=phase, reason=f"BlueGreen{stage}", message=message, conditions=[
        c.condition(c.READY, True, c.ALL_READY, f"{label if active == TRACK_CANARY else old} serving"),
        c.condition(c.PROGRESSING_COND, True, f"BlueGreen{stage}", message),
        c.condition(c.DEGRADED_COND, False, c.AS_EXPECTED, "no problems found"),
        c.condition(c.MODEL_VERIFIED, True if preview["readyReplicas"] else None,
                    c.DIGEST_VERIFIED if preview["readyReplicas"] else c.WAITING_FOR_PODS,
                    f"{preview['readyReplicas']} preview Pod(s) loaded the verified model"),
    ])
