"""The analysis state machine, kept in ``status.analysis`` (pure).

One record per analysis run: a run is one (scope, revision) pair, e.g. the canary analysis
of revision 8a1d, or the post-promotion analysis of a blue-green preview. A new revision, a
new scope or a retry starts a new run with zeroed counts. A new canary step does *not*:
failures add up over the whole rollout, so a canary that fails now and then at every step is
still caught; instead each measurement records the ``step`` it was taken at, and a step only
advances on a Pass measured at that very step.

``phase`` is the latest measurement's verdict (``Running`` before the first). ``outcome``
is set, and the run stops measuring, once a limit is exceeded:
  failed > failureLimit                        -> outcome Failed (the failing gate named)
  consecutiveErrors > consecutiveErrorLimit    -> outcome Failed (Prometheus unreachable)
  consecutiveInconclusive reaches inconclusiveLimit (a count, or the time since
  inconclusiveSince), while analysis alone holds the rollout -> outcome Inconclusive
Errors never count toward failureLimit. A rollout whose analysis fails aborts like a manual
abort; one whose analysis stays inconclusive pauses for a person or aborts, as
``inconclusiveAction`` says (see strategies/rollout.py, canary.py, bluegreen.py). Only the
strategy knows whether analysis is what holds the rollout (its Pods Ready at the weight, its
pause over), so it asks ``inconclusive_limit_reached`` and calls ``conclude_inconclusive``;
any Pass, Fail or Error ends the streak here, and ``restart_inconclusive`` ends it otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..events import Event
from ..spec import Analysis
from .gates import ERROR, FAIL, INCONCLUSIVE, PASS, GateVerdict, Measurement, evaluate_measurement
from .verdict import describe_tracks

RUNNING, PASSED, FAILED = "Running", "Passed", "Failed"
PHASE_OF = {PASS: PASSED, FAIL: FAILED, INCONCLUSIVE: INCONCLUSIVE, ERROR: ERROR}
REASON_FAILED = "AnalysisFailed"
REASON_INCONCLUSIVE = "AnalysisInconclusive"  # the rollout's reason when inconclusiveLimit is reached
PAUSE, ABORT = "Pause", "Abort"  # inconclusiveAction
STAMP = "%Y-%m-%dT%H:%M:%SZ"  # the planner's timestamp format: whole seconds


def stamp(when: datetime) -> str:
    return when.strftime(STAMP)


def parse_stamp(text: str | None, default: datetime) -> datetime:
    try:
        return datetime.strptime(text or "", STAMP).replace(tzinfo=default.tzinfo)
    except ValueError:
        return default


def build_run(scope: str, revision: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "revision": revision,
        "phase": RUNNING,
        "passed": 0,
        "failed": 0,
        "inconclusive": 0,
        "errors": 0,
        "consecutiveErrors": 0,
        "consecutiveInconclusive": 0,
        "gates": [],
        "message": "waiting for the first measurement",
    }


def current_run(previous: Mapping[str, Any] | None, scope: str, revision: str) -> dict[str, Any]:
    """The run in status if it is this (scope, revision)'s, else a fresh one."""
    if previous and previous.get("scope") == scope and previous.get("revision") == revision:
        return dict(previous)
    return build_run(scope, revision)


def _worst(verdicts: list[GateVerdict], kind: str) -> GateVerdict | None:
    return next((v for v in verdicts if v.verdict == kind), None)


def _summary(verdict: str, verdicts: list[GateVerdict]) -> str:
    shown = _worst(verdicts, verdict) if verdict != PASS else None
    if shown is None:
        return f"all {len(verdicts)} gate(s) passed"
    return f"{shown.name}: {shown.message}"


def gate_table(verdicts: list[GateVerdict]) -> str:
    """Every gate in one line, for an Event: verdict, value, threshold and sample size."""

    def one(v: GateVerdict) -> str:
        value = f" {v.value:.4g}" if v.value is not None else ""
        samples = f", {v.samples} samples" if v.samples is not None else ""
        tracks = f"; {describe_tracks(v.tracks)}" if v.tracks else ""  # the quality gates' per-track numbers
        return f"{v.name} {v.verdict}{value} ({v.threshold}{samples}{tracks})"

    return "; ".join(one(v) for v in verdicts)


