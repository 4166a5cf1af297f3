"""The BlueGreen strategy: the new revision at full scale behind NAME-preview, then one
switch of the main Service (or HTTPRoute), with the old track kept warm (pure).

Stages, recorded in ``status.blueGreen.stage``:
  Preview     the new revision comes up on the canary track; NAME still selects stable.
              A promote that arrives before the preview is Ready and its pre-promotion
              analysis passed is deferred (bound to this rollout's revision), not lost.
  Switched    NAME selects the canary track (one write); the old stable Pods stay warm for
              ``scaleDownDelaySeconds`` so a switch back is instant.
  Finalizing  the stable track rolls to the new revision while the canary serves; once it
              is Ready, NAME selects stable again and the canary track goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from .. import actions
from .. import conditions as c
from ..analysis import state as analysis_state
from ..analysis.gates import PRE_PROMOTION
from ..analysis.state import parse_stamp
from ..events import normal
from ..spec import BlueGreenSpec
from ..traffic.routing import Routing
from .context import Context
from .outcome import Outcome
from .rollout import ROLLOUT_KEYS, TwoTrack, steady
from .tracks import track_status

PREVIEW, SWITCHED, FINALIZING = "Preview", "Switched", "Finalizing"


@dataclass
class Stage:
    name: str
    state: dict[str, Any] = field(default_factory=dict)  # status.blueGreen
    waiting_person: bool = False
    waiting_analysis: bool = False


def _preview(r: TwoTrack, bg: BlueGreenSpec, at: Stage, started: datetime) -> None:
    """Switch once the preview is Ready and promoted (by a person or autoPromotionSeconds)
    and its pre-promotion analysis passed."""
    ctx, n = r.ctx, r.ctx.replicas
    if not ctx.progress(TRACK_CANARY, r.rev).complete(n):
        ready = f"{track_status(r.target, ctx.observed, TRACK_CANARY)['readyReplicas']}/{n} preview Pods Ready"
        r.check_deadline(started, f"preview {r.label}", ready)
        r.defer(*actions.PROMOTES)  # a promote waits for the preview
        return
    ready_at = parse_stamp(at.state.get("previewReadyAt"), ctx.now)
    at.state["previewReadyAt"] = ctx.stamp(ready_at)
    auto = bg.auto_promotion_seconds
    due = auto is not None and ctx.now >= ready_at + timedelta(seconds=auto)
    passed = r.analyse(bg.pre_promotion_analysis, PRE_PROMOTION, None)
    r.wait_for_measurement(bg.pre_promotion_analysis)
    if r.aborted:
        return
    if r.inconclusive_paused:  # a person decides: promote switches without a passing measurement
        if r.promoted_past_inconclusive():
            at.name, at.state["switchedAt"] = SWITCHED, ctx.stamp()
            r.events.append(normal("Switched", f"traffic switched to {r.label} by a user"))
        return
    if not passed and (due or any(ctx.requests.has(a) for a in actions.PROMOTES)):
        at.waiting_analysis = True
        r.defer(*actions.PROMOTES)  # a person's promote waits for the analysis too
    elif any([r.act(a) for a in actions.PROMOTES]) or due:
        at.name, at.state["switchedAt"] = SWITCHED, ctx.stamp()
        r.events.append(normal("Switched", f"traffic switched to {r.label}"))
    elif auto is not None:
        r.wait((ready_at + timedelta(seconds=auto) - ctx.now).total_seconds())
    else:
        at.waiting_person = True
    r.bound_inconclusive(bg.pre_promotion_analysis, waiting=at.waiting_analysis)


def _switched(r: TwoTrack, bg: BlueGreenSpec, at: Stage) -> None:
    """The old track stays warm until the delay is over and postPromotionAnalysis passed; a
    failure switches back."""
    switched = parse_stamp(at.state.get("switchedAt"), r.ctx.now)
    over, at.waiting_analysis = r.keep_warm(switched, bg.scale_down_delay_seconds, bg.post_promotion_analysis)
    if over:
        at.name = FINALIZING


def plan_bluegreen(ctx: Context) -> Outcome:
    bg = ctx.spec.strategy.blue_green
    assert bg is not None
    n = ctx.replicas
    r = TwoTrack(ctx, "blue-green rollout")
    if not r.in_progress:
        return steady(ctx, Routing(active=TRACK_STABLE, preview=True), {})

    at = Stage(PREVIEW)
    if r.same:
        at.state = dict(ctx.status.get("blueGreen") or {})
        at.name = at.state.get("stage", PREVIEW)
        r.run = ctx.status.get("analysis")
    # Once finalizing, the stable track already runs the new revision: too late to abort.
    r.open(abortable=at.name != FINALIZING)
    if r.retried:
        at = Stage(PREVIEW)
    started = parse_stamp(at.state.get("startedAt"), ctx.now)
    if not r.aborted and at.name == PREVIEW:
        _preview(r, bg, at, started)
    if not r.aborted and at.name == SWITCHED:
        _switched(r, bg, at)

    at.state.update(stage=at.name, startedAt=ctx.stamp(started))
    finalizing = at.name == FINALIZING and not r.aborted
    children, held = r.tracks(finalizing, n, 0 if r.aborted else n)
    if finalizing and ctx.progress(TRACK_STABLE, r.rev).complete(n):
        return r.promoted(Routing(active=TRACK_STABLE, preview=True), {}, ROLLOUT_KEYS + ("blueGreen",))

    switched = at.name in (SWITCHED, FINALIZING) and not r.aborted
    preview = track_status(r.target, ctx.observed, TRACK_CANARY)
    inconclusive = r.inconclusive_paused and at.name in (PREVIEW, SWITCHED)
    if r.aborted:
        message = f"{r.aborted['message']}; {r.old} serving"
    elif inconclusive:
        kept = f"{r.old} serving" if at.name == PREVIEW else f"{r.label} active, {r.old} kept warm"
        message = f"{kept}; {r.inconclusive_message}"
    elif at.waiting_analysis and r.run is not None:
        waiting = "promotion" if at.name == PREVIEW else "scale-down of the old track"
        message = (
            f"{r.label} {'preview' if at.name == PREVIEW else 'active'}: {waiting} waits for a passing "
            f"measurement; {analysis_state.describe(r.run)}"
        )
    elif at.waiting_person:
        promote = f"`kubectl modelroll promote {ctx.owner.name}`"
        message = f"preview {r.label} ready on {ctx.name('preview')}; waiting for {promote}"
    elif at.name == PREVIEW:
        pending = " (auto-promotion pending)" if ctx.progress(TRACK_CANARY, r.rev).complete(n) else ""
        message = f"preview {r.label}: {preview['readyReplicas']}/{n} Ready{pending}"
    elif at.name == SWITCHED:
        message = f"{r.label} active; {r.old} kept warm for {bg.scale_down_delay_seconds}s"
    else:
        message = f"{r.label} active; stable track rolling to it before the preview track scales down"
    return r.outcome(
        canary=preview,
        children=children,
        held=held,
        routing=Routing(active=TRACK_CANARY if switched else TRACK_STABLE, preview=True),
        extra={"blueGreen": at.state},
        phase=c.PAUSED if at.waiting_person or inconclusive else c.PROGRESSING,
        reason=analysis_state.REASON_INCONCLUSIVE if inconclusive else f"BlueGreen{at.name}",
        message=message,
        serving=r.label if switched else r.old,
        pods="preview",
        finishing=f"{r.label} is already active" if switched else None,
        abortable=at.name != FINALIZING,
    )
