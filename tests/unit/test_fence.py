"""The write fence: once the write budget is gone no mutating request leaves the process, and a
write still in flight when it runs out is abandoned; reads are never fenced.

The client is lightkube's own, talking to an in-process transport that records each request."""

from __future__ import annotations

import asyncio
import inspect
import math

import httpx2
import lightkube
import pytest
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap
from modelroll.fence import FENCED_METHODS, FencedClient, NotLeader

READS = {"get", "wait", "close", "aclose"}  # coroutine methods that send nothing mutating


class Server:
    """Answers every request with the ConfigMap it was sent (or an empty one), after ``delay``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append((request.method, request.url.path))
        await asyncio.sleep(self.delay)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
        return httpx2.Response(200, json=body)


def client(server: Server, budget) -> FencedClient:
    return FencedClient(
        config=KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": "http://api.test"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
                "current-context": "c",
            }
        ),
        transport=httpx2.MockTransport(server),
        field_manager="modelroll",
        budget=budget,
    )


def config_map() -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name="c", namespace="ns"), data={"k": "v"})


def test_every_mutating_method_of_lightkube_is_fenced():
    """A lightkube upgrade that adds a way to write fails here until the fence covers it."""
    coroutines = {
        name
        for name, fn in inspect.getmembers(lightkube.AsyncClient)
        if not name.startswith("_") and inspect.iscoroutinefunction(fn)
    }
    assert coroutines - READS == set(FENCED_METHODS)
    for name in FENCED_METHODS:
        assert getattr(FencedClient, name) is not getattr(lightkube.AsyncClient, name), name


@pytest.mark.parametrize(
    "write",
    [
        lambda c: c.create(config_map()),
        lambda c: c.replace(config_map()),
        lambda c: c.apply(config_map(), force=True),
        lambda c: c.patch(ConfigMap, "c", {"data": {"k": "w"}}, namespace="ns"),
        lambda c: c.set(ConfigMap, "c", labels={"a": "b"}, namespace="ns"),
        lambda c: c.delete(ConfigMap, "c", namespace="ns"),
        lambda c: c.deletecollection(ConfigMap, namespace="ns"),
    ],
    ids=["create", "replace", "apply", "patch", "set", "delete", "deletecollection"],
)
def test_no_budget_no_request(write):
    server = Server()

    async def scenario():
        with pytest.raises(NotLeader, match="does not hold the leader Lease"):
            await write(client(server, lambda: 0.0))

    asyncio.run(scenario())
    assert server.requests == []


def test_reads_pass_and_writes_pass_while_the_budget_lasts():
    server = Server()

    async def scenario():
        c = client(server, lambda: 5.0)
        await c.get(ConfigMap, "c", namespace="ns")
        await c.apply(config_map(), force=True)
        closed = client(server, lambda: 0.0)
        await closed.get(ConfigMap, "c", namespace="ns")  # a standby still reads (its caches stay warm)

    asyncio.run(scenario())
    assert [method for method, _ in server.requests] == ["GET", "PATCH", "GET"]


def test_a_write_still_in_flight_when_the_budget_runs_out_is_abandoned():
    server = Server(delay=1.0)

    async def scenario():
        started = asyncio.get_running_loop().time()
        with pytest.raises(NotLeader, match="ran out while it was in flight"):
            await client(server, lambda: 0.1).apply(config_map(), force=True)
        return asyncio.get_running_loop().time() - started

    took = asyncio.run(scenario())
    assert took < 0.5  # it did not wait for the answer


def test_without_leader_election_the_budget_is_unbounded():
    server = Server(delay=0.05)

    async def scenario():
        await client(server, lambda: math.inf).apply(config_map(), force=True)

    asyncio.run(scenario())
    assert [method for method, _ in server.requests] == ["PATCH"]


def test_the_budget_is_read_at_each_write_not_once():
    budget = [5.0]
    server = Server()

    async def scenario():
        c = client(server, lambda: budget[0])
        await c.create(config_map())
        budget[0] = 0.0
        with pytest.raises(NotLeader):
            await c.create(config_map())

    asyncio.run(scenario())
    assert [method for method, _ in server.requests] == ["POST"]
