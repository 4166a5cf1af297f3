"""kopf glue: watch events fill the cache and queue the owning ModelDeployment (I/O).

Only ``on.event`` handlers are used, never kopf's change handlers, so kopf writes no
annotations or finalizers of its own onto the objects: the operator never touches spec
or metadata, and GitOps tools see no drift.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from modelroll_contract import LABEL_MANAGED_BY, MANAGED_BY_VALUE

from . import login, metrics
from .cache import Cache
from .controller import Controller, event_object
from .kube import FIELD_MANAGER, Kube
from .leader import LeaderElector, in_cluster_namespace
from .settings import Settings

log = logging.getLogger(__name__)
OURS = {LABEL_MANAGED_BY: MANAGED_BY_VALUE}


class State:
    settings: Settings
    cache = Cache()
    controller: Controller | None = None
    runner: Any = None
    elector: LeaderElector | None = None
    election: asyncio.Task[None] | None = None


def configure(settings: Settings) -> None:
    State.settings = settings


def _queue(key: Any) -> None:
    if key is not None and State.controller is not None:
        State.controller.enqueue(key)


@kopf.on.login()
def login_handler(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf reaches the API server as lightkube does (login.py), not through cluster DNS."""
    return login.login(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # we record our own Events, one per transition
    settings.scanning.disabled = True  # no need to list CRDs cluster-wide
    # kopf waits this long for more events of an object before handing them over; the cache
    # and our own debounce already fold bursts, so only latency would be added.
    settings.batching.batch_window = 0.01
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    config = KubeConfig.from_env()  # in-cluster first, then KUBECONFIG: the order login.login follows
    client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
    current = config.get()
    server = current.cluster.server if current else "?"
    log.info("Kubernetes API at %s (%s)", server, "in-cluster ServiceAccount" if login.in_cluster() else "kubeconfig")
    State.controller = Controller(State.settings, Kube(client), State.cache)
    _start_election(client)
    await State.controller.start()
    State.runner = await metrics.serve(
        State.settings.metrics_port, State.cache.phases, _healthy, lambda: State.cache.parents.values()
    )
    log.info("modelroll operator started (namespaces: %s)", ", ".join(State.settings.namespaces) or "all")


def _start_election(client: AsyncClient) -> None:
    """With leader election on, reconcile only while holding the Lease (watches run regardless,
    so a standby's cache is warm when it takes over)."""
    settings, controller = State.settings, State.controller
    assert controller is not None
    if not settings.leader_election:
        metrics.LEADER.set(1)
        return

    def on_change(leading: bool) -> None:
        controller.lead(leading)
        metrics.LEADER.set(1 if leading else 0)

    on_change(False)
    State.elector = LeaderElector(
        client,
        settings.leader_election_namespace or in_cluster_namespace() or "default",
        settings.leader_election_lease,
        on_change,
        lease_seconds=settings.lease_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry=settings.retry_seconds,
    )
    State.election = asyncio.create_task(State.elector.run())


def _healthy() -> bool:
    election_alive = State.election is None or not State.election.done()
    return State.controller is not None and State.controller.healthy() and election_alive


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if State.controller:
        await State.controller.stop()
    if State.election:
        State.election.cancel()
        await asyncio.gather(State.election, return_exceptions=True)
    if State.elector:
        await State.elector.release()  # after the workers stopped: never two leaders acting
    if State.runner:
        await State.runner.cleanup()


@kopf.on.event("modelroll.io", "v1alpha1", "modeldeployments")
async def modeldeployment_event(event: dict[str, Any], **_: Any) -> None:
    obj, deleted = event_object(event)
    key = State.cache.put_parent(obj, deleted)
    if not deleted:
        _queue(key)


async def _child(kind: str, event: dict[str, Any]) -> None:
    obj, deleted = event_object(event)
    key = State.cache.put_child(kind, obj, deleted)
    if key is not None and State.controller is not None:
        State.controller.enqueue_soon(key)


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
async def deployment_event(event: dict[str, Any], **_: Any) -> None:
    await _child("Deployment", event)


@kopf.on.event("", "v1", "services", labels=OURS)
async def service_event(event: dict[str, Any], **_: Any) -> None:
    await _child("Service", event)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
async def autoscaler_event(event: dict[str, Any], **_: Any) -> None:
    await _child("HorizontalPodAutoscaler", event)


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_event(event: dict[str, Any], **_: Any) -> None:
    await _child("Pod", event)


# Gateway API routing: the HTTPRoute CRD must exist when the operator starts (no CRD scanning,
# so the operator needs no cluster-wide read access to CRDs).
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=OURS)
async def route_event(event: dict[str, Any], **_: Any) -> None:
    await _child("HTTPRoute", event)
