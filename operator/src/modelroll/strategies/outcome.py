"""What a strategy decides for one reconcile (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from ..traffic.routing import Routing


@dataclass(frozen=True)
class Outcome:
    children: list[dict[str, Any]]  # the desired Deployments (and HPA); routing objects come from the router
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
    routing: Routing = field(default_factory=Routing)
    extra_status: dict[str, Any] = field(default_factory=dict)
    drop_status: tuple[str, ...] = ()  # status keys this strategy no longer uses
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # Deployments kept exactly as they run (the stable track during a rollout): never
    # re-applied, only scaled through their scale subresource when the count is wrong.
    held: dict[str, int] = field(default_factory=dict)  # Deployment name -> replicas
    # Manual actions: what this reconcile acted on, what it deliberately defers within this
    # rollout, and why it did nothing for the others (the planner settles them all).
    acted: frozenset[str] = frozenset()
    deferred: frozenset[str] = frozenset()
    declined: Mapping[str, str] = field(default_factory=dict)
