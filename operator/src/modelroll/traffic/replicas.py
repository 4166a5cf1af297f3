"""Replica-ratio routing, no dependencies: Service NAME selects the ready Pods of every
track, so the split follows the ready Pod counts (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from ..children import Owner, build_service
from ..spec import ModelDeploymentSpec
from .routing import Routing, switched_weights


def split_replicas(weight: int, replicas: int) -> tuple[int, int]:
    """(stable, canary) Pods whose ratio gives the canary ``weight`` percent.

    As the canary grows the stable track shrinks (Argo Rollouts' dynamicStableScale): each
    track gets its share of ``replicas``, rounded up, so the two add up to ``replicas`` or
    one more and any weight is reachable (``setWeight: 90`` of 10 is 9 canary, 1 stable).
    The canary strategy scales stable down only as canary Pods are Ready, so the ready Pods
    never number fewer than ``replicas``.
    """
    if weight <= 0 or replicas <= 0:
        return replicas, 0
    if weight >= 100:
        return 0, replicas
    return math.ceil(replicas * (100 - weight) / 100), math.ceil(replicas * weight / 100)


@dataclass(frozen=True)
class ReplicaRatio:
    spec: ModelDeploymentSpec
    precedence: ClassVar[int] = 1000  # the fallback: needs nothing installed

    @staticmethod
    def applies(spec: ModelDeploymentSpec) -> bool:
        return True  # the default: no routing configured

    def refusal(self) -> str | None:
        return None

    def replicas(self, weight: int, replicas: int) -> tuple[int, int]:
        return split_replicas(weight, replicas)

    def build(self, owner: Owner, routing: Routing) -> list[dict[str, Any]]:
        objs = [
            build_service(owner, owner.name, routing.active),
            build_service(owner, f"{owner.name}-{TRACK_STABLE}", TRACK_STABLE),
        ]
        if self.spec.strategy.type != "Rolling":
            objs.append(build_service(owner, f"{owner.name}-{TRACK_CANARY}", TRACK_CANARY))
        if routing.preview:
            objs.append(build_service(owner, f"{owner.name}-preview", TRACK_CANARY))
        return objs

    def weights(self, routing: Routing, stable_ready: int, canary_ready: int) -> dict[str, int]:
        if routing.active:
            return switched_weights(routing.active, canary_ready)
        share = round(100 * canary_ready / (stable_ready + canary_ready)) if canary_ready else 0
        return {"stable": 100 - share, "canary": share}


ROUTER = ReplicaRatio
