"""Whether the Gateway API's HTTPRoute is served, found again at any time, and a watch on the
operator's own HTTPRoutes while it is (I/O).

kopf resolves the resources it watches once, at startup (its CRD scanning, which would notice
new CRDs, needs cluster-wide list/watch on CustomResourceDefinitions and namespaces, which the
operator is not granted). The Gateway API is the one API the operator uses that a cluster may
install — or remove — while the operator runs, so its HTTPRoutes are watched here instead:

- per watched scope (each namespace, or the whole cluster), a loop lists our HTTPRoutes;
  404 means the resource is not served (the CRD is missing or not yet Established): the
  cached routes of the scope are dropped and the list is tried again every
  ``recheck_seconds``. A new CRD is therefore noticed within that bound, with no restart;
- once the list answers, the loop watches from the list's resourceVersion and feeds the
  cache; when the watch ends with an error (the CRD was deleted, the version is too old)
  it lists again, which also drops routes deleted meanwhile.

It needs no permission beyond the ``list``/``watch`` on httproutes the chart already grants.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.client import LabelSelector
from lightkube.core.exceptions import ApiError
from modelroll_contract import LABEL_MANAGED_BY, MANAGED_BY_VALUE

from .cache import Cache, Key
from .kube import HTTPRoute

log = logging.getLogger(__name__)
KIND = "HTTPRoute"
ALL_NAMESPACES = "*"
OURS: LabelSelector = {LABEL_MANAGED_BY: MANAGED_BY_VALUE}
WATCH_SERVER_TIMEOUT = 300  # seconds; the API server ends each watch request after this
WATCH_RETRY_SECONDS = 1.0  # pause before listing again after a watch failed


def _code(error: httpx2.HTTPStatusError) -> int:
    """The HTTP status; an unserved resource is answered ``404 page not found`` in plain text,
    so lightkube raises the bare httpx error there rather than an ApiError with a Status."""
    if isinstance(error, ApiError) and error.status and error.status.code:
        return int(error.status.code)
    return error.response.status_code


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class HTTPRouteWatch:
    """``served``: None until the first answer, then whether HTTPRoute v1 is served.

    ``on_route(key)`` is called for the ModelDeployment whose route changed (or vanished);
    ``on_served(served)`` when the answer changes."""

    def __init__(
        self,
        client: AsyncClient,
        cache: Cache,
        namespaces: Sequence[str],
        recheck_seconds: float,
        on_route: Callable[[Key], None],
        on_served: Callable[[bool], None],
    ) -> None:
        self.client = client
        self.cache = cache
        self.scopes = tuple(namespaces) or (ALL_NAMESPACES,)
        self.recheck_seconds = recheck_seconds
        self.on_route = on_route
        self.on_served = on_served
        self.served: bool | None = None

    async def run(self) -> None:
        await asyncio.gather(*(self._scope(namespace) for namespace in self.scopes))

    async def _scope(self, namespace: str) -> None:
        while True:
            try:
                version = await self._relist(namespace)
            except httpx2.HTTPStatusError as error:
                if _code(error) == 404:  # no such resource: the CRD is missing (or not Established)
                    self._forget(namespace)
                    self._set(False)
                else:
                    log.warning("HTTPRoutes in %s: list failed: %s", namespace, error)
                await asyncio.sleep(self.recheck_seconds)
                continue
            except Exception as error:  # noqa: BLE001 - the API server unreachable: keep the last answer
                log.warning("HTTPRoutes in %s: list failed: %s", namespace, error)
                await asyncio.sleep(self.recheck_seconds)
                continue
            self._set(True)
            try:
                async for kind, obj in self.client.watch(
                    HTTPRoute,
                    namespace=namespace,
                    labels=OURS,
                    resource_version=version,
                    server_timeout=WATCH_SERVER_TIMEOUT,
                ):
                    self._put(_plain(obj), deleted=kind == "DELETED")
            except Exception as error:  # noqa: BLE001 - ends with the CRD, or a too-old version: list again
                log.info("HTTPRoutes in %s: watch ended (%s); listing again", namespace, error)
            await asyncio.sleep(min(WATCH_RETRY_SECONDS, self.recheck_seconds))

    async def _relist(self, namespace: str) -> str:
        """List our routes in ``namespace``, make the cache hold exactly those; the list's version."""
        listing = self.client.list(HTTPRoute, namespace=namespace, labels=OURS)
        listed = [_plain(obj) async for obj in listing]
        names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed}
        for obj in self._cached(namespace):
            meta = obj["metadata"]
            if (meta["namespace"], meta["name"]) not in names:
                self._put(obj, deleted=True)
        for obj in listed:
            self._put(obj, deleted=False)
        return listing.resourceVersion

    def _forget(self, namespace: str) -> None:
        """The API is gone, and with it every route: drop them from the cache."""
        for obj in self._cached(namespace):
            self._put(obj, deleted=True)

    def _cached(self, namespace: str) -> list[dict[str, Any]]:
        return [
            obj
            for key, kinds in list(self.cache.children.items())
            if namespace in (ALL_NAMESPACES, key[0])
            for obj in list(kinds.get(KIND, {}).values())
        ]

    def _put(self, obj: dict[str, Any], deleted: bool) -> None:
        key = self.cache.put_child(KIND, obj, deleted)
        if key is not None:
            self.on_route(key)

    def _set(self, served: bool) -> None:
        if served == self.served:
            return
        first = self.served is None
        self.served = served
        if served:
            log.info("Gateway API: HTTPRoute is served; watching the operator's HTTPRoutes")
        elif first:
            log.info("Gateway API: HTTPRoute is not served; checking again every %g s", self.recheck_seconds)
        else:
            log.warning("Gateway API: HTTPRoute is no longer served; checking again every %g s", self.recheck_seconds)
        self.on_served(served)
