"""The rollout context: what one reconcile of one ModelDeployment knows, built once by the
planner and passed through every step of a strategy (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..actions import Requests
from ..analysis.state import stamp
from ..children import Owner, build_pod_template
from ..observed import DeploymentProgress, Observed, deployment_progress
from ..spec import ModelDeploymentSpec
from ..traffic.routing import Router


@dataclass(frozen=True)
class Context:
    spec: ModelDeploymentSpec
    owner: Owner
    observed: Observed
    status: Mapping[str, Any]  # as read: the previous reconcile's decisions
    requests: Requests
    now: datetime
    image: str  # the server image, unless the spec names one
    router: Router

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    def name(self, track: str) -> str:
        return f"{self.owner.name}-{track}"

    def template(self, track: str) -> dict[str, Any]:
        """The Pod template of the spec's model on ``track``."""
        return build_pod_template(self.spec, self.owner, track, self.image)

    def progress(self, track: str, revision: str) -> DeploymentProgress:
        return deployment_progress(self.observed.deployments.get(self.name(track)), revision)

    def stamp(self, when: datetime | None = None) -> str:
        return stamp(when or self.now)
