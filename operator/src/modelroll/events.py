"""The one Event type every pure module returns and kube.py records (pure data).

A NamedTuple: immutable, and compared and printed as the (type, reason, message) it is.
"""

from __future__ import annotations

from typing import NamedTuple

NORMAL, WARNING = "Normal", "Warning"


class Event(NamedTuple):
    type: str  # Normal | Warning
    reason: str
    message: str


def normal(reason: str, message: str) -> Event:
    return Event(NORMAL, reason, message)


def warning(reason: str, message: str) -> Event:
    return Event(WARNING, reason, message)
