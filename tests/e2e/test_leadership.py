"""Leadership against the real API server: losing the Lease stops every write at once.

The seam that holds a reconcile in flight is the analysis query: the operator asks Prometheus
(here a loopback stand-in that answers "no data", so the canary waits and every measurement
is a status write) and the test can hold one answer back. While that reconcile waits, a second
identity — this test, electing with the operator's own ``LeaderElector`` on its own client —
takes the Lease over; the operator must then write nothing: the ModelDeployment's
resourceVersion, its Services' resourceVersions, the operator's managedFields on its
Deployments and the namespace's Events stay exactly as they were. Once the Lease comes back,
the same operator writes again at once, so the silence was not for lack of anything to write.

And the API's own arbitration: two electors racing for an expired Lease both send a
resourceVersion-guarded update; the API server accepts one and answers the other 409.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from modelroll.leader import LeaderElector, _micro_now

from tests.e2e.operator_helpers import apply, manifest, scrape, stable_version_is, status_of
from tests.helpers import free_port, get_json, wait_for

LEASE = "modelroll-e2e"
# Short, in client-go's proportions (retry < renew deadline < lease), so a takeover takes seconds.
LEASE_SECONDS, RENEW_DEADLINE, RETRY = 3, 2, 0.5


# --- a Prometheus stand-in whose answers the test can hold back --------------------------------


class HeldPrometheus:
    """Answers every instant query with an empty vector ("no data": the gate is Inconclusive, the
    canary waits, and each measurement is recorded in status). ``hold()`` makes the next query
    wait until ``release()``; ``held`` is set once such a query arrived."""

    def __init__(self) -> None:
        self.queries = 0
        self.holding = False
        self.held = threading.Event()
        self.released = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.queries += 1
                if owner.holding:
                    owner.held.set()
                    owner.released.wait(120)
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        self.released.clear()
        self.held.clear()
        self.holding = True

    def release(self) -> None:
        self.holding = False
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[HeldPrometheus]:
    prom = HeldPrometheus()
    yield prom
    prom.close()


# --- a second identity: the operator's own elector, run by the test ----------------------------


class Rival:
    """A ``LeaderElector`` with identity ``rival`` on its own event loop and client."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.changes: list[bool] = []

        async def make() -> LeaderElector:
            client = AsyncClient(config=KubeConfig.from_file(kubeconfig))
            return LeaderElector(client, namespace, LEASE, self.changes.append, identity="rival",
                                 lease_seconds=LEASE_SECONDS, renew_deadline=RENEW_DEADLINE, retry=RETRY)  # fmt: skip

        self.elector = self.call(make())
        self.task: Any = None

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def seize(self) -> None:
        """Write the Lease to ``rival`` now (resourceVersion-guarded), as a candidate would that
        believes the Lease expired; then keep renewing it."""

        async def seize() -> None:
            client = self.elector.client
            lease = await client.get(Lease, LEASE, namespace=self.elector.namespace)
            stamp = _micro_now()
            lease.spec.holderIdentity = "rival"
            lease.spec.acquireTime = lease.spec.renewTime = stamp
            lease.spec.leaseTransitions = (lease.spec.leaseTransitions or 0) + 1
            await client.replace(lease)

        self.call(seize())
        self.compete()

    def compete(self) -> None:
        self.task = asyncio.run_coroutine_threadsafe(self.elector.run(), self.loop)

    def step_down(self) -> None:
        """Stop renewing and hand the Lease back (as the operator does at shutdown)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.call(self.elector.release())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.call(self.elector.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def rival(kubeconfig, namespace) -> Iterator[Rival]:
    r = Rival(kubeconfig, namespace)
    yield r
    r.close()


# --- what the operator wrote, as the API server shows it ----------------------------------------


def written(kubectl, namespace: str, name: str) -> dict[str, Any]:
    """Everything in the namespace that changes when (and only when) the operator writes."""
    md = get_json(kubectl, "mdep", name, "-n", namespace)
    services = get_json(kubectl, "services", "-n", namespace)["items"]
    deployments = get_json(kubectl, "deployments", "-n", namespace)["items"]
    events = get_json(kubectl, "events", "-n", namespace)["items"]
    return {
        # only the operator writes the ModelDeployment's status; the test wrote its spec before
        "modeldeployment": md["metadata"]["resourceVersion"],
        "services": {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in services},
        # the Deployment controller writes their status; the operator's entries are its own
        "deployments": {
            d["metadata"]["name"]: [m for m in d["metadata"].get("managedFields", []) if m["manager"] == "modelroll"]
            for d in deployments
        },
        "events": sorted(
            (e["metadata"]["name"], e.get("count"), e.get("lastTimestamp"))
            for e in events
            if (e.get("source") or {}).get("component") == "modelroll-operator"
        ),
    }


def canary_with_analysis(prometheus_url: str) -> dict[str, Any]:
    analysis = {
        "interval": "1s",
        "failureLimit": 1000,
        "consecutiveErrorLimit": 1000,
        "minSamples": 0,
        "prometheusUrl": prometheus_url,
        "gates": [{"name": "kpi", "prometheus": {"query": "vector(0)", "successCondition": "result < 1"}}],
    }
    return {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}], "analysis": analysis}}


def lease_holder(kubectl, namespace: str) -> str | None:
    return (get_json(kubectl, "lease", LEASE, "-n", namespace).get("spec") or {}).get("holderIdentity")


def start_leading_operator(run_operator, kubectl, namespace: str):
    port = free_port()
    proc = run_operator(
        env={
            "MODELROLL_NAMESPACES": namespace,
            "MODELROLL_METRICS_PORT": str(port),
            "MODELROLL_RESYNC_SECONDS": "1",
            "MODELROLL_LEADER_ELECTION": "true",
            "MODELROLL_LEADER_ELECTION_NAMESPACE": namespace,
            "MODELROLL_LEADER_ELECTION_LEASE": LEASE,
            "MODELROLL_LEADER_ELECTION_LEASE_SECONDS": str(LEASE_SECONDS),
            "MODELROLL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
            "MODELROLL_LEADER_ELECTION_RETRY_SECONDS": str(RETRY),
        }
    )
    proc.metrics_port = port
    wait_for(lambda: scrape(port).get("modelroll_operator_leader") == 1.0, 30, message=lambda: proc.log()[-3000:])
    assert lease_holder(kubectl, namespace) == f"{os.uname().nodename}_{proc.pid}"
    return proc


def into_analysis(kubectl, namespace: str, name: str, prometheus: HeldPrometheus, log: Callable[[], str]) -> None:
    """v1 Healthy, then v2 as a canary whose analysis measures every second (status writes)."""
    spec = {"strategy": canary_with_analysis(prometheus.url)}
    apply(kubectl, namespace, manifest(name, "v1", 2, **spec))
    wait_for(stable_version_is(kubectl, namespace, name, "v1"), 60, message=lambda: log()[-3000:])
    apply(kubectl, namespace, manifest(name, "v2", 2, **spec))

    def measuring() -> bool:  # status.analysis is the run: one more "inconclusive" per measurement
        return ((status_of(kubectl, namespace, name).get("analysis") or {}).get("inconclusive") or 0) >= 2

    wait_for(measuring, 60, message=lambda: f"{status_of(kubectl, namespace, name)}\n{log()[-3000:]}")


def hold_a_reconcile(prometheus: HeldPrometheus) -> None:
    prometheus.hold()
    assert prometheus.held.wait(15), "no analysis query arrived to hold"


def quiet_for(kubectl, namespace: str, name: str, before: dict[str, Any], seconds: float) -> None:
    """Nothing the operator writes changes for ``seconds`` (many Lease rounds and resyncs)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert written(kubectl, namespace, name) == before
        time.sleep(0.5)


