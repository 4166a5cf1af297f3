"""The Canary strategy: a new revision on its own track, given weight step by step (pure).

State lives in status (``currentStep``, ``stepStartedAt``, ``aborted``) and in the observed
Deployments, so an operator restarted at any moment resumes at the same step: a step only
advances once its condition holds in what was observed, and each advance is written to
status before anything depends on it.

Order of a rollout: with a shadow share in the spec, a shadow phase first (an implicit
step 0, ``spec.rollout_steps``): the canary Pods come up as for the first step but serve no
user — the main Service selects the stable track alone, and the canary Pods are only created
once it is observed doing so — while the stable track's servers copy a share of their requests
to the canary and compare its answers (the ConfigMap the planner writes from
``Routing.shadow_percent``); it ends, like any step, on a Pass measured in it. Then the canary
track comes up behind its weight; pauses wait for a clock or a person; after the last step the
stable track rolls to the new revision while the canary keeps serving, and only when stable is
Ready at it does the canary go away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from modelroll_contract import LABEL_TRACK, TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..analysis import state as analysis_state
from ..analysis.gates import CANARY_SCOPE, analysis_at
from ..analysis.state import parse_stamp
from ..events import normal
from ..spec import Analysis, Step, rollout_steps
from ..traffic.routing import Routing
from .context import Context
from .outcome import Outcome
from .rollout import ROLLOUT_KEYS, TwoTrack, steady
from .tracks import canary_floor, ready_on_track, track_status


def weight_at(steps: tuple[Step, ...], step: int) -> int:
    """The weight in force at ``step``: the last setWeight at or before it."""
    return next((s.set_weight for s in reversed(steps[: step + 1]) if s.set_weight is not None), 0)


@dataclass
class Position:
    step: int
    started: datetime
    paused_for: str | None = None  # why the rollout waits for a person
    waiting_analysis: bool = False  # the step's condition holds but no passing measurement yet


def shadowing_at(steps: tuple[Step, ...], step: int) -> int:
    """The share stable copies to the canary at ``step`` (0: not the shadow phase)."""
    return (steps[step].shadow_percent or 0) if step < len(steps) else 0


def analysis_for(ctx: Context, steps: tuple[Step, ...], step: int) -> Analysis | None:
    """The gates that judge ``step``: all of them in the shadow phase, all but
    predictionAgreement after it (None: nothing left to hold the step)."""
    full = ctx.spec.strategy.canary.analysis if ctx.spec.strategy.canary else None
    return analysis_at(full, bool(shadowing_at(steps, step)))


def users_kept_off(ctx: Context) -> bool:
    """Whether the main Service, as observed, selects the stable track alone: until it does,
    no canary Pod of a shadow phase is created (it would be an endpoint users reach)."""
    service = ctx.observed.services.get(ctx.owner.name) or {}
    return bool((service.get("spec") or {}).get("selector", {}).get(LABEL_TRACK) == TRACK_STABLE)


def replicas_at(ctx: Context, steps: tuple[Step, ...], step: int) -> tuple[int, int]:
    """(stable, canary) Pods at ``step``: the shadow phase runs the canary Pods of the first
    setWeight step (at least one) beside a full stable track, which serves every user."""
    if shadowing_at(steps, step):
        first = next((s.set_weight for s in steps if s.set_weight), 0)
        return ctx.replicas, max(1, ctx.router.replicas(first, ctx.replicas)[1]) if users_kept_off(ctx) else 0
    return ctx.router.replicas(weight_at(steps, step), ctx.replicas)


def _step_done(r: TwoTrack, steps: tuple[Step, ...], at: Position) -> bool:
    """Whether the current step's own condition holds in what was observed."""
    ctx, step = r.ctx, steps[at.step]
    if step.set_weight is not None or step.shadow_percent is not None:
        stable_want, want = replicas_at(ctx, steps, at.step)
        canary = track_status(r.target, ctx.observed, TRACK_CANARY)
        stable_live = track_status(r.stable, ctx.observed, TRACK_STABLE)["replicas"]
        up = want > 0 and canary["readyReplicas"] >= want and canary["replicas"] == want and stable_live <= stable_want
        if ctx.progress(TRACK_CANARY, r.rev).at_revision and up:
            # the step ends on a Pass measured in it
            at.waiting_analysis = analysis_for(ctx, steps, at.step) is not None and not r.passed(at.step)
            return not at.waiting_analysis
        ready = f"{canary['readyReplicas']}/{want} canary Pods Ready"
        r.check_deadline(at.started, f"canary {r.label}", ready)
        return False
    if step.pause_seconds is None:
        name = ctx.owner.name
        at.paused_for = f"step {at.step + 1}/{len(steps)}: paused until `kubectl modelroll promote {name}`"
        return False
    remaining = (at.started - ctx.now).total_seconds() + step.pause_seconds
    if remaining > 0:
        r.wait(remaining)
        return False
    at.waiting_analysis = analysis_for(ctx, steps, at.step) is not None and not r.passed(at.step)
    return not at.waiting_analysis


