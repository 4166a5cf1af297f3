"""Undo: pin the ModelDeployment to an earlier promoted revision without writing spec (pure).

``kubectl modelroll undo NAME [--to-revision R]`` annotates the object; the pin records the
revision and the spec generation it was made against. The pinned model rolls out at once
(a rolling update of the stable track: no steps, no serving gap). The pin holds until the
spec changes or ``retry`` lifts it, so a GitOps tool that re-syncs the same spec does not
undo the undo, and the status says plainly that spec and serving differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import actions
from ..actions import Requests
from ..events import Event
from .tracks import IDENTITY_KEYS


def resolve_pin(
    status: Mapping[str, Any], requests: Requests, generation: int
) -> tuple[dict[str, Any] | None, list[Event], set[str]]:
    """The pin in force after this reconcile's requests, the events they cause, and the
    actions acted on (an undo always is: rolled back, or refused with a Warning)."""
    events: list[Event] = []
    acted: set[str] = set()
    pinned = dict(status.get("pinned") or {}) or None
    if pinned and pinned.get("generation") != generation:
        pinned = None  # a new spec supersedes the undo
    token = requests.pending.get(actions.UNDO)
    if token:
        acted.add(actions.UNDO)
        history = list(status.get("history") or [])
        wanted = token.partition("/")[2]
        current = (status.get("stable") or {}).get("revision")
        choices = [h for h in history if (h.get("revision") == wanted if wanted else h.get("revision") != current)]
        if choices:
            entry = choices[0]
            pinned = {**{k: entry[k] for k in IDENTITY_KEYS if k in entry}, "generation": generation}
            events.append(Event("Normal", "Undo", f"rolling back to {entry.get('version') or entry['revision']}"))
        else:
            what = f"revision {wanted}" if wanted else "an earlier revision"
            events.append(Event("Warning", "UndoFailed", f"undo: {what} is not in status.history"))
    if pinned and requests.has(actions.RETRY):
        acted.add(actions.RETRY)
        events.append(Event("Normal", "Unpinned", "undo lifted: serving the spec's model again"))
        pinned = None
    return pinned, events, acted
