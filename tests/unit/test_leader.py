"""Leader election: the pure decision table, and the elector's rounds against a fake Lease API."""

from __future__ import annotations

import asyncio
import copy

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.coordination_v1 import Lease
from modelroll.leader import ACQUIRE, CREATE, RENEW, STANDBY, LeaderElector, Record, decide, write_budget
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


@pytest.mark.parametrize(
    ("leading", "renewed_at", "now", "expected"),
    [
        (True, 100.0, 100.0, 10.0),  # just renewed: the whole renew deadline
        (True, 100.0, 107.5, 2.5),
        (True, 100.0, 110.0, 0.0),  # the deadline itself: no more writes
        (True, 100.0, 160.0, 0.0),  # long past it (a paused process): none, never negative
        (False, 100.0, 100.0, 0.0),  # not leading: none, however fresh the renewal
    ],
)
def test_write_budget(leading, renewed_at, now, expected):
    assert write_budget(leading, renewed_at, 10.0, now) == expected


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


def test_write_budget_counts_from_the_start_of_the_last_successful_round():
    api, clock, changes = FakeLeases(), Clock(), []
    a = elector(api, clock, "a", changes)

    async def scenario():
        assert a.write_budget() == 0  # not yet leading
        await a.try_once()
        assert a.write_budget() == 10
        clock.now += 4
        assert a.write_budget() == 6
        api.down = True
        clock.now += 2
        await a.try_once()  # a failed round does not extend it
        assert a.leading and a.write_budget() == 4
        api.down = False
        await a.try_once()
        assert a.write_budget() == 10

    asyncio.run(scenario())


def test_a_leader_whose_renewal_conflicts_stops_at_once():
    """409 on its own renewal: someone else wrote the Lease since it was read; the leader cannot
    show it still holds it and stops writing now, not at the renew deadline."""
    api, clock, changes = FakeLeases(), Clock(), []
    a = elector(api, clock, "a", changes)
    real_get = api.get

    async def get_then_someone_writes(*args, **kwargs):
        lease = await real_get(*args, **kwargs)
        api.version += 1  # another writer lands between our read and our write
        api.lease.metadata.resourceVersion = str(api.version)
        return lease

    async def scenario():
        await a.try_once()
        api.get = get_then_someone_writes
        clock.now += 2
        await a.try_once()
        assert not a.leading and a.write_budget() == 0

    asyncio.run(scenario())
    assert changes == [True, False]


def test_a_leader_stops_at_the_renew_deadline_even_while_its_renewal_hangs():
    """The API server accepts the connection and never answers: the round never returns, yet
    leadership ends at the renew deadline (a timer, not the next round, decides)."""
    api, changes = FakeLeases(), []
    a = LeaderElector(api, "modelroll", "modelroll", changes.append, identity="a", lease_seconds=0.6,
                      renew_deadline=0.3, retry=0.05)  # fmt: skip

    async def hang(*_args, **_kwargs):
        await asyncio.Event().wait()

    async def scenario():
        await a.try_once()
        assert a.leading
        api.get = hang
        started = asyncio.get_running_loop().time()
        election = asyncio.create_task(a.run())
        while a.leading:
            await asyncio.sleep(0.01)
        took = asyncio.get_running_loop().time() - started
        election.cancel()
        return took

    took = asyncio.run(scenario())
    assert 0.2 < took < 0.45
    assert changes == [True, False]


def test_two_candidates_race_for_an_expired_lease_one_wins_the_other_gets_409_and_stands_by():
    api, clock = FakeLeases(), Clock()
    changes: dict[str, list[bool]] = {"a": [], "b": [], "dead": []}
    dead, a, b = (elector(api, clock, name, changes[name]) for name in ("dead", "a", "b"))
    errors: list[int] = []

    class Racing:
        """Both candidates read before either writes (the interleaving that needs the 409)."""

        def __init__(self) -> None:
            self.read = asyncio.Barrier(2)

        async def get(self, *args, **kwargs):
            lease = await api.get(*args, **kwargs)
            await self.read.wait()
            return lease

        async def replace(self, lease):
            try:
                return await api.replace(lease)
            except ApiError as error:
                errors.append(error.status.code)
                raise

    async def scenario():
        await dead.try_once()  # the holder, which then dies
        await a.try_once()
        await b.try_once()
        clock.now += 15  # unchanged for a whole lease duration: expired for both
        racing = Racing()
        a.client = b.client = racing
        await asyncio.gather(a.try_once(), b.try_once())
        assert [a.leading, b.leading].count(True) == 1 and errors == [409]
        winner, loser = (a, b) if a.leading else (b, a)
        assert api.lease.spec.holderIdentity == winner.identity
        a.client = b.client = api
        for _ in range(3):  # the winner renews; the loser sees it renewing and stays standby
            clock.now += 2
            await winner.try_once()
            await loser.try_once()
        assert winner.leading and not loser.leading and loser.write_budget() == 0

    asyncio.run(scenario())


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
