"""Writes to the Kubernetes API: server-side apply of children, deletes, status, events (I/O).

One field manager (``modelroll``) owns everything the operator writes. Reads come from the
watch caches (``cache.py``), so a reconcile of an unchanged object makes no API call.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.types import PatchType

from . import metrics
from .children import API_VERSION, KIND, Owner
from .events import Event
from .planner import ChildRef

FIELD_MANAGER = "modelroll"
log = logging.getLogger(__name__)

ModelDeployment = create_namespaced_resource("modelroll.io", "v1alpha1", KIND, "modeldeployments")
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
KINDS: dict[str, type[NamespacedResource]] = {
    "Deployment": Deployment,
    "Service": Service,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "HTTPRoute": HTTPRoute,
    "ConfigMap": ConfigMap,
}


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def exact_merge_patch(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``previous`` into exactly ``desired``.

    A merge patch merges nested objects key by key, so a key that is gone from ``desired`` at
    any depth must be sent as null, or the server keeps it: a stale ``analysis.outcome`` of an
    aborted rollout would otherwise fail the next rollout at once. Lists are replaced whole.
    """
    patch: dict[str, Any] = {k: None for k in previous if k not in desired}
    for key, value in desired.items():
        old = previous.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = exact_merge_patch(old, value)
        else:
            patch[key] = value
    return patch


class Kube:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.instance = socket.gethostname()

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object as the API server stored it."""
        metrics.API_WRITES.labels("apply", obj["kind"]).inc()
        result = await self.client.apply(codecs.from_dict(obj), field_manager=FIELD_MANAGER, force=True)
        return _plain(result)

    async def create_once(self, obj: dict[str, Any]) -> bool:
        """Create ``obj`` unless it exists (False then): never an update, so what is there stays.
        Only create: the operator has no right to read Secrets, so it cannot look first."""
        metrics.API_WRITES.labels("create", obj["kind"]).inc()
        try:
            await self.client.create(codecs.from_dict(obj))
        except ApiError as error:
            if error.status.code != 409:
                raise
            return False
        return True

    async def delete(self, namespace: str, ref: ChildRef) -> None:
        metrics.API_WRITES.labels("delete", ref.kind).inc()
        try:
            await self.client.delete(KINDS[ref.kind], ref.name, namespace=namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Scale a held Deployment without re-applying (and so re-owning) its template."""
        metrics.API_WRITES.labels("patch", "Deployment/scale").inc()
        await self.client.patch(
            Deployment.Scale, name, {"spec": {"replicas": replicas}}, namespace=namespace, patch_type=PatchType.MERGE
        )

    async def patch_status(
        self, owner: Owner, status: Mapping[str, Any], previous: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource to exactly ``status``."""
        body = exact_merge_patch(previous, status)
        metrics.API_WRITES.labels("patch", "ModelDeployment/status").inc()
        result = await self.client.patch(
            ModelDeployment.Status,
            owner.name,
            {"status": body},
            namespace=owner.namespace,
            patch_type=PatchType.MERGE,
        )
        return _plain(result)

    async def emit_event(self, owner: Owner, event: Event, now: str) -> None:
        metrics.API_WRITES.labels("create", "Event").inc()
        obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": "modelroll-operator"},
            "reportingComponent": "modelroll.io/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(codecs.from_dict(obj))
        except ApiError as error:  # an event is a courtesy; never fail a reconcile over it
            log.warning("could not record event %s on %s/%s: %s", event.reason, owner.namespace, owner.name, error)
