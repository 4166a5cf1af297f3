"""HTTPRoute discovery: not served (404) is looked for again on a timer; once served, our routes
are listed into the cache and watched; a watch that ends lists again, dropping what vanished.

The client is a fake with the lightkube calls discovery makes (list, watch), as the API server
answers them."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from modelroll.cache import Cache
from modelroll.discovery import HTTPRouteWatch
from modelroll.settings import SettingsError, load_settings
from modelroll_contract import LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY_VALUE


def _error(code: int) -> ApiError:
    err = ApiError.__new__(ApiError)
    err.status = Status(code=code, message=str(code))
    return err


def not_served() -> httpx2.HTTPStatusError:
    """What lightkube raises when the API server answers ``404 page not found`` (plain text) for
    a resource it does not serve."""
    request = httpx2.Request("GET", "https://api.test/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes")
    response = httpx2.Response(404, text="404 page not found", request=request)
    return httpx2.HTTPStatusError("Client error '404 Not Found'", request=request, response=response)


def route(name: str, parent: str, version: int, namespace: str = "ml") -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(version),
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_NAME: parent}},
    }  # fmt: skip


class Listing:
    def __init__(self, items: list[dict], version: str) -> None:
        self.items, self.resourceVersion = items, version

    def __aiter__(self):
        async def gen():
            for item in self.items:
                yield item

        return gen()


class FakeAPI:
    """HTTPRoutes of one namespace; ``installed`` says whether the CRD is served."""

    def __init__(self) -> None:
        self.installed = False
        self.routes: dict[str, dict] = {}
        self.version = 10
        self.lists = 0
        self.events: asyncio.Queue = asyncio.Queue()
        self.watching = asyncio.Event()

    def list(self, _res, namespace, labels):
        self.lists += 1
        if not self.installed:

            class Missing:
                def __aiter__(self):
                    async def gen():
                        raise not_served()
                        yield  # pragma: no cover

                    return gen()

            return Missing()
        return Listing(list(self.routes.values()), str(self.version))

    def watch(self, _res, namespace, labels, resource_version, server_timeout):
        async def gen():
            self.watching.set()
            while True:
                event = await self.events.get()
                if isinstance(event, Exception):
                    self.watching.clear()
                    raise event
                yield event

        return gen()


def label_key(cache: Cache) -> dict:
    return {key: sorted(kinds.get("HTTPRoute", {})) for key, kinds in cache.children.items() if kinds.get("HTTPRoute")}


def test_routes_are_watched_once_the_crd_appears_and_dropped_when_it_goes():
    async def scenario():
        api, cache = FakeAPI(), Cache()
        served_changes: list[bool] = []
        touched: list[tuple[str, str]] = []
        watch = HTTPRouteWatch(api, cache, ("ml",), 0.05, on_route=touched.append, on_served=served_changes.append)
        task = asyncio.create_task(watch.run())

        async def until(predicate):
            for _ in range(200):
                if predicate():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("timed out")

        await until(lambda: watch.served is False)
        await until(lambda: api.lists >= 3)  # looked for again on the timer
        assert served_changes == [False]

        # The CRD is installed (a route of ours exists already, e.g. another replica's).
        api.routes["m"] = route("m", "m", 11)
        api.installed = True
        await until(lambda: watch.served is True)
        await until(api.watching.is_set)
        assert served_changes == [False, True] and label_key(cache) == {("ml", "m"): ["m"]}

        # Watch events feed the cache and queue the owner.
        touched.clear()
        await api.events.put(("ADDED", route("n", "n", 12)))
        await until(lambda: ("ml", "n") in touched)
        assert label_key(cache) == {("ml", "m"): ["m"], ("ml", "n"): ["n"]}

        # The watch breaks (a too-old version); meanwhile route n was deleted: the relist drops it.
        api.routes = {"m": route("m", "m", 13)}
        await api.events.put(_error(410))
        await until(lambda: label_key(cache) == {("ml", "m"): ["m"]})
        assert watch.served is True

        # The CRD is removed: the watch ends, the list answers 404, every cached route goes.
        api.installed = False
        await api.events.put(not_served())
        await until(lambda: watch.served is False)
        assert label_key(cache) == {} and served_changes == [False, True, False]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_unreachable_api_keeps_the_last_answer():
    async def scenario():
        api, cache = FakeAPI(), Cache()
        api.installed = True
        watch = HTTPRouteWatch(api, cache, ("ml",), 0.05, on_route=lambda _k: None, on_served=lambda _s: None)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(api.watching.wait(), 1)
        assert watch.served is True

        def unreachable(*_args, **_kwargs):
            raise ConnectionError("API server unreachable")

        api.list = unreachable
        await api.events.put(ConnectionError("stream reset"))
        await asyncio.sleep(0.2)
        assert watch.served is True  # a network error says nothing about the CRD
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_discovery_interval_setting():
    assert load_settings({}).discovery_seconds == 10
    assert load_settings({"MODELROLL_DISCOVERY_SECONDS": "1"}).discovery_seconds == 1
    with pytest.raises(SettingsError, match="MODELROLL_DISCOVERY_SECONDS"):
        load_settings({"MODELROLL_DISCOVERY_SECONDS": "0.1"})