def _walk(r: TwoTrack, steps: tuple[Step, ...], at: Position) -> None:
    """Advance through every step whose condition holds, or that a person promoted."""
    ctx, name = r.ctx, r.ctx.owner.name
    if at.step < len(steps) and r.act(actions.PROMOTE_FULL):
        at.step, at.started = len(steps), ctx.now
        r.events.append(normal("PromotedFull", f"{r.label}: remaining steps skipped by a user"))
        r.restart_inconclusive("a user's promote")
    while at.step < len(steps) and not ctx.requests.paused:
        done = _step_done(r, steps, at)
        if not done and not r.aborted and r.act(actions.PROMOTE):
            r.events.append(normal("Promoted", f"{r.label}: step {at.step + 1}/{len(steps)} promoted by a user"))
            r.restart_inconclusive("a user's promote")
            done = True
        if not done:
            return
        at.step, at.started, at.paused_for, at.waiting_analysis = at.step + 1, ctx.now, None, False
    if ctx.requests.paused and at.step < len(steps):
        at.paused_for = f"step {at.step + 1}/{len(steps)}: paused by a user (`kubectl modelroll resume {name}`)"


def plan_canary(ctx: Context) -> Outcome:
    steps = rollout_steps(ctx.spec)  # the shadow phase first, if any
    n_steps, n = len(steps), ctx.replicas
    r = TwoTrack(ctx, "canary rollout")
    if not r.in_progress:
        return steady(ctx, Routing(), {"stepCount": n_steps})

    r.open()
    fresh = not r.same or r.retried
    at = Position(
        step=0 if fresh else int(ctx.status.get("currentStep", 0)),
        started=ctx.now if fresh else parse_stamp(ctx.status.get("stepStartedAt"), ctx.now),
    )
    # The run is kept in status after an abort, to show why.
    r.analyse(analysis_for(ctx, steps, at.step), CANARY_SCOPE, at.step, measure=at.step < n_steps)
    if not r.aborted:
        _walk(r, steps, at)
    analysis = analysis_for(ctx, steps, at.step)
    r.bound_inconclusive(analysis, waiting=at.waiting_analysis and at.step < n_steps)
    if at.step < n_steps:
        r.wait_for_measurement(analysis)

    promoting = at.step >= n_steps and not r.aborted
    weight = 0 if r.aborted else weight_at(steps, min(at.step, n_steps - 1))
    shadow = shadowing_at(steps, at.step)  # users stay off the canary, also once aborted in the phase
    stable_want, canary_want = (n, 0) if r.aborted else replicas_at(ctx, steps, min(at.step, n_steps - 1))
    canary = track_status(r.target, ctx.observed, TRACK_CANARY)
    # Stable shrinks only as far as Ready canary Pods replace it: never fewer than n ready Pods.
    stable_want = n if promoting else min(n, max(stable_want, n - canary["readyReplicas"]))
    children, held = r.tracks(promoting, stable_want, canary_want)
    if promoting and ctx.progress(TRACK_STABLE, r.rev).complete(n):
        # Stable runs the new revision everywhere: it is promoted; the canary track goes.
        kept = {"analysis": r.run} if r.run is not None else {}
        return r.promoted(Routing(), {"stepCount": n_steps, **kept}, ROLLOUT_KEYS)

    where = f"at {weight}%"
    if shadow:
        where = f"in its shadow phase (no user traffic; stable copies {shadow}% of its requests to it)"
    if r.aborted and canary_floor(ctx):
        back = f"{ready_on_track(ctx.observed, TRACK_STABLE)}/{n} Ready"
        message = f"{r.aborted['message']}; {r.old} scaling back to {n} Pods ({back}) before the canary goes"
    elif r.aborted:
        message = f"{r.aborted['message']}; {r.old} serving at full weight"
    elif promoting:
        updated = ctx.progress(TRACK_STABLE, r.rev).updated
        message = f"promoting {r.label}: stable track {updated}/{n} updated; canary keeps serving until stable is Ready"
    elif r.inconclusive_paused:
        message = f"step {at.step + 1}/{n_steps}: canary {r.label} {where}; {r.inconclusive_message}"
    elif at.paused_for:
        message = f"{at.paused_for}; canary {r.label} {where}"
    elif at.waiting_analysis and r.run is not None:
        message = (
            f"step {at.step + 1}/{n_steps}: canary {r.label} {where}, waiting for a passing measurement; "
            f"{analysis_state.describe(r.run)}"
        )
    elif shadow and not canary_want:
        message = (
            f"step {at.step + 1}/{n_steps}: canary {r.label} {where}: waiting for Service {ctx.owner.name} "
            "to select the stable track alone before its Pods start"
        )
    else:
        ready = f"{canary['readyReplicas']}/{canary_want}"
        shrunk = f", stable scaled to {stable_want}/{n}" if stable_want < n else ""
        message = f"step {at.step + 1}/{n_steps}: canary {r.label} {where}, {ready} Pods Ready{shrunk}"
    inconclusive = r.inconclusive_paused and not promoting
    paused = (bool(at.paused_for) or inconclusive) and not promoting
    return r.outcome(
        canary=canary,
        children=children,
        held=held,
        routing=Routing(
            canary_weight=weight,
            active=TRACK_STABLE if shadow else None,
            shadow_percent=0 if r.aborted or promoting else shadow,
        ),
        extra={"currentStep": min(at.step, n_steps), "stepCount": n_steps, "stepStartedAt": ctx.stamp(at.started)},
        phase=c.PAUSED if paused else c.PROGRESSING,
        reason=analysis_state.REASON_INCONCLUSIVE
        if inconclusive
        else "CanaryPaused"
        if paused
        else "CanaryProgressing",
        message=message,
        serving=r.old,
        pods="canary",
        finishing=f"{r.label} is already being promoted (the stable track is rolling to it)" if promoting else None,
    )
