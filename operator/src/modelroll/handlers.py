"""kopf glue: watch events fill the cache and queue the owning ModelDeployment (I/O).

Only ``on.event`` handlers are used, never kopf's change handlers, so kopf writes no
annotations or finalizers of its own onto the objects: the operator never touches spec
or metadata, and GitOps tools see no drift (docs/operator.md says why, at length).

Two API clients: the Lease's, and the one every reconcile writes through, fenced by the
leader's write budget (fence.py). HTTPRoutes are not watched by kopf but by discovery.py,
because the Gateway API may be installed after the operator started.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, cast

import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from modelroll_contract import LABEL_MANAGED_BY, MANAGED_BY_VALUE

from . import login, metrics
from .cache import Cache
from .controller import Controller
from .discovery import HTTPRouteWatch
from .fence import FencedClient
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
    routes: HTTPRouteWatch | None = None
    discovery: asyncio.Task[None] | None = None


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
    current = config.get()
    server = current.cluster.server if current else "?"
    log.info("Kubernetes API at %s (%s)", server, "in-cluster ServiceAccount" if login.in_cluster() else "kubeconfig")
    # The Lease gets a client of its own: its renewals never wait behind reconcile traffic,
    # and the write fence below (which the Lease's own writes must pass) does not apply to it.
    elector = _elector(AsyncClient(config=config, field_manager=FIELD_MANAGER))
    budget = elector.write_budget if elector else (lambda: math.inf)
    client = FencedClient(config=config, field_manager=FIELD_MANAGER, budget=budget)
    State.controller = controller = Controller(State.settings, Kube(client), State.cache)
    _start_discovery(client, controller)
    if elector:
        controller.lead(False)  # until the first round wins the Lease
        State.elector = elector
        State.election = asyncio.create_task(elector.run())
    await controller.start()
    State.runner = await metrics.serve(
        State.settings.metrics_port, State.cache.phases, _healthy, lambda: State.cache.parents.values()
    )
    log.info("modelroll operator started (namespaces: %s)", ", ".join(State.settings.namespaces) or "all")


def _elector(client: AsyncClient) -> LeaderElector | None:
    """With leader election on, reconcile only while holding the Lease (watches run regardless,
    so a standby's cache is warm when it takes over). Until the first round wins, nothing writes."""
    settings = State.settings
    if not settings.leader_election:
        metrics.LEADER.set(1)
        return None

    def on_change(leading: bool) -> None:
        if State.controller is not None:
            State.controller.lead(leading)
        metrics.LEADER.set(1 if leading else 0)

    metrics.LEADER.set(0)
    return LeaderElector(
        client,
        settings.leader_election_namespace or in_cluster_namespace() or "default",
        settings.leader_election_lease,
        on_change,
        lease_seconds=settings.lease_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry=settings.retry_seconds,
    )


def _start_discovery(client: AsyncClient, controller: Controller) -> None:
    """Watch our HTTPRoutes whenever the Gateway API is served, however late it is installed."""

    def on_served(_served: bool) -> None:
        controller.enqueue_needing_gateway_api()

    routes = HTTPRouteWatch(
        client, State.cache, State.settings.namespaces, State.settings.discovery_seconds,
        on_route=controller.enqueue_soon, on_served=on_served,
    )  # fmt: skip
    controller.gateway_api = lambda: routes.served
    State.routes = routes
    State.discovery = asyncio.create_task(routes.run())


def _healthy() -> bool:
    background = [t for t in (State.election, State.discovery) if t is not None]
    return State.controller is not None and State.controller.healthy() and not any(t.done() for t in background)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if State.controller:
        await State.controller.stop()
    for task in (State.election, State.discovery):
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if State.elector:
        await State.elector.release()  # after the workers stopped: never two leaders acting
    if State.runner:
        await State.runner.cleanup()


def event_object(event: kopf.RawEvent) -> tuple[dict[str, Any], bool]:
    """(object, deleted) from a kopf watch event."""
    return cast(dict[str, Any], event["object"]), event.get("type") == "DELETED"


@kopf.on.event("modelroll.io", "v1alpha1", "modeldeployments")
async def modeldeployment_event(event: kopf.RawEvent, **_: Any) -> None:
    obj, deleted = event_object(event)
    key = State.cache.put_parent(obj, deleted)
    if not deleted:
        _queue(key)


async def _child(kind: str, event: kopf.RawEvent) -> None:
    obj, deleted = event_object(event)
    key = State.cache.put_child(kind, obj, deleted)
    if key is not None and State.controller is not None:
        State.controller.enqueue_soon(key)


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
async def deployment_event(event: kopf.RawEvent, **_: Any) -> None:
    await _child("Deployment", event)


@kopf.on.event("", "v1", "services", labels=OURS)
async def service_event(event: kopf.RawEvent, **_: Any) -> None:
    await _child("Service", event)


@kopf.on.event("", "v1", "configmaps", labels=OURS)
async def configmap_event(event: kopf.RawEvent, **_: Any) -> None:
    await _child("ConfigMap", event)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
async def autoscaler_event(event: kopf.RawEvent, **_: Any) -> None:
    await _child("HorizontalPodAutoscaler", event)


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    await _child("Pod", event)
