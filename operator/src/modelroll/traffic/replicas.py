"""Replica-ratio routing, no dependencies: Service NAME selects the ready Pods of every
track, so the split follows the ready Pod counts (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelroll_contract import TRACK_CANARY, TRACK_STABLE

from ..children import Owner, build_service
from ..spec import ModelDeploymentSpec
from .routing import Routing, switched_weights


def canary_replicas(weight: int, stable_replicas: int) -> int:
    """Canary Pods giving ``weight`` percent next to a stable track kept at full scale.

    c / (n + c) = w / 100, so c = n * w / (100 - w). At least one Pod for any weight above
    zero; at most n (so capacity at most doubles): past 50 % the canary gets half, which the
    status reports honestly — use Gateway API routing for finer splits.
    """
    if weight <= 0:
        return 0
    if weight >= 50 or stable_replicas <= 0:
        return max(stable_replicas, 1)
    return max(1, min(stable_replicas, math.ceil(stable_replicas * weight / (100 - weight))))


@dataclass(frozen=True)
class ReplicaRatio:
    spec: ModelDeploymentSpec

    @staticmethod
    def applies(spec: ModelDeploymentSpec) -> bool:
        return True  # the default: no routing configured

    def refusal(self) -> str | None:
        return None

    def replicas(self, weight: int, replicas: int) -> tuple[int, int]:
        return replicas, canary_replicas(weight, replicas)

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
