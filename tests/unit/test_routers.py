"""One Router interface, chosen in one place: a new router is one module in traffic/, and
neither the planner nor a strategy names a router."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import modelroll.traffic as traffic
from modelroll.children import Owner
from modelroll.observed import Observed
from modelroll.planner import Subject, plan
from modelroll.traffic.gateway_api import GatewayAPI
from modelroll.traffic.replicas import ReplicaRatio

SRC = Path(traffic.__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MESH = """
from dataclasses import dataclass
from typing import Any, ClassVar

from modelroll.children import build_service
from modelroll.traffic.routing import switched_weights


@dataclass(frozen=True)
class Mesh:
    spec: Any
    precedence: ClassVar[int] = 1

    @staticmethod
    def applies(spec):
        return spec.model.version == "meshed"

    def refusal(self):
        return None

    def replicas(self, weight, replicas):
        return replicas, 1 if weight else 0

    def build(self, owner, routing):
        return [build_service(owner, f"{owner.name}-mesh", None)]

    def weights(self, routing, stable_ready, canary_ready):
        return {"stable": 70, "canary": 30}


ROUTER = Mesh
"""


def test_the_routers_are_found_in_their_modules_replica_ratio_last() -> None:
    assert (GatewayAPI, ReplicaRatio) == traffic.ROUTERS


def test_neither_the_planner_nor_a_strategy_names_a_router() -> None:
    router_words = re.compile(r"gateway_api|GatewayAPI|ReplicaRatio|traffic\.replicas|gatewayAPI|trafficRouting")
    for path in [SRC / "planner.py", *sorted((SRC / "strategies").glob("*.py"))]:
        assert not router_words.search(path.read_text()), path.name


def test_a_new_router_is_one_module(tmp_path, monkeypatch) -> None:
    (tmp_path / "mesh.py").write_text(MESH)
    monkeypatch.setattr(traffic, "__path__", [*traffic.__path__, str(tmp_path)])
    monkeypatch.setattr(traffic, "ROUTERS", traffic._routers())
    assert [r.__name__ for r in traffic.ROUTERS] == ["Mesh", "GatewayAPI", "ReplicaRatio"]

    spec = {"model": {"uri": "s3://models/fraud/v7/model.joblib", "digest": "sha256:" + "0" * 64, "version": "meshed"}}
    result = plan(Subject(Owner("fraud", "ml", "uid-1"), 1, spec), Observed(), NOW, "image:test")
    assert {o["metadata"]["name"] for o in result.apply if o["kind"] == "Service"} == {"fraud-mesh"}
    assert result.status is not None and result.status["weights"] == {"stable": 70, "canary": 30}
