"""Traffic routers: the Services (and HTTPRoute) that split traffic between tracks, and the
replica counts and weights that follow from them (pure).

Every router implements ``routing.Router`` in a module of this package that names it
``ROUTER``; ``router_for`` is the only place that chooses one (the first, by ``precedence``,
whose ``applies`` holds), so nothing else branches on the kind of routing and a new router is
one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..spec import ModelDeploymentSpec
from .routing import Router


def _routers() -> tuple[type[Router], ...]:
    modules = (importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
    found: list[type[Router]] = [m.ROUTER for m in modules if hasattr(m, "ROUTER")]
    return tuple(sorted(found, key=lambda router: router.precedence))


ROUTERS = _routers()  # e.g. (GatewayAPI, ReplicaRatio): replica ratio applies to every spec, so it comes last


def router_for(spec: ModelDeploymentSpec) -> Router:
    return next(router(spec) for router in ROUTERS if router.applies(spec))
