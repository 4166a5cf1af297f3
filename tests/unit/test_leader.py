"""Leader election: the pure decision table, and the elector's rounds against a fake Lease API."""

from __future__ import annotations

import asyncio
import copy

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.coordination_v1 import Lease
from modelroll.leader import ACQUIRE, CREATE, RENEW, STANDBY, LeaderElector, Record, decide
from modelroll.settings import SettingsError, load_settings

ME = "pod-a_10"


@pytest.mark.parametrize(
    ("record", "now", "seen_at", "expected"),
    [
        (None, 100.0, 100.0, CREATE),  # no Lease yet
        (Record(ME, 15), 100.0, 0.0, RENEW),  # ours, however old
        (Record("pod-b_7", 15), 100.0, 90.0, STANDBY),  # someone else's, seen changing 10 s ago
        (Record("pod-b_7", 15), 105.0, 90.0, ACQUIRE),  # unchanged for a whole lease duration
        (Record("pod-b_7", 15), 104.9, 90.0, STANDBY),  # ... and not a moment earlier
        (Record("", 1), 100.0, 100.0, ACQUIRE),  # released by its holder
        (Record("pod-b_7", 60), 100.0, 50.0, STANDBY),  # the holder's own duration counts
    ],
)
def test_decide(record, now, seen_at, expected):
    assert decide(record, ME, now, seen_at) == expected


def _conflict() -> ApiError:
    err = ApiError.__new__(ApiError)
    err.status = Status(code=409, message="conflict")
    return err


def _not_found() -> ApiError:
    err = ApiError.__new__(ApiError)
    err.status = Status(code=404, message="not found")
    return err


class FakeLeases:
    """One Lease with resourceVersion checks, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: Lease | None = None
        self.version = 0
        self.down = False

    async def get(self, _kind, name, namespace):
        if self.down:
            raise ConnectionError("API server unreachable")
        if self.lease is None:
            raise _not_found()
        return copy.deepcopy(self.lease)

    async def create(self, lease):
        if self.lease is not None:
            raise _conflict()
        self.version += 1
        lease.metadata.resourceVersion = str(self.version)
        self.lease = copy.deepcopy(lease)

    async def replace(self, lease):
        if self.down:
            raise ConnectionError("API server unreachable")
        if lease.metadata.resourceVersion != self.lease.metadata.resourceVersion:
            raise _conflict()
        self.version += 1
        lease.metadata.resourceVersion = str(self.version)
        self.lease = copy.deepcopy(lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api, clock, identity, changes):
    return LeaderElector(
        api, "modelroll", "modelroll", changes.append, identity=identity, lease_seconds=15, renew_deadline=10,
        retry=2, clock=clock,
    )  # fmt: skip


def test_one_leader_then_takeover_after_the_lease_expires():
    api, clock, a_changes, b_changes = FakeLeases(), Clock(), [], []
    a, b = elector(api, clock, "a", a_changes), elector(api, clock, "b", b_changes)

    async def scenario():
        await a.try_once()
        await b.try_once()
        assert (a.leading, b.leading) == (True, False) and api.lease.spec.holderIdentity == "a"
        for _ in range(10):  # a renews; b sees the record change and keeps waiting
            clock.now += 2
            await a.try_once()
            await b.try_once()
        assert (a.leading, b.leading) == (True, False)
        # a dies: b takes over only after seeing the same record for a whole lease duration
        clock.now += 14
        await b.try_once()
        assert not b.leading
        clock.now += 2
        await b.try_once()
        assert b.leading and api.lease.spec.holderIdentity == "b" and api.lease.spec.leaseTransitions == 1

    asyncio.run(scenario())
    assert a_changes == [True] and b_changes == [True]


def test_released_lease_is_taken_at_once_and_a_race_has_one_winner():
    api, clock, changes = FakeLeases(), Clock(), []
    a, b, c = (elector(api, clock, name, changes) for name in "abc")

    async def scenario():
        await a.try_once()
        await a.release()
        assert not a.leading and api.lease.spec.holderIdentity is None
        # b and c both read the released Lease; only the first write wins (resourceVersion)
        lease_b = await api.get(Lease, "modelroll", "modelroll")
        await b.try_once()
        lease_b.spec.holderIdentity = "c"
        with pytest.raises(ApiError):
            await api.replace(lease_b)
        await c.try_once()
        assert b.leading and not c.leading

    asyncio.run(scenario())


def test_leader_stops_acting_when_it_cannot_renew_within_the_deadline():
    api, clock, changes = FakeLeases(), Clock(), []
    a = elector(api, clock, "a", changes)

    async def scenario():
        await a.try_once()
        api.down = True
        for _ in range(4):
            clock.now += 2
            await a.try_once()
        assert a.leading  # 8 s without renewal: still inside the 10 s deadline
        clock.now += 2
        await a.try_once()
        assert not a.leading  # and it stopped before anyone else could take the 15 s Lease

    asyncio.run(scenario())
    assert changes == [True, False]


def test_leader_that_sees_another_holder_stands_by():
    api, clock, changes = FakeLeases(), Clock(), []
    a = elector(api, clock, "a", changes)

    async def scenario():
        await a.try_once()
        api.lease.spec.holderIdentity = "intruder"
        await a.try_once()
        assert not a.leading

    asyncio.run(scenario())


def test_settings_for_leader_election():
    s = load_settings({})
    assert not s.leader_election and s.leader_election_lease == "modelroll-operator"
    s = load_settings(
        {"MODELROLL_LEADER_ELECTION": "true", "MODELROLL_LEADER_ELECTION_NAMESPACE": "ops",
         "MODELROLL_LEADER_ELECTION_LEASE": "mr", "MODELROLL_LEADER_ELECTION_LEASE_SECONDS": "20"}
    )  # fmt: skip
    assert (s.leader_election, s.leader_election_namespace, s.leader_election_lease, s.lease_seconds) == (
        True, "ops", "mr", 20.0,
    )  # fmt: skip
    with pytest.raises(SettingsError, match="MODELROLL_LEADER_ELECTION_RETRY_SECONDS"):
        load_settings({"MODELROLL_LEADER_ELECTION_RETRY_SECONDS": "12"})
    with pytest.raises(SettingsError, match="MODELROLL_LEADER_ELECTION="):
        load_settings({"MODELROLL_LEADER_ELECTION": "sometimes"})


def test_controller_workers_take_keys_only_while_leading():
    from modelroll.cache import Cache
    from modelroll.controller import Controller

    async def scenario():
        cache = Cache()
        for name in ("a", "b"):
            cache.put_parent({"metadata": {"namespace": "ml", "name": name, "resourceVersion": "1"}})
        controller = Controller(load_settings({"MODELROLL_WORKERS": "2"}), kube=None, cache=cache)
        done: list[tuple[str, str]] = []

        async def reconcile(key):
            done.append(key)
            return False

        controller.reconcile = reconcile
        controller.lead(False)
        await controller.start()
        controller.enqueue(("ml", "a"))
        await asyncio.sleep(0.05)
        assert done == []  # standing by: the key waits in the queue
        controller.lead(True)  # a new leader re-plans everything it has cached
        await asyncio.sleep(0.05)
        assert sorted(done) == [("ml", "a"), ("ml", "b")]
        controller.lead(False)
        controller.enqueue(("ml", "b"))
        await asyncio.sleep(0.05)
        assert len(done) == 2
        await controller.stop()

    asyncio.run(scenario())
