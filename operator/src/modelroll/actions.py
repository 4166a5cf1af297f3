"""Manual actions (promote, abort, retry, pause and resume, undo) requested through annotations, and
their settlement (pure).

The kubectl plugin writes an annotation whose value is a fresh token; the operator settles
it once and records the token under ``status.acknowledged``. Both live on the object, so a
restarted operator neither repeats nor forgets an action, and spec is never touched.

Every reconcile settles every pending action in one place (``settle``, called by the
planner): the strategy reports what it acted on and what it deliberately defers; anything
else is acknowledged with an Event saying why there was nothing to do. So an action never
lingers to reach a later rollout. A deferral (blue-green: promote waits for the preview and
its pre-promotion analysis) is bound to the revision of the rollout that deferred it, kept in
``status.deferred``, and dropped with an Event once another revision is rolling out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .events import Event, normal

PREFIX = "modelroll.io/"
PROMOTE = "promote"  # advance past the current step (or pause)
PROMOTE_FULL = "promote-full"  # skip the remaining steps
ABORT = "abort"
RETRY = "retry"
UNDO = "undo"  # value "TOKEN" or "TOKEN/REVISION"
# `resume` lifts the paused state below and, as a one-shot, restarts an analysis's
# Inconclusive count (and a pause inconclusiveLimit caused): the operator cannot tell from
# an annotation that is gone that it was ever there.
RESUME = "resume"
PAUSED = "paused"  # a state, not a one-shot action: "true" while paused
ONE_SHOT = (PROMOTE, PROMOTE_FULL, ABORT, RETRY, UNDO, RESUME)
PROMOTES = (PROMOTE, PROMOTE_FULL)  # either kind moves a paused rollout on
VERB = {PROMOTE: "promote", PROMOTE_FULL: "promote", ABORT: "abort", RETRY: "retry", UNDO: "undo", RESUME: "resume"}


def annotation(action: str) -> str:
    return PREFIX + action


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Requests:
    """The actions requested and not yet settled (action -> token), read-only."""

    pending: Mapping[str, str] = field(default_factory=dict)
    bound: Mapping[str, str] = field(default_factory=dict)  # deferred action -> revision it waits for
    paused: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "pending", _frozen(self.pending))
        object.__setattr__(self, "bound", _frozen(self.bound))

    def has(self, action: str) -> bool:
        return action in self.pending

    def without(self, actions: Iterable[str]) -> Requests:
        """These requests minus ``actions`` (already acted on by an earlier step)."""
        drop = set(actions)
        return Requests({a: t for a, t in self.pending.items() if a not in drop}, self.bound, self.paused)

    def for_rollout(self, revision: str) -> Requests:
        """What the rollout of ``revision`` may act on: not an action deferred for another."""
        return self.without(a for a, rev in self.bound.items() if rev != revision)


def read_requests(annotations: Mapping[str, str] | None, status: Mapping[str, Any]) -> Requests:
    annotations = annotations or {}
    acknowledged = status.get("acknowledged") or {}
    deferred = status.get("deferred") or {}
    pending, bound = {}, {}
    for action in ONE_SHOT:
        token = annotations.get(annotation(action))
        if token and acknowledged.get(action) != token:
            pending[action] = token
            held = deferred.get(action) or {}
            if held.get("token") == token and held.get("revision"):
                bound[action] = held["revision"]
    paused = annotations.get(annotation(PAUSED), "").lower() == "true"
    return Requests(pending=pending, bound=bound, paused=paused)


@dataclass(frozen=True)
class Settlement:
    acknowledged: dict[str, str]  # status.acknowledged after this reconcile
    deferred: dict[str, dict[str, str]]  # status.deferred: action -> {token, revision}
    events: list[Event]

    def record(self, status: dict[str, Any]) -> None:
        """Write the settlement into ``status`` (the keys it owns, nothing else)."""
        status.pop("deferred", None)
        status.update({"acknowledged": self.acknowledged} if self.acknowledged else {})
        status.update({"deferred": self.deferred} if self.deferred else {})


def settle(
    requests: Requests,
    status: Mapping[str, Any],
    acted: Iterable[str],
    deferred: Iterable[str],
    declined: Mapping[str, str],
    rollout: str | None,
    default: str,
) -> Settlement:
    """Settle every pending action: acted on, deferred (bound to ``rollout``, the revision
    being rolled out), or acknowledged with an Event giving the reason there was nothing to
    do (``declined[action]``, else ``default``)."""
    acted, deferred = set(acted), set(deferred)
    acknowledged = dict(status.get("acknowledged") or {})
    held: dict[str, dict[str, str]] = {}
    events: list[Event] = []
    for action, token in requests.pending.items():
        if action in deferred and rollout:
            held[action] = {"token": token, "revision": rollout}
            continue
        acknowledged[action] = token
        if action in acted:
            continue
        was = requests.bound.get(action)
        if was and was != rollout:
            why = f"it waited for the rollout of revision {was}, which is no longer in progress"
            events.append(normal("ActionDropped", f"{VERB[action]} dropped: {why}"))
        else:
            why = declined.get(action) or default
            events.append(normal("NothingToDo", f"nothing to {VERB[action]}: {why}"))
    return Settlement(acknowledged, held, events)