def fold_measurement(
    run: Mapping[str, Any], analysis: Analysis, measurement: Measurement | None, step: int | None
) -> tuple[dict[str, Any], list[Event]]:
    """``run`` with ``measurement`` folded in, and the Events to record.

    Idempotent: a measurement of another run, one not newer than the last folded, or one
    arriving after the run concluded, leaves the run as it is (re-planning the same state
    writes nothing).
    """
    out = dict(run)
    if measurement is None or out.get("outcome"):
        return out, []
    if (measurement.scope, measurement.revision) != (out.get("scope"), out.get("revision")):
        return out, []
    last = out.get("lastMeasuredAt")
    if last and stamp(measurement.taken_at) <= last:  # same format, so text order is time order
        return out, []

    verdict, verdicts = evaluate_measurement(analysis, measurement)
    counter = {PASS: "passed", FAIL: "failed", INCONCLUSIVE: "inconclusive", ERROR: "errors"}[verdict]
    out[counter] = int(out.get(counter, 0)) + 1
    out["consecutiveErrors"] = int(out.get("consecutiveErrors", 0)) + 1 if verdict == ERROR else 0
    if verdict == INCONCLUSIVE:
        out["consecutiveInconclusive"] = int(out.get("consecutiveInconclusive", 0)) + 1
        out.setdefault("inconclusiveSince", stamp(measurement.taken_at))  # when the streak started
    else:  # a Pass, a Fail or an Error is a conclusion of sorts: the streak ends
        out["consecutiveInconclusive"] = 0
        out.pop("inconclusiveSince", None)
    out["lastMeasuredAt"] = stamp(measurement.taken_at)
    # where the run's data begin: the first measurement's window. liveAccuracy counts labels
    # from here on (schedule.MeasurementPlan.labels_window).
    out.setdefault("startedAt", stamp(measurement.taken_at - timedelta(seconds=analysis.interval_seconds)))
    out["gates"] = [v.as_status() for v in verdicts]
    if step is not None:
        out["step"] = step
    else:
        out.pop("step", None)
    old_phase = run.get("phase")
    out["phase"] = PHASE_OF[verdict]
    out["message"] = _summary(verdict, verdicts)

    events: list[Event] = []
    if out["phase"] != old_phase:
        kind = "Warning" if verdict in (FAIL, ERROR) else "Normal"
        text = f"{measurement.scope} analysis: {out['message']}; gates: {gate_table(verdicts)}"
        events.append(Event(kind, f"Analysis{verdict}", text))
    if out["failed"] > analysis.failure_limit:
        worst = _worst(verdicts, FAIL)
        assert worst is not None
        shown = f"{worst.value:.4g}" if worst.value is not None else "?"
        out["outcome"] = FAILED
        out["message"] = (
            f"gate {worst.name} failed: value {shown}, threshold {worst.threshold} "
            f"({out['failed']} failed measurements, failureLimit {analysis.failure_limit}); "
            f"{worst.message}"
        )
    elif out["consecutiveErrors"] > analysis.consecutive_error_limit:
        error = _worst(verdicts, ERROR)
        out["outcome"] = FAILED
        out["message"] = (
            f"Prometheus could not be queried for {out['consecutiveErrors']} measurements in a row "
            f"(consecutiveErrorLimit {analysis.consecutive_error_limit}): "
            f"{error.message if error else 'error'}"
        )
    return out, events


def _duration(seconds: float) -> str:
    whole = int(seconds)
    h, m, s = whole // 3600, whole % 3600 // 60, whole % 60
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or f"{seconds:g}s"


def inconclusive_streak_seconds(run: Mapping[str, Any]) -> float:
    """How long the run's Inconclusive measurements in a row span, first to latest (0 without)."""
    since = run.get("inconclusiveSince")
    if not since or not run.get("consecutiveInconclusive"):
        return 0.0
    last = parse_stamp(run.get("lastMeasuredAt"), datetime.min)
    return (last - parse_stamp(since, last)).total_seconds()


