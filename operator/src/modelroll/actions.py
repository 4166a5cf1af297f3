"""Manual actions (promote, abort, retry, pause, undo) requested through annotations (pure).

The kubectl plugin writes an annotation whose value is a fresh token; the operator acts on
it once and records the token under ``status.acknowledged``. Both live on the object, so a
restarted operator neither repeats nor forgets an action, and spec is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "modelroll.io/"
PROMOTE = "promote"  # advance past the current step (or pause)
PROMOTE_FULL = "promote-full"  # skip the remaining steps
ABORT = "abort"
RETRY = "retry"
UNDO = "undo"  # value "TOKEN" or "TOKEN/REVISION"
PAUSED = "paused"  # a state, not a one-shot action: "true" while paused
ONE_SHOT = (PROMOTE, PROMOTE_FULL, ABORT, RETRY, UNDO)


def annotation(action: str) -> str:
    return PREFIX + action


@dataclass(frozen=True)
class Requests:
    """Actions requested and not yet acknowledged, plus the acknowledgements to write."""

    pending: Mapping[str, str]  # action -> token
    acknowledged: Mapping[str, str]
    paused: bool = False
    consumed: dict[str, str] = field(default_factory=dict)

    def has(self, action: str) -> bool:
        return action in self.pending and action not in self.consumed

    def take(self, action: str) -> str | None:
        """Consume a pending action; returns its token (None if not pending)."""
        if not self.has(action):
            return None
        self.consumed[action] = self.pending[action]
        return self.pending[action]

    def acknowledged_after(self) -> dict[str, str]:
        return {**self.acknowledged, **self.consumed}


def read_requests(annotations: Mapping[str, str] | None, status: Mapping[str, Any]) -> Requests:
    annotations = annotations or {}
    acknowledged = dict(status.get("acknowledged") or {})
    pending = {}
    for action in ONE_SHOT:
        token = annotations.get(annotation(action))
        if token and acknowledged.get(action) != token:
            pending[action] = token
    paused = annotations.get(annotation(PAUSED), "").lower() == "true"
    return Requests(pending=pending, acknowledged=acknowledged, paused=paused)