def writes_again(kubectl, namespace: str, name: str, before: dict[str, Any], log: Callable[[], str]) -> None:
    wait_for(
        lambda: written(kubectl, namespace, name)["modeldeployment"] != before["modeldeployment"],
        30,
        message=lambda: "a status write once the operator leads again; log:\n" + log()[-3000:],
    )


# --- the tests ----------------------------------------------------------------------------------


def test_a_lease_taken_over_mid_reconcile_cancels_it_and_nothing_more_is_written(
    kubectl, install_crds, namespace, run_operator, prometheus, rival
):
    """The operator is alive and renewing; another identity writes the Lease (as a candidate that
    judged it expired would) while a reconcile waits on Prometheus. The operator sees the new
    holder at its next round, cancels that reconcile, and writes nothing; when the Lease is handed
    back it leads again and writes at once."""
    op = start_leading_operator(run_operator, kubectl, namespace)
    into_analysis(kubectl, namespace, "lm", prometheus, op.log)
    hold_a_reconcile(prometheus)
    before = written(kubectl, namespace, "lm")

    rival.seize()
    assert lease_holder(kubectl, namespace) == "rival"
    wait_for(lambda: "cancelled 1 reconcile(s) in flight" in op.log(), 10, message=lambda: op.log()[-3000:])
    assert scrape(op.metrics_port)["modelroll_operator_leader"] == 0.0
    prometheus.release()  # the cancelled reconcile would have recorded this measurement
    quiet_for(kubectl, namespace, "lm", before, seconds=6)
    assert lease_holder(kubectl, namespace) == "rival" and op.running()

    rival.step_down()
    writes_again(kubectl, namespace, "lm", before, op.log)
    assert lease_holder(kubectl, namespace) == f"{os.uname().nodename}_{op.pid}"


