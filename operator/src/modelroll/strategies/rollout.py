"""The two-track skeleton canary and blue-green share (pure).

Both put the spec's revision on the canary track beside the stable one, and one reconcile of
either runs the same short steps on a ``TwoTrack``: ``open`` (is this the rollout already
under way, was it retried or aborted), ``analyse`` (fold the controller's measurement; too
many failures abort like a user's abort), the strategy's own steps (canary weights, blue-green
stages), then ``tracks`` and one of ``promoted``, ``outcome`` to report. Manual actions
are never consumed here: a step calls ``act`` / ``defer`` and the planner settles them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from .. import conditions as c
from ..actions import ABORT, PROMOTE, PROMOTE_FULL, PROMOTES, RESUME, RETRY
from ..analysis import state as analysis_state
from ..analysis.gates import CANARY_SCOPE, INCONCLUSIVE, POST_PROMOTION
from ..children import build_deployment, revision_of
from ..events import Event, normal, warning
from ..observed import pod_failure, pods_of_revision
from ..spec import Analysis
from ..traffic.routing import Routing
from .context import Context
from .outcome import Outcome
from .rolling import plan_rolling
from .tracks import canary_floor, hold_or_rebuild, identity, running_revision, track_status

WATCH_KEY = "watch"  # status.watch: a canary's post-promotion watch (analysis/schedule.py reads it too)
ROLLOUT_KEYS = ("currentStep", "stepCount", "stepStartedAt", "aborted", WATCH_KEY)
PASSED, PROMOTED = "passed", "promoted"  # why keep_warm let the old track go


def steady(ctx: Context, routing: Routing, extra: dict[str, Any]) -> Outcome:
    """No rollout in progress (first revision, or stable is the spec's): plain Rolling on the
    stable track; the canary track and the rollout bookkeeping go away."""
    out = plan_rolling(ctx)
    return replace(out, routing=routing, extra_status=extra, drop_status=ROLLOUT_KEYS + ("blueGreen",))


class TwoTrack:
    """One reconcile of the rollout of the spec's revision on the canary track."""

    def __init__(self, ctx: Context, what: str) -> None:
        self.template = ctx.template(TRACK_CANARY)
        self.rev = revision_of(self.template)
        # An action deferred by the rollout of another revision is not this rollout's.
        self.ctx = replace(ctx, requests=ctx.requests.for_rollout(self.rev))
        self.what = what  # e.g. "canary rollout"
        self.target = identity(ctx.spec, self.rev)
        self.stable: Mapping[str, Any] = ctx.status.get("stable") or {}
        self.label = ctx.spec.model.version or self.rev
        self.same = (ctx.status.get("canary") or {}).get("revision") == self.rev
        aborted = ctx.status.get("aborted") or {}
        self.aborted: dict[str, str] | None = dict(aborted) if aborted.get("revision") == self.rev else None
        self.retried = False
        self.resumed = False  # a person's resume: an Inconclusive count restarts
        self.run: dict[str, Any] | None = None  # the analysis run, kept in status.analysis
        self.analysis_name = ""  # "analysis of canary" | "prePromotionAnalysis of" | ..., for messages
        self.events: list[Event] = []
        self.acted: set[str] = set()
        self.deferred: set[str] = set()
        self.declined: dict[str, str] = {}  # why this reconcile turned an action down, beyond _decline's
        self.requeue: float | None = None

    @property
    def in_progress(self) -> bool:
        return bool(self.stable) and self.stable.get("revision") != self.rev

    @property
    def old(self) -> str:
        return str(self.stable.get("version") or self.stable["revision"])

    # --- steps -------------------------------------------------------------------------------

    def act(self, action: str) -> bool:
        """True (and reported as acted on) if a person asked for ``action``; once only."""
        if self.ctx.requests.has(action) and action not in self.acted:
            self.acted.add(action)
            return True
        return False

    def defer(self, *actions: str) -> None:
        """Keep ``actions`` (those asked for) for a later reconcile of this same rollout."""
        self.deferred |= {a for a in actions if self.ctx.requests.has(a)}

    def wait(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def fail(self, reason: str, message: str) -> None:
        self.aborted = {"revision": self.rev, "reason": reason, "message": message}
        self.events.append(warning(reason, message))

    def open(self, abortable: bool = True) -> None:
        """Start, restart, retry or abort the rollout."""
        previous = self.ctx.status.get("canary") or {}
        was = previous.get("version") or previous.get("revision")
        if not self.same and previous:
            why = f"spec changed mid-rollout: {was} replaced by {self.label}; the {self.what} restarts"
            self.events.append(normal("RolloutRestarted", why))
        elif not self.same:
            self.events.append(normal("RolloutStarted", f"{self.what} of {self.label} started"))
        if self.aborted and self.act(RETRY):
            self.aborted, self.retried = None, True
            self.events.append(normal("Retry", f"{self.what} of {self.label} retried from the start"))
        if not self.aborted and abortable and self.act(ABORT):
            self.fail("Aborted", f"rollout of {self.label} aborted by a user")
        # Resuming always takes effect (the paused annotation is gone); analyse() restarts the count.
        self.resumed = not self.aborted and self.act(RESUME)
        if self.resumed:
            self.events.append(normal("Resumed", f"{self.what} of {self.label} resumed by a user"))

    def analyse(self, analysis: Analysis | None, scope: str, step: int | None, measure: bool = True) -> bool:
        """Fold the controller's measurement into the (scope, revision) run; True if the run's
        latest measurement passed at ``step``. A failed run aborts the rollout."""
        if analysis is None:
            return True
        self.analysis_name = "analysis of canary" if scope == CANARY_SCOPE else f"{scope}Analysis of"
        previous = self.ctx.status.get("analysis")
        if self.resumed and previous and (previous.get("scope"), previous.get("revision")) == (scope, self.rev):
            previous = self._restarted(previous, "a user's resume")
        measurement = self.ctx.observed.measurement if measure and not self.aborted else None
        self.run, found = analysis_state.advance_run(
            previous, analysis, scope, self.rev, measurement, step, restart=self.retried
        )
        self.events.extend(found)
        outcome = self.run.get("outcome")
        if outcome == analysis_state.FAILED and not self.aborted:
            self.fail(analysis_state.REASON_FAILED, f"{self.analysis_name} {self.label} failed: {self.run['message']}")
        return not outcome and self.passed(step)

    @property
    def inconclusive_paused(self) -> bool:
        """The analysis reached inconclusiveLimit and the rollout waits for a person."""
        return self.run is not None and self.run.get("outcome") == INCONCLUSIVE and not self.aborted

    def _restarted(self, run: Mapping[str, Any], why: str) -> dict[str, Any]:
        out = analysis_state.restart_inconclusive(run, why)
        if run.get("outcome") == INCONCLUSIVE:
            self.events.append(normal("AnalysisResumed", f"{self.label}: {out['message']}"))
        return out

    def restart_inconclusive(self, why: str) -> None:
        """A person moved the rollout on (a promote): the Inconclusive count starts again, and
        a pause inconclusiveLimit caused is over."""
        if self.run is not None:
            self.run = self._restarted(self.run, why)

    def bound_inconclusive(self, analysis: Analysis | None, waiting: bool) -> None:
        """Inconclusive has an upper bound. ``waiting``: the step's (or stage's) own condition
        holds and only a passing measurement is missing. Only then does the streak count (Pods
        still coming up, a pause still running or a person's pause are not the analysis
        holding the rollout); reaching inconclusiveLimit pauses for a person or aborts."""
        run = self.run
        if analysis is None or run is None or self.aborted or run.get("outcome"):
            return
        if not waiting:
            self.run = analysis_state.restart_inconclusive(run)
            return
        if not analysis_state.inconclusive_limit_reached(run, analysis):
            return
        self.run = analysis_state.conclude_inconclusive(run, analysis)
        what = f"{self.analysis_name} {self.label} inconclusive: {self.run['message']}"
        if analysis.inconclusive_action == analysis_state.ABORT:
            self.fail(analysis_state.REASON_INCONCLUSIVE, f"{what} (inconclusiveAction Abort)")
            return
        self.events.append(warning(analysis_state.REASON_INCONCLUSIVE, f"{what}; {self.inconclusive_help}"))
        # A promote deferred until the analysis passed must not now go on without a pass.
        for action in (a for a in PROMOTES if a in self.deferred):
            self.deferred.discard(action)
            self.declined[action] = (
                f"{self.analysis_name} {self.label} stayed inconclusive; promote again to go on without a passing "
                "measurement"
            )

    @property
    def inconclusive_help(self) -> str:
        name = self.ctx.owner.name
        return (
            f"paused: `kubectl modelroll resume {name}` restarts the count, `kubectl modelroll promote {name}` "
            f"goes on without a passing measurement, `kubectl modelroll abort {name}` rolls back"
        )

    @property
    def inconclusive_message(self) -> str:
        """The rollout's message while paused by inconclusiveLimit."""
        message = self.run["message"] if self.run else ""
        return f"{self.analysis_name} {self.label} inconclusive: {message}; {self.inconclusive_help}"

    def promoted_past_inconclusive(self) -> bool:
        """Whether a person promoted (either kind) while inconclusiveLimit holds the run: it goes
        on without a passing measurement, and the Inconclusive count starts again."""
        if any([self.act(a) for a in PROMOTES]):  # a list: both kinds of token are settled
            self.restart_inconclusive("a user's promote")
            return True
        return False

    def keep_warm(
        self, switched_at: datetime, delay_seconds: int, analysis: Analysis | None
    ) -> tuple[str | None, bool]:
        """After a switch to the new revision (blue-green's Switched stage, a canary's
        post-promotion watch): (why the old track may go -- PASSED once the delay is over and
        ``analysis`` passed, PROMOTED on a person's promote after inconclusiveLimit paused it --
        or None, and whether only a passing measurement is missing). A Fail aborts."""
        remaining = (switched_at + timedelta(seconds=delay_seconds) - self.ctx.now).total_seconds()
        passed = self.analyse(analysis, POST_PROMOTION, None)
        self.wait_for_measurement(analysis)
        if self.aborted:
            return None, False
        if self.inconclusive_paused:  # a person decides: promote lets the old track go without a pass
            return (PROMOTED if self.promoted_past_inconclusive() else None), False
        waiting = remaining <= 0 and not passed
        if remaining > 0:
            self.wait(remaining)
        self.bound_inconclusive(analysis, waiting=waiting)
        return (PASSED if remaining <= 0 and passed else None), waiting

    def passed(self, step: int | None) -> bool:
        """Whether analysis lets ``step`` end (always, without analysis)."""
        return self.run is None or analysis_state.passed_at(self.run, step)

    def wait_for_measurement(self, analysis: Analysis | None) -> None:
        """Come back when the next measurement is due (at most once a second)."""
        if analysis is not None and self.run is not None and not self.aborted and not self.run.get("outcome"):
            self.wait(max(analysis_state.next_due_seconds(self.run, analysis, self.ctx.now), 1.0))

    def check_deadline(self, started: datetime, what: str, ready_note: str) -> None:
        """Abort once ``what`` has had its progress deadline without becoming Ready, with the
        reason its Pods give; else come back when the deadline falls."""
        deadline = self.ctx.spec.progress_deadline_seconds
        elapsed = (self.ctx.now - started).total_seconds()
        if elapsed <= deadline:
            self.wait(deadline - elapsed + 1)
            return
        pods = pods_of_revision(self.ctx.observed.pods, self.rev)
        reason, detail = pod_failure(pods) or (c.DEADLINE_EXCEEDED, ready_note)
        self.fail(reason, f"{what} not Ready within {deadline}s: {detail}")

    # --- children and report -----------------------------------------------------------------

    def tracks(self, promoting: bool, stable: int, canary: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(children, held): the Deployments of both tracks at these replica counts."""
        canary_children, canary_held = self._canary_track(canary)
        stable_children, stable_held = self._stable_track(promoting, stable)
        return canary_children + stable_children, {**canary_held, **stable_held}

    def _stable_track(self, promoting: bool, replicas: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(children, held) for the stable track: rolled to the new revision once promoting,
        else held as it runs (only scaled), or rebuilt if it was deleted or changed."""
        ctx = self.ctx
        if promoting:
            template = ctx.template(TRACK_STABLE)
        else:
            rebuilt = hold_or_rebuild(ctx, TRACK_STABLE, self.stable)
            if rebuilt is None:
                return [], {ctx.name(TRACK_STABLE): replicas}
            template = rebuilt
        return [build_deployment(ctx.spec, ctx.owner, TRACK_STABLE, template, replicas)], {}

    def _canary_track(self, replicas: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(children, held) for the canary track at ``replicas``, but never fewer Pods than the
        ready count still needs; the canary of another revision is held as it runs until the
        stable track alone is back at full strength (it is recreated, not rolled)."""
        ctx, name = self.ctx, self.ctx.name(TRACK_CANARY)
        floor = canary_floor(ctx)
        live = ctx.observed.deployments.get(name)
        if floor and live and running_revision(live) != self.rev:
            return [], {name: int(live["spec"]["replicas"])}
        return [build_deployment(ctx.spec, ctx.owner, TRACK_CANARY, self.template, max(replicas, floor), True)], {}

    def promoted(self, routing: Routing, extra: dict[str, Any], drop: tuple[str, ...]) -> Outcome:
        """Every stable Pod runs the new revision: report it as a completed Rolling update
        would (which also records the promotion in history)."""
        done = plan_rolling(replace(self.ctx, status={**self.ctx.status, "stable": self.target}))
        return replace(
            done, routing=routing, events=self.events, extra_status=extra, drop_status=drop, acted=frozenset(self.acted)
        )

    def _decline(self, finishing: str | None, abortable: bool) -> dict[str, str]:
        """Why a pending action had nothing to act on, for the Event that acknowledges it."""
        name, label = self.ctx.owner.name, self.label
        if self.aborted:
            stopped = f"the rollout of {label} is aborted (`kubectl modelroll retry {name}` restarts it)"
            return {
                PROMOTE: stopped,
                PROMOTE_FULL: stopped,
                RESUME: stopped,
                ABORT: f"the rollout of {label} is already aborted",
            }
        out = {RETRY: f"the rollout of {label} is not aborted"}
        if self.ctx.requests.paused:
            out[PROMOTE] = f"paused by a user (`kubectl modelroll resume {name}` first)"
        if finishing:
            out |= {PROMOTE: finishing, PROMOTE_FULL: finishing}
        if not abortable:
            out[ABORT] = finishing or f"the rollout of {label} can no longer be aborted"
        return out | self.declined

    def outcome(
        self,
        *,
        canary: dict[str, Any],
        children: list[dict[str, Any]],
        held: dict[str, int],
        routing: Routing,
        extra: dict[str, Any],
        phase: str,
        reason: str,
        message: str,
        serving: str,
        pods: str,
        finishing: str | None = None,
        abortable: bool = True,
    ) -> Outcome:
        """The report of a rollout in progress, or of an aborted one (Degraded, the abort's reason)."""
        stable, ready = track_status(self.stable, self.ctx.observed, TRACK_STABLE), canary["readyReplicas"]
        verified: tuple[bool | None, str, str] = (
            None,
            c.WAITING_FOR_PODS,
            f"waiting for a {pods} Pod to load the model",
        )
        if self.aborted:
            phase, reason, serving = c.DEGRADED, self.aborted["reason"], self.old
            verified = (False if reason == c.INTEGRITY_MISMATCH else None, reason, self.aborted["message"])
            extra = {**extra, "aborted": self.aborted}
        elif ready:
            verified = (True, c.DIGEST_VERIFIED, f"{ready} {pods} Pod(s) loaded the verified model")
        if self.run is not None:
            extra = {**extra, "analysis": self.run}
        degraded = bool(self.aborted)
        trouble = (reason, message) if degraded else (c.AS_EXPECTED, "no problems found")
        return Outcome(
            children=children,
            phase=phase,
            reason=reason,
            message=message,
            conditions=[
                c.condition(c.READY, True, c.ALL_READY, f"{serving} serving"),
                c.condition(c.PROGRESSING_COND, not degraded, reason, message),
                c.condition(c.DEGRADED_COND, degraded, *trouble),
                c.condition(c.MODEL_VERIFIED, *verified),
            ],
            stable=stable,
            canary=canary,
            replicas=stable["replicas"] + canary["replicas"],
            ready_replicas=stable["readyReplicas"] + ready,
            desired_replicas=self.ctx.replicas,
            routing=routing,
            extra_status=extra,
            drop_status=() if degraded else ("aborted",),
            events=self.events,
            requeue_after=self.requeue,
            held=held,
            acted=frozenset(self.acted),
            deferred=frozenset(self.deferred),
            declined=self._decline(finishing, abortable),
        )
