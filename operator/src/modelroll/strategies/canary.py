"""The Canary strategy: a new revision on its own track, given weight step by step (pure).

State lives in status (``currentStep``, ``stepStartedAt``, ``aborted``) and in the observed
Deployments, so an operator restarted at any moment resumes at the same step: a step only
advances once its condition holds in what was observed, and each advance is written to
status before anything depends on it.

Order of a rollout: the canary track comes up behind its weight; pauses wait for a clock
or a person; after the last step the stable track rolls to the new revision while the
canary keeps serving, and only when stable is Ready at it does the canary go away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..actions import Requests
from ..analysis import state as analysis_state
from ..analysis.gates import CANARY_SCOPE
from ..children import Owner, build_deployment, build_pod_template, revision_of
from ..events import Event
from ..observed import Observed, deployment_progress
from ..spec import ModelDeploymentSpec, Step
from ..traffic.routing import Routing
from .outcome import Outcome
from .rolling import plan_rolling
from .rollout import abort_record, aborted_outcome, finish_promotion, open_rollout, past_deadline
from .tracks import hold_or_rebuild, identity, parse_time, track_status

ROLLOUT_KEYS = ("currentStep", "stepCount", "stepStartedAt", "aborted")


def weight_at(steps: tuple[Step, ...], step: int) -> int:
    """The weight in force at ``step``: the last setWeight at or before it."""
    weight = 0
    for s in steps[: step + 1]:
        if s.set_weight is not None:
            weight = s.set_weight
    return weight


def steady(
    spec: ModelDeploymentSpec,
    owner: Owner,
    observed: Observed,
    status: Mapping[str, Any],
    image: str,
    routing: Routing,
    extra: dict[str, Any],
) -> Outcome:
    """No rollout in progress (first revision, or stable is the spec's): plain Rolling on the
    stable track; the canary track and the rollout bookkeeping go away."""
    out = plan_rolling(spec, owner, observed, status, image)
    return replace(out, routing=routing, extra_status=extra, drop_status=ROLLOUT_KEYS + ("blueGreen",))


def plan_canary(
    spec: ModelDeploymentSpec,
    owner: Owner,
    observed: Observed,
    status: Mapping[str, Any],
    requests: Requests,
    now: datetime,
    stamp: Callable[[datetime], str],
    image: str,
    canary_replicas: Callable[[int, int], int],
) -> Outcome:
    steps = spec.strategy.canary.steps if spec.strategy.canary else ()
    n_steps = len(steps)
    template = build_pod_template(spec, owner, TRACK_CANARY, image)
    rev = revision_of(template)
    target = identity(spec, rev)
    stable = status.get("stable")
    shadow = spec.traffic.shadow_percent
    if not stable or stable.get("revision") == rev:
        return steady(spec, owner, observed, status, image, Routing(), {"stepCount": n_steps})

    label = spec.model.version or rev
    rollout = open_rollout(status, rev, label, requests, "canary rollout")
    same, aborted, retried, events = rollout.same, rollout.aborted, rollout.retried, rollout.events
    fresh = not same or retried
    step = 0 if fresh else int(status.get("currentStep", 0))
    started = now if fresh else parse_time(status.get("stepStartedAt"), now)
    # Analysis: fold the controller's measurement into the run; too many failures abort
    # exactly like a user's abort. The run is kept in status after an abort to show why.
    analysis = spec.strategy.canary.analysis if spec.strategy.canary else None
    run: dict[str, Any] | None = None
    if analysis is not None:
        measurement = observed.measurement if not aborted and step < n_steps else None
        run, analysis_events = analysis_state.advance_run(
            status.get("analysis"), analysis, CANARY_SCOPE, rev, measurement, step, restart=retried
        )
        events.extend(analysis_events)
        if not aborted and run.get("outcome"):
            aborted = abort_record(
                rev, analysis_state.REASON_FAILED, f"analysis of canary {label} failed: {run['message']}"
            )
            events.append(Event("Warning", analysis_state.REASON_FAILED, aborted["message"]))

    def analysis_passed(at: int) -> bool:
        return run is None or analysis_state.passed_at(run, at)

    n = spec.replicas
    stable_name, canary_name = f"{owner.name}-{TRACK_STABLE}", f"{owner.name}-{TRACK_CANARY}"
    rebuilt = hold_or_rebuild(observed, stable_name, spec, owner, TRACK_STABLE, stable, image)
    canary_progress = deployment_progress(observed.deployments.get(canary_name), rev)
    canary_now = track_status(target, observed, TRACK_CANARY)
    requeue: float | None = None
    paused_for: str | None = None
    waiting_analysis = False

    if not aborted:
        if requests.take(actions.PROMOTE_FULL):
            step, started = n_steps, now
            events.append(Event("Normal", "PromotedFull", f"{label}: remaining steps skipped by a user"))
        while step < n_steps and not requests.paused:
            s = steps[step]
            if s.set_weight is not None:
                want = canary_replicas(s.set_weight, n)
                if (
                    canary_progress.at_revision
                    and canary_now["readyReplicas"] >= want
                    and canary_now["replicas"] == want
                ):
                    if not analysis_passed(step):
                        waiting_analysis = True  # weight reached; the step ends on a Pass measured in it
                        break
                    step, started = step + 1, now
                    continue
                aborted, requeue, late = past_deadline(
                    spec.progress_deadline_seconds,
                    observed,
                    rev,
                    started,
                    now,
                    f"canary {label}",
                    f"{canary_now['readyReplicas']}/{want} canary Pods Ready",
                )
                events.extend(late)
                break
            if requests.take(actions.PROMOTE):
                step, started = step + 1, now
                events.append(Event("Normal", "Promoted", f"{label}: pause {step}/{n_steps} promoted by a user"))
                continue
            if s.pause_seconds is None:
                paused_for = f"step {step + 1}/{n_steps}: paused until `kubectl modelroll promote {owner.name}`"
                break
            remaining = (started - now).total_seconds() + s.pause_seconds
            if remaining <= 0 and analysis_passed(step):
                step, started = step + 1, now
                continue
            if remaining <= 0:
                waiting_analysis = True
            else:
                requeue = remaining
            break
        if requests.paused and step < n_steps:
            paused_for = f"step {step + 1}/{n_steps}: paused by a user (`kubectl modelroll resume {owner.name}`)"

    weight = 0 if aborted else (weight_at(steps, step) if step < n_steps else weight_at(steps, n_steps - 1))
    canary_want = 0 if aborted else canary_replicas(weight, n)
    children = [build_deployment(spec, owner, TRACK_CANARY, template, canary_want, recreate=True)]
    held: dict[str, int] = {}
    promoting = step >= n_steps and not aborted
    if promoting:
        children.append(
            build_deployment(spec, owner, TRACK_STABLE, build_pod_template(spec, owner, TRACK_STABLE, image), n)
        )
    elif rebuilt is not None:
        children.append(build_deployment(spec, owner, TRACK_STABLE, rebuilt, n))
    else:
        held[stable_name] = n

    stable_now = track_status(stable, observed, TRACK_STABLE)
    extra = {"currentStep": min(step, n_steps), "stepCount": n_steps, "stepStartedAt": stamp(started)}
    if aborted:
        extra["aborted"] = aborted
    if run is not None:
        extra["analysis"] = run
        if not aborted and step < n_steps and not run.get("outcome"):
            # Come back when the next measurement is due (at most once a second).
            due = max(analysis_state.next_due_seconds(run, analysis, now), 1.0)  # type: ignore[arg-type]
            requeue = due if requeue is None else min(requeue, due)
    drop = () if aborted else ("aborted",)
    stable_progress = deployment_progress(observed.deployments.get(stable_name), rev)
    if promoting and stable_progress.complete(n):
        # Stable runs the new revision everywhere: it is promoted; the canary track goes.
        kept = {"analysis": run} if run is not None else {}
        return finish_promotion(
            spec,
            owner,
            observed,
            status,
            image,
            target,
            routing=Routing(),
            events=events,
            extra_status={"stepCount": n_steps, **kept},
            drop_status=ROLLOUT_KEYS,
        )

    ready = stable_now["readyReplicas"] + canary_now["readyReplicas"]
    common: dict[str, Any] = dict(
        children=children,
        stable=stable_now,
        canary=canary_now,
        held=held,
        events=events,
        requeue_after=requeue,
        replicas=stable_now["replicas"] + canary_now["replicas"],
        ready_replicas=ready,
        desired_replicas=n,
        extra_status=extra,
        drop_status=drop,
        routing=Routing(canary_weight=weight, mirror_percent=shadow if not aborted else 0),
    )
    if aborted:
        old = stable.get("version") or stable["revision"]
        return aborted_outcome(common, aborted, old, f"{aborted['message']}; {old} serving at full weight")
    if promoting:
        message = (
            f"promoting {label}: stable track {stable_progress.updated}/{n} updated; "
            f"canary keeps serving until stable is Ready"
        )
    elif paused_for:
        message = f"{paused_for}; canary {label} at {weight}%"
    elif waiting_analysis and run is not None:
        message = (
            f"step {step + 1}/{n_steps}: canary {label} at {weight}%, waiting for a passing measurement; "
            f"{analysis_state.describe(run)}"
        )
    else:
        canary_ready = f"{canary_now['readyReplicas']}/{canary_want}"
        message = f"step {step + 1}/{n_steps}: canary {label} at {weight}%, {canary_ready} Pods Ready"
    phase = c.PAUSED if paused_for and not promoting else c.PROGRESSING
    verified = canary_now["readyReplicas"] > 0
    return Outcome(
        **common,
        phase=phase,
        reason="CanaryPaused" if phase == c.PAUSED else "CanaryProgressing",
        message=message,
        conditions=[
            c.condition(c.READY, True, c.ALL_READY, f"{stable.get('version') or stable['revision']} serving"),
            c.condition(c.PROGRESSING_COND, True, "CanaryProgressing", message),
            c.condition(c.DEGRADED_COND, False, c.AS_EXPECTED, "no problems found"),
            c.condition(
                c.MODEL_VERIFIED,
                True if verified else None,
                c.DIGEST_VERIFIED if verified else c.WAITING_FOR_PODS,
                f"{canary_now['readyReplicas']} canary Pod(s) loaded the verified model"
                if verified
                else "waiting for a canary Pod to load the model",
            ),
        ],
    )