def test_a_leader_paused_past_its_lease_writes_nothing_when_it_resumes(
    kubectl, install_crds, namespace, run_operator, prometheus, rival
):
    """The leader is frozen (SIGSTOP: a long GC pause, a starved node) while a reconcile waits on
    Prometheus. The rival takes the Lease the lawful way — unchanged for a whole lease duration —
    the held answer arrives, and the leader resumes with that reconcile ready to write before its
    elector has run a single round: the write fence (the renew deadline passed on its own
    monotonic clock) or the deadline timer stops it. Nothing is written."""
    op = start_leading_operator(run_operator, kubectl, namespace)
    into_analysis(kubectl, namespace, "lp", prometheus, op.log)
    hold_a_reconcile(prometheus)
    before = written(kubectl, namespace, "lp")

    os.kill(op.pid, signal.SIGSTOP)
    try:
        rival.compete()
        wait_for(lambda: rival.elector.leading, LEASE_SECONDS * 4, message="the rival to take the expired Lease")
        prometheus.release()  # the answer waits in the paused process's socket
        time.sleep(0.5)
    finally:
        os.kill(op.pid, signal.SIGCONT)
    quiet_for(kubectl, namespace, "lp", before, seconds=6)
    log = op.log()
    # Which guard stopped it depends on what the resumed event loop runs first; either is enough.
    stopped_by = [line for line in log.splitlines() if any(s in line for s in ("refused", "in flight", "not renewed"))]
    assert stopped_by, log[-3000:]
    assert lease_holder(kubectl, namespace) == "rival" and op.running()

    rival.step_down()
    writes_again(kubectl, namespace, "lp", before, op.log)


def test_two_electors_race_for_an_expired_lease_the_api_server_picks_one_and_the_other_gets_409(kubeconfig, namespace):
    """Both read the expired Lease at the same resourceVersion before either writes; the API
    server accepts the first update and refuses the second with 409 Conflict; the loser stays
    standby while the winner renews."""

    async def scenario() -> None:
        client = AsyncClient(config=KubeConfig.from_file(kubeconfig))
        stamp = _micro_now()
        await client.create(
            Lease(
                metadata=ObjectMeta(name=LEASE, namespace=namespace),
                spec=LeaseSpec(holderIdentity="departed", leaseDurationSeconds=1, acquireTime=stamp, renewTime=stamp),
            )
        )
        conflicts: list[tuple[str, int]] = []
        read_together = asyncio.Barrier(2)

        class Racing:
            """The elector's client, making both candidates read before either writes."""

            def __init__(self, identity: str, inner: AsyncClient) -> None:
                self.identity, self.inner, self.racing = identity, inner, False

            async def get(self, *args: Any, **kwargs: Any) -> Any:
                lease = await self.inner.get(*args, **kwargs)
                if self.racing:
                    await read_together.wait()
                return lease

            async def replace(self, obj: Any) -> Any:
                try:
                    return await self.inner.replace(obj)
                except ApiError as error:
                    conflicts.append((self.identity, error.status.code))
                    raise

            async def create(self, obj: Any) -> Any:
                return await self.inner.create(obj)

        clients = {name: Racing(name, AsyncClient(config=KubeConfig.from_file(kubeconfig))) for name in "ab"}
        electors = {
            name: LeaderElector(clients[name], namespace, LEASE, lambda _l: None, identity=name,
                                lease_seconds=LEASE_SECONDS, renew_deadline=RENEW_DEADLINE, retry=RETRY)
            for name in "ab"
        }  # fmt: skip
        for e in electors.values():
            await e.try_once()  # both see "departed" and start its clock
        assert not any(e.leading for e in electors.values())
        await asyncio.sleep(1.2)  # unchanged for longer than its 1 s lease: expired for both
        for c in clients.values():
            c.racing = True
        await asyncio.gather(*(e.try_once() for e in electors.values()))
        for c in clients.values():
            c.racing = False

        winners = [name for name, e in electors.items() if e.leading]
        assert len(winners) == 1, (winners, conflicts)
        (winner,) = winners
        (loser,) = set(electors) - {winner}
        assert conflicts == [(loser, 409)]
        lease = await client.get(Lease, LEASE, namespace=namespace)
        assert lease.spec.holderIdentity == winner and lease.spec.leaseTransitions == 1
        for _ in range(4):  # the winner renews; the loser sees the record change and waits
            await asyncio.sleep(RETRY)
            await electors[winner].try_once()
            await electors[loser].try_once()
        assert electors[winner].leading and not electors[loser].leading
        assert electors[loser].write_budget() == 0
        for c in [client, *(r.inner for r in clients.values())]:
            await c.close()

    asyncio.run(scenario())
