"""APIs a ModelDeployment may need beyond core Kubernetes, and the status of one that waits
for a missing API (pure).

Today there is one: ``spec.trafficRouting.gatewayAPI`` needs the Gateway API's HTTPRoute
(``gateway.networking.k8s.io/v1``), a CRD that a cluster may install at any time — also after
the operator started (``discovery.py`` notices it). While it is missing, such an object is not
planned at all — nothing would be half-applied — and its status says why it waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import conditions as c
from .events import Event, warning
from .planner import Plan, Subject, timestamp

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = "v1"
GATEWAY_API_NOT_INSTALLED = "GatewayAPINotInstalled"


def needs_gateway_api(spec: Mapping[str, Any]) -> bool:
    """Whether the raw spec routes traffic through a Gateway API HTTPRoute.

    Read from the raw spec, not the parsed one: an object that waits must say so even while
    the rest of its spec is being changed."""
    routing = spec.get("trafficRouting")
    return isinstance(routing, Mapping) and bool(routing.get("gatewayAPI"))


def gateway_api_missing_message(recheck_seconds: float) -> str:
    return (
        f"waiting: Gateway API not installed (spec.trafficRouting.gatewayAPI needs HTTPRoute, "
        f"{GATEWAY_API_GROUP}/{GATEWAY_API_VERSION}); nothing is changed until it is. Install the "
        f"Gateway API CRDs: the operator notices within {recheck_seconds:g} s, no restart needed"
    )


def plan_waiting_for_gateway_api(subject: Subject, now: datetime, recheck_seconds: float) -> Plan:
    """The status (and one Warning Event on entering it) of an object that needs the Gateway
    API while it is not installed. No child is applied, deleted or scaled.

    An object that never served is Pending; one that did (its routes went with the CRD) is
    Degraded. Conditions not about readiness or progress (ModelVerified) are kept as they are."""
    previous = subject.status
    message = gateway_api_missing_message(recheck_seconds)
    served = bool(previous.get("stable"))
    wanted = [
        c.condition(c.READY, False, GATEWAY_API_NOT_INSTALLED, message),
        c.condition(c.PROGRESSING_COND, False, GATEWAY_API_NOT_INSTALLED, message),
        c.condition(c.DEGRADED_COND, served, GATEWAY_API_NOT_INSTALLED if served else c.AS_EXPECTED, message),
    ]
    types = {cond["type"] for cond in wanted}
    old = list(previous.get("conditions") or ())
    conditions = c.merge_conditions(old, wanted, timestamp(now), subject.generation)
    conditions += [cond for cond in old if cond.get("type") not in types]
    status = {
        **previous,
        "observedGeneration": subject.generation,
        "phase": c.DEGRADED if served else c.PENDING,
        "reason": GATEWAY_API_NOT_INSTALLED,
        "message": message,
        "conditions": conditions,
    }
    changed = status != dict(previous)
    events: tuple[Event, ...] = ()
    if previous.get("reason") != GATEWAY_API_NOT_INSTALLED:
        events = (warning(GATEWAY_API_NOT_INSTALLED, message),)
    return Plan(status=status if changed else None, events=events)
