"""Traffic routers: the Services (and HTTPRoute) that split traffic between tracks, and the
replica counts and weights that follow from them (pure).

Every router implements ``routing.Router``; ``router_for`` is the only place that chooses
one, so nothing else branches on the kind of routing. A new router is one module here plus
its line in ``ROUTERS``.
"""

from __future__ import annotations

from ..spec import ModelDeploymentSpec
from .gateway_api import GatewayAPI
from .replicas import ReplicaRatio
from .routing import Router

ROUTERS: tuple[type[Router], ...] = (GatewayAPI, ReplicaRatio)  # the first that applies; replica ratio last


def router_for(spec: ModelDeploymentSpec) -> Router:
    return next(router(spec) for router in ROUTERS if router.applies(spec))
