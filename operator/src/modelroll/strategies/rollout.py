"""What every two-track rollout (canary, blue-green) decides first: is this the rollout
already under way, is it aborted, and did a person ask to retry or abort it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .. import actions
from .. import conditions as c
from ..actions import Requests
from ..children import Owner
from ..events import Event
from ..observed import Observed, pod_failure, pods_of_revision
from ..spec import ModelDeploymentSpec
from .outcome import Outcome
from .rolling import plan_rolling

Events = list[Event]


def abort_record(revision: str, reason: str, message: str) -> dict[str, str]:
    return {"revision": revision, "reason": reason, "message": message}


@dataclass
class Rollout:
    same: bool  # status already describes the rollout of this revision
    aborted: dict[str, str] | None
    retried: bool  # a retry restarted it in this reconcile
    events: Events = field(default_factory=list)


def open_rollout(
    status: Mapping[str, Any], rev: str, label: str, requests: Requests, what: str, abortable: bool = True
) -> Rollout:
    """Start, restart, retry or abort the rollout of ``rev`` (``what``: e.g. "canary rollout")."""
    previous = status.get("canary") or {}
    same = previous.get("revision") == rev
    aborted = status.get("aborted") if (status.get("aborted") or {}).get("revision") == rev else None
    out = Rollout(same=same, aborted=aborted, retried=False)
    if not same and previous:
        old = previous.get("version") or previous.get("revision")
        out.events.append(
            Event(
                "Normal",
                "RolloutRestarted",
                f"spec changed mid-rollout: {old} replaced by {label}; the {what} restarts",
            )
        )
    elif not same:
        out.events.append(Event("Normal", "RolloutStarted", f"{what} of {label} started"))
    if out.aborted and requests.take(actions.RETRY):
        out.aborted, out.retried = None, True
        out.events.append(Event("Normal", "Retry", f"{what} of {label} retried from the start"))
    if not out.aborted and abortable and requests.take(actions.ABORT):
        out.aborted = abort_record(rev, "Aborted", f"rollout of {label} aborted by a user")
        out.events.append(Event("Warning", "Aborted", out.aborted["message"]))
    return out


def aborted_outcome(common: Mapping[str, Any], aborted: Mapping[str, str], serving: str, message: str) -> Outcome:
    """Degraded with the abort's reason; the stable model (``serving``) still answers."""
    reason = aborted["reason"]
    verified = False if reason == c.INTEGRITY_MISMATCH else None
    return Outcome(
        **common,
        phase=c.DEGRADED,
        reason=reason,
        message=message,
        conditions=[
            c.condition(c.READY, True, c.ALL_READY, f"{serving} serving"),
            c.condition(c.PROGRESSING_COND, False, reason, message),
            c.condition(c.DEGRADED_COND, True, reason, message),
            c.condition(c.MODEL_VERIFIED, verified, reason, aborted["message"]),
        ],
    )


def past_deadline(
    deadline_seconds: int, observed: Observed, rev: str, started: datetime, now: datetime, what: str, ready_note: str
) -> tuple[dict[str, str] | None, float | None, Events]:
    """(abort record, None, events) once ``what`` has had its deadline without becoming Ready
    — with the reason its Pods give — else (None, seconds until the deadline, [])."""
    elapsed = (now - started).total_seconds()
    if elapsed <= deadline_seconds:
        return None, deadline_seconds - elapsed + 1, []
    reason, detail = pod_failure(pods_of_revision(observed.pods, rev)) or (c.DEADLINE_EXCEEDED, ready_note)
    aborted = abort_record(rev, reason, f"{what} not Ready within {deadline_seconds}s: {detail}")
    return aborted, None, [Event("Warning", reason, aborted["message"])]


def finish_promotion(
    spec: ModelDeploymentSpec,
    owner: Owner,
    observed: Observed,
    status: Mapping[str, Any],
    image: str,
    target: Mapping[str, Any],
    **fields: Any,
) -> Outcome:
    """Every stable Pod runs ``target``: report it as a completed Rolling update would (which also
    records the promotion in history); ``fields`` override the routing and status bookkeeping."""
    done = plan_rolling(spec, owner, observed, {**status, "stable": target}, image)
    return replace(done, **fields)
