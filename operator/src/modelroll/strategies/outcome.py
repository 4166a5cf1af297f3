"""What a strategy decides for one reconcile (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    children: list[dict[str, Any]]  # every desired child, complete
    phase: str
    reason: str
    message: str
    conditions: list[dict[str, Any]]  # without timestamps
    stable: dict[str, Any] | None = None  # status.stable
    canary: dict[str, Any] | None = None  # status.canary
    replicas: int = 0  # Pods of every track (status.replicas, the scale subresource)
    ready_replicas: int = 0
    desired_replicas: int = 0
    promoted: dict[str, Any] | None = None  # a revision that became stable in this reconcile
    extra_status: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None
