"""Gateway API routing: an HTTPRoute NAME with weighted backendRefs to the track Services (pure).

No RequestMirror for the shadow phase: the stable's servers copy requests to the canary
themselves and compare the answers, which a mirror (responses discarded) cannot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from ..children import SERVICE_PORT, Owner, build_service, child_metadata, with_hash
from ..spec import ModelDeploymentSpec, TrafficRouting
from .routing import Routing, switched_weights


def canary_replicas(weight: int, stable_replicas: int) -> int:
    """The route sets the split, so the canary only needs capacity for its share."""
    if weight <= 0:
        return 0
    return max(1, math.ceil(stable_replicas * weight / 100))


def _parent(ref: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    if ref.section_name:
        out["sectionName"] = ref.section_name
    if ref.port:
        out["port"] = ref.port
    return out


def build_gateway_routing(owner: Owner, traffic: TrafficRouting, routing: Routing) -> list[dict[str, Any]]:
    stable_svc, canary_svc = f"{owner.name}-{TRACK_STABLE}", f"{owner.name}-{TRACK_CANARY}"
    if routing.active == TRACK_CANARY:  # blue-green after the switch
        weights = {stable_svc: 0, canary_svc: 100}
    else:
        weights = {stable_svc: 100 - routing.canary_weight, canary_svc: routing.canary_weight}
    rule: dict[str, Any] = {
        "backendRefs": [{"name": svc, "port": SERVICE_PORT, "weight": w} for svc, w in weights.items()]
    }
    route_spec: dict[str, Any] = {"parentRefs": [_parent(r) for r in traffic.gateway_parent_refs], "rules": [rule]}
    if traffic.hostnames:
        route_spec["hostnames"] = list(traffic.hostnames)
    route = with_hash(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": child_metadata(owner, owner.name),
            "spec": route_spec,
        }
    )
    objs = [
        # Clients that bypass the Gateway still reach only the active (stable) model.
        build_service(owner, owner.name, routing.active or TRACK_STABLE),
        build_service(owner, stable_svc, TRACK_STABLE),
        build_service(owner, canary_svc, TRACK_CANARY),
        route,
    ]
    if routing.preview:
        objs.append(build_service(owner, f"{owner.name}-preview", TRACK_CANARY))
    return objs


@dataclass(frozen=True)
class GatewayAPI:
    spec: ModelDeploymentSpec
    precedence: ClassVar[int] = 10

    @staticmethod
    def applies(spec: ModelDeploymentSpec) -> bool:
        return spec.traffic.gateway_api

    def refusal(self) -> str | None:
        if self.spec.strategy.type == "Rolling":
            return "spec.trafficRouting.gatewayAPI needs strategy Canary or BlueGreen (a rolling update has one track)"
        return None

    def replicas(self, weight: int, replicas: int) -> tuple[int, int]:
        return replicas, canary_replicas(weight, replicas)

    def build(self, owner: Owner, routing: Routing) -> list[dict[str, Any]]:
        return build_gateway_routing(owner, self.spec.traffic, routing)

    def weights(self, routing: Routing, stable_ready: int, canary_ready: int) -> dict[str, int]:
        if routing.active:
            return switched_weights(routing.active, canary_ready)
        share = routing.canary_weight if canary_ready else 0  # the route sets the split
        return {"stable": 100 - share, "canary": share}


ROUTER = GatewayAPI