def inconclusive_limit_reached(run: Mapping[str, Any], analysis: Analysis) -> bool:
    """Whether the run's Inconclusive streak has reached ``inconclusiveLimit``: that many
    measurements in a row, or a streak whose first and latest measurements are that far apart."""
    count = int(run.get("consecutiveInconclusive", 0))
    if count == 0 or run.get("outcome"):
        return False
    if analysis.inconclusive_seconds is not None:
        return inconclusive_streak_seconds(run) >= analysis.inconclusive_seconds
    return analysis.inconclusive_limit is not None and count >= analysis.inconclusive_limit


def describe_limit(analysis: Analysis) -> str:
    if analysis.inconclusive_seconds is not None:
        return _duration(analysis.inconclusive_seconds)
    return str(analysis.inconclusive_limit)


def conclude_inconclusive(run: Mapping[str, Any], analysis: Analysis) -> dict[str, Any]:
    """``run`` concluded as Inconclusive (it stops measuring), its message saying for how long."""
    out = dict(run)
    count = int(out.get("consecutiveInconclusive", 0))
    streak = f"{count} Inconclusive measurements in a row"
    if analysis.inconclusive_seconds is not None:
        streak = f"Inconclusive for {_duration(inconclusive_streak_seconds(out))} in a row ({count} measurements)"
    out["outcome"] = INCONCLUSIVE
    out["message"] = f"{streak}, inconclusiveLimit {describe_limit(analysis)}: {out.get('message', '')}"
    return out


def restart_inconclusive(run: Mapping[str, Any], why: str | None = None) -> dict[str, Any]:
    """``run`` with its Inconclusive streak ended, and, if it had concluded Inconclusive, open
    again (it measures again); ``why`` (who restarted it) goes into the message then."""
    out = dict(run)
    if out.get("consecutiveInconclusive"):
        out["consecutiveInconclusive"] = 0
    out.pop("inconclusiveSince", None)
    if out.get("outcome") == INCONCLUSIVE:
        del out["outcome"]
        out["message"] = f"inconclusive count restarted{f' by {why}' if why else ''}; measuring again"
    return out


def passed_at(run: Mapping[str, Any], step: int | None) -> bool:
    """True if the run's latest measurement passed and was taken at ``step``."""
    return run.get("phase") == PASSED and not run.get("outcome") and run.get("step") == step


def run_seconds(run: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds since the run's data begin (``startedAt``); None before its first measurement."""
    started = run.get("startedAt")
    if not started:
        return None
    return max((now - parse_stamp(started, now)).total_seconds(), 0.0)


def next_due_seconds(run: Mapping[str, Any], analysis: Analysis, now: datetime) -> float:
    """Seconds until the next measurement is due (0: now)."""
    last = run.get("lastMeasuredAt")
    if not last:
        return 0.0
    due = parse_stamp(last, now) + timedelta(seconds=analysis.interval_seconds)
    return max((due - now).total_seconds(), 0.0)


def describe(run: Mapping[str, Any]) -> str:
    """One clause for the rollout's status message."""
    counts = f"{run.get('passed', 0)} passed, {run.get('failed', 0)} failed, {run.get('inconclusive', 0)} inconclusive"
    if run.get("errors"):
        counts += f", {run['errors']} errors"
    phase = run.get("phase", RUNNING)
    if phase == RUNNING:
        return "analysis waiting for its first measurement"
    return f"analysis {phase} ({counts}): {run.get('message', '')}"


def advance_run(
    previous: Mapping[str, Any] | None,
    analysis: Analysis,
    scope: str,
    revision: str,
    measurement: Measurement | None,
    step: int | None,
    restart: bool = False,
) -> tuple[dict[str, Any], list[Event]]:
    """The (scope, revision) run from status, restarted if asked (a retry), with the
    measurement folded in: what a strategy stores under ``status.analysis``."""
    run = build_run(scope, revision) if restart else current_run(previous, scope, revision)
    return fold_measurement(run, analysis, measurement, step)
