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

With a post-promotion watch (``scaleDownDelaySeconds`` or ``postPromotionAnalysis`` in the
spec), the last step is followed by a switch, as in blue-green: the canary track grows to full
scale, the main Service selects it alone, and the old stable Pods stay warm and out of traffic
for the delay and until ``postPromotionAnalysis`` passes -- the time late labels need to reach
a ``liveAccuracy`` gate. A failure there switches every user back to the warm stable track at
once. ``status.watch`` records the switch (``switchedAt``) and its end (``done``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelroll_contract import LABEL_TRACK, TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..analysis import state as analysis_state
from ..analysis.gates import CANARY_SCOPE, analysis_at
from ..analysis.state import parse_stamp
from ..events import normal
from ..spec import Analysis, CanarySpec, Step, rollout_steps
from ..traffic.routing import Routing
from .context import Context
from .outcome import Outcome
from .rollout import PASSED, ROLLOUT_KEYS, WATCH_KEY, TwoTrack, steady
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


@dataclass
class Watch:
    """The post-promotion watch, kept in ``status.watch``."""

    state: dict[str, Any]
    waiting_analysis: bool = False  # the delay is over but no passing measurement yet

    @property
    def switched(self) -> bool:
        return bool(self.state.get("switchedAt"))

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))


def watches(spec: CanarySpec | None) -> bool:
    """Whether the canary is watched after its last step before the old stable goes."""
    return spec is not None and (spec.scale_down_delay_seconds > 0 or spec.post_promotion_analysis is not None)


def _watch(r: TwoTrack, cs: CanarySpec, at: Watch) -> None:
    """Switch every user to the canary once it runs at full scale, then keep the old stable
    warm until the delay is over and postPromotionAnalysis passed; a Fail aborts (switches back)."""
    ctx, n = r.ctx, r.ctx.replicas
    if not at.switched:
        if not ctx.progress(TRACK_CANARY, r.rev).complete(n):
            return  # the canary grows to full scale first
        at.state["switchedAt"] = ctx.stamp()
        r.events.append(normal("Switched", f"all traffic on {r.label}; {r.old} kept warm for the post-promotion watch"))
    if at.done:
        return
    switched = parse_stamp(at.state.get("switchedAt"), ctx.now)
    over, at.waiting_analysis = r.keep_warm(switched, cs.scale_down_delay_seconds, cs.post_promotion_analysis)
    if over:
        at.state["done"] = True
    if over == PASSED:
        r.events.append(normal("WatchPassed", f"{r.label}: post-promotion watch over; {r.old} goes"))


def _watch_state(ctx: Context, r: TwoTrack) -> Watch | None:
    """The watch recorded for this rollout (None: not started, or another rollout's)."""
    state = ctx.status.get(WATCH_KEY)
    return Watch(dict(state)) if r.same and isinstance(state, dict) else None


def _watch_message(r: TwoTrack, cs: CanarySpec, watch: Watch, canary: dict[str, Any]) -> str:
    n = r.ctx.replicas
    if not watch.switched:
        ready = f"{canary['readyReplicas']}/{n} Pods Ready"
        return f"steps done: canary {r.label} growing to full scale before it takes every user, {ready}"
    if r.inconclusive_paused:
        return f"{r.label} serves every user, {r.old} kept warm; {r.inconclusive_message}"
    if watch.waiting_analysis and r.run is not None:
        return (
            f"{r.label} serves every user, {r.old} kept warm: the post-promotion watch waits for a passing "
            f"measurement; {analysis_state.describe(r.run)}"
        )
    return (
        f"{r.label} serves every user; {r.old} kept warm for the post-promotion watch ({cs.scale_down_delay_seconds}s)"
    )


def plan_canary(ctx: Context) -> Outcome:
    steps = rollout_steps(ctx.spec)  # the shadow phase first, if any
    n_steps, n = len(steps), ctx.replicas
    r = TwoTrack(ctx, "canary rollout")
    if not r.in_progress:
        return steady(ctx, Routing(), {"stepCount": n_steps})

    cs = ctx.spec.strategy.canary
    watch = _watch_state(ctx, r)
    r.open(abortable=watch is None or not watch.done)  # once the watch is over, stable rolls: too late
    fresh = not r.same or r.retried
    if fresh:
        watch = None
    at = Position(
        step=0 if fresh else int(ctx.status.get("currentStep", 0)),
        started=ctx.now if fresh else parse_stamp(ctx.status.get("stepStartedAt"), ctx.now),
    )
    switched = watch is not None and watch.switched
    if not switched:  # once switched, the watch runs its own analysis
        # The run is kept in status after an abort, to show why.
        r.analyse(analysis_for(ctx, steps, at.step), CANARY_SCOPE, at.step, measure=at.step < n_steps)
        if not r.aborted:
            _walk(r, steps, at)
        analysis = analysis_for(ctx, steps, at.step)
        r.bound_inconclusive(analysis, waiting=at.waiting_analysis and at.step < n_steps)
        if at.step < n_steps:
            r.wait_for_measurement(analysis)
    steps_done = at.step >= n_steps and not r.aborted
    if steps_done and cs is not None and watches(cs):
        watch = watch or Watch({})
        _watch(r, cs, watch)
    if r.aborted or not steps_done:
        watch = None
    switched = watch is not None and watch.switched
    promoting = steps_done and not r.aborted and (watch is None or watch.done)

    weight = 0 if r.aborted else weight_at(steps, min(at.step, n_steps - 1))
    shadow = shadowing_at(steps, at.step)  # users stay off the canary, also once aborted in the phase
    stable_want, canary_want = (n, 0) if r.aborted else replicas_at(ctx, steps, min(at.step, n_steps - 1))
    if watch is not None:  # the canary takes every user at full scale; stable stays warm beside it
        stable_want, canary_want = n, n
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
    elif watch is not None and cs is not None:
        message = _watch_message(r, cs, watch, canary)
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
    extra = {"currentStep": min(at.step, n_steps), "stepCount": n_steps, "stepStartedAt": ctx.stamp(at.started)}
    if watch is not None:
        extra[WATCH_KEY] = watch.state
    # Aborted with the stable track at full strength: NAME selects it alone in the same write,
    # so no user reaches a canary Pod that is still Ready while it goes away.
    stable_alone = bool(r.aborted) and not canary_floor(ctx)
    finishing = None
    if promoting:
        finishing = f"{r.label} is already being promoted (the stable track is rolling to it)"
    elif switched:
        finishing = f"{r.label} already serves every user; {r.old} is kept warm until the post-promotion watch ends"
    return r.outcome(
        canary=canary,
        children=children,
        held=held,
        routing=Routing(
            canary_weight=weight,
            active=TRACK_STABLE if shadow or stable_alone else TRACK_CANARY if switched else None,
            shadow_percent=0 if r.aborted or promoting else shadow,
        ),
        extra=extra,
        phase=c.PAUSED if paused else c.PROGRESSING,
        reason=analysis_state.REASON_INCONCLUSIVE
        if inconclusive
        else "CanaryPaused"
        if paused
        else "CanaryWatching"
        if watch is not None and not promoting
        else "CanaryProgressing",
        message=message,
        serving=r.label if switched else r.old,
        pods="canary",
        finishing=finishing,
        abortable=not promoting,
    )
