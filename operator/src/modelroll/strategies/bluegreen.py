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
from datetime import datetime, timedelta
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..actions import Requests
from ..analysis import state as analysis_state
from ..analysis.gates import POST_PROMOTION, PRE_PROMOTION
from ..children import Owner, build_deployment, build_pod_template, revision_of
from ..events import Event
from ..observed import Observed, deployment_progress
from ..spec import Analysis, ModelDeploymentSpec
from ..traffic.routing import Routing
from .canary import ROLLOUT_KEYS, steady
from .outcome import Outcome
from .rollout import abort_record, aborted_outcome, finish_promotion, open_rollout, past_deadline
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

    label = spec.model.version or rev
    same = (status.get("canary") or {}).get("revision") == rev
    state = dict(status.get("blueGreen") or {}) if same else {}
    stage = state.get("stage", PREVIEW)
    # Once finalizing, the stable track already runs the new revision: too late to abort.
    rollout = open_rollout(status, rev, label, requests, "blue-green rollout", abortable=stage != FINALIZING)
    aborted, retried, events = rollout.aborted, rollout.retried, rollout.events
    if retried:
        stage, state = PREVIEW, {}
    started = parse_time(state.get("startedAt"), now)

    n = spec.replicas
    stable_name, canary_name = f"{owner.name}-{TRACK_STABLE}", f"{owner.name}-{TRACK_CANARY}"
    preview = track_status(target, observed, TRACK_CANARY)
    preview_ready = deployment_progress(observed.deployments.get(canary_name), rev).complete(n)
    requeue: float | None = None
    waiting_for_person = False
    run: dict[str, Any] | None = status.get("analysis") if same else None
    waiting_analysis = False

    def analyse(analysis: Analysis | None, scope: str) -> bool:
        """Fold the measurement into the ``scope`` run; True if it lets the stage end."""
        nonlocal run, aborted, requeue
        if analysis is None:
            return True
        run, found = analysis_state.advance_run(
            status.get("analysis"), analysis, scope, rev, observed.measurement, None, restart=retried
        )
        events.extend(found)
        if run.get("outcome"):
            aborted = abort_record(
                rev, analysis_state.REASON_FAILED, f"{scope}Analysis of {label} failed: {run['message']}"
            )
            events.append(Event("Warning", analysis_state.REASON_FAILED, aborted["message"]))
            return False
        due = max(analysis_state.next_due_seconds(run, analysis, now), 1.0)
        requeue = due if requeue is None else min(requeue, due)
        return analysis_state.passed_at(run, None)

    if not aborted and stage == PREVIEW:
        if preview_ready:
            ready_at = parse_time(state.get("previewReadyAt"), now)
            state["previewReadyAt"] = stamp(ready_at)
            auto = bg.auto_promotion_seconds
            due = auto is not None and now >= ready_at + timedelta(seconds=auto)
            passed = analyse(bg.pre_promotion_analysis, PRE_PROMOTION)
            wanted = requests.has(actions.PROMOTE) or requests.has(actions.PROMOTE_FULL) or due
            if aborted:
                pass
            elif wanted and not passed:
                waiting_analysis = True  # a promote request stays pending until the analysis passes
            elif requests.take(actions.PROMOTE) or requests.take(actions.PROMOTE_FULL) or due:
                stage, state["switchedAt"] = SWITCHED, stamp(now)
                events.append(Event("Normal", "Switched", f"traffic switched to {label}"))
            elif auto is not None:
                left = (ready_at + timedelta(seconds=auto) - now).total_seconds()
                requeue = left if requeue is None else min(requeue, left)
            else:
                waiting_for_person = True
        else:
            aborted, requeue, late = past_deadline(
                spec.progress_deadline_seconds,
                observed,
                rev,
                started,
                now,
                f"preview {label}",
                f"{preview['readyReplicas']}/{n} preview Pods Ready",
            )
            events.extend(late)
    if not aborted and stage == SWITCHED:
        switched = parse_time(state.get("switchedAt"), now)
        remaining = (switched + timedelta(seconds=bg.scale_down_delay_seconds) - now).total_seconds()
        # The old track stays warm until postPromotionAnalysis passes; a failure switches back.
        passed = analyse(bg.post_promotion_analysis, POST_PROMOTION)
        if aborted:
            pass
        elif remaining <= 0 and passed:
            stage = FINALIZING
        elif remaining <= 0:
            waiting_analysis = True
        else:
            requeue = remaining if requeue is None else min(requeue, remaining)

    state.update(stage=stage, startedAt=stamp(started))
    children = [build_deployment(spec, owner, TRACK_CANARY, template, 0 if aborted else n, recreate=True)]
    held: dict[str, int] = {}
    if stage == FINALIZING and not aborted:
        children.append(
            build_deployment(spec, owner, TRACK_STABLE, build_pod_template(spec, owner, TRACK_STABLE, image), n)
        )
        if deployment_progress(observed.deployments.get(stable_name), rev).complete(n):
            return finish_promotion(
                spec,
                owner,
                observed,
                status,
                image,
                target,
                routing=Routing(active=TRACK_STABLE, preview=True),
                events=events,
                extra_status={},
                drop_status=ROLLOUT_KEYS + ("blueGreen",),
            )
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
    if run is not None:
        extra["analysis"] = run
    common: dict[str, Any] = dict(
        children=children,
        stable=stable_now,
        canary=preview,
        held=held,
        events=events,
        requeue_after=requeue,
        replicas=stable_now["replicas"] + preview["replicas"],
        ready_replicas=stable_now["readyReplicas"] + preview["readyReplicas"],
        desired_replicas=n,
        extra_status=extra,
        drop_status=() if aborted else ("aborted",),
        routing=Routing(active=active, preview=True),
    )
    old = stable.get("version") or stable["revision"]
    if aborted:
        return aborted_outcome(common, aborted, old, f"{aborted['message']}; {old} serving")
    if waiting_analysis and run is not None:
        waiting = "promotion" if stage == PREVIEW else "scale-down of the old track"
        message = (
            f"{label} {'preview' if stage == PREVIEW else 'active'}: {waiting} waits for a passing "
            f"measurement; {analysis_state.describe(run)}"
        )
    elif stage == PREVIEW:
        message = (
            f"preview {label} ready on {owner.name}-preview; waiting for `kubectl modelroll promote {owner.name}`"
            if waiting_for_person
            else f"preview {label}: {preview['readyReplicas']}/{n} Ready"
            + (" (auto-promotion pending)" if preview_ready else "")
        )
    elif stage == SWITCHED:
        message = f"{label} active; {old} kept warm for {bg.scale_down_delay_seconds}s"
    else:
        message = f"{label} active; stable track rolling to it before the preview track scales down"
    phase = c.PAUSED if waiting_for_person else c.PROGRESSING
    return Outcome(
        **common,
        phase=phase,
        reason=f"BlueGreen{stage}",
        message=message,
        conditions=[
            c.condition(c.READY, True, c.ALL_READY, f"{label if active == TRACK_CANARY else old} serving"),
            c.condition(c.PROGRESSING_COND, True, f"BlueGreen{stage}", message),
            c.condition(c.DEGRADED_COND, False, c.AS_EXPECTED, "no problems found"),
            c.condition(
                c.MODEL_VERIFIED,
                True if preview["readyReplicas"] else None,
                c.DIGEST_VERIFIED if preview["readyReplicas"] else c.WAITING_FOR_PODS,
                f"{preview['readyReplicas']} preview Pod(s) loaded the verified model",
            ),
        ],
    )
