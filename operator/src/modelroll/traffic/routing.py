"""What a strategy asks of traffic (``Routing``) and the one interface every router
implements (``Router``) (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from modelroll_contract import TRACK_CANARY

from ..children import Owner
from ..spec import ModelDeploymentSpec


@dataclass(frozen=True)
class Routing:
    """``canary_weight`` percent to the canary track (only counted once it has ready Pods);
    ``active`` is the track the main Service selects when the strategy switches tracks
    (blue-green) or keeps users off the canary (the shadow phase), or None to select every
    ready Pod (replica ratio); ``shadow_percent`` of stable's requests are copied to the canary
    by stable's own servers (the shadow phase; not the router's business: the planner writes
    the ConfigMap they read)."""

    canary_weight: int = 0
    active: str | None = None
    shadow_percent: int = 0
    preview: bool = False  # blue-green: also a NAME-preview Service for the new track


class Router(Protocol):
    """Turns a strategy's Routing into objects and numbers. The planner and the strategies
    know only this interface; ``traffic.router_for`` picks the implementation once."""

    precedence: int  # routers are tried in this order; the first that applies is used

    def __init__(self, spec: ModelDeploymentSpec) -> None: ...

    @staticmethod
    def applies(spec: ModelDeploymentSpec) -> bool:
        """Whether the spec asks for this router."""

    def refusal(self) -> str | None:
        """Why this router cannot serve the spec it was made for (None: it can)."""

    def replicas(self, weight: int, replicas: int) -> tuple[int, int]:
        """(stable, canary) Pods for ``weight`` percent to the canary out of ``replicas``."""

    def build(self, owner: Owner, routing: Routing) -> list[dict[str, Any]]:
        """The routing objects (Services, HTTPRoute) that realise ``routing``."""

    def weights(self, routing: Routing, stable_ready: int, canary_ready: int) -> dict[str, int]:
        """The split the ready Pods really get, not the wish (``status.weights``)."""


def switched_weights(active: str, canary_ready: int) -> dict[str, int]:
    """A strategy that switches tracks (blue-green) gives all traffic to one of them; weight
    only reaches the canary track once it has ready Pods."""
    share = 100 if active == TRACK_CANARY and canary_ready else 0
    return {"stable": 100 - share, "canary": share}
