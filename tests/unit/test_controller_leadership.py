"""The controller under leader election: losing the Lease cancels every reconcile in flight and
nothing it would still have written is sent; a fenced write is no failure of the object.

Also the Gateway API gate: an object that needs HTTPRoute is not planned while it is missing,
and says why in its status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from modelroll import conditions as c
from modelroll.cache import Cache
from modelroll.capabilities import GATEWAY_API_NOT_INSTALLED, needs_gateway_api, plan_waiting_for_gateway_api
from modelroll.children import Owner
from modelroll.controller import Controller
from modelroll.fence import NotLeader
from modelroll.planner import Subject
from modelroll.settings import load_settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def cache_with(*names: str, spec: dict | None = None) -> Cache:
    cache = Cache()
    for name in names:
        cache.put_parent(
            {
                "metadata": {"namespace": "ml", "name": name, "uid": f"uid-{name}", "resourceVersion": "1"},
                "spec": spec or {},
            }
        )
    return cache


def test_losing_leadership_cancels_the_reconcile_in_flight_before_it_writes():
    async def scenario():
        controller = Controller(load_settings({"MODELROLL_WORKERS": "2"}), kube=None, cache=cache_with("a"))
        hold, started = asyncio.Event(), asyncio.Event()
        writes: list[tuple[str, str]] = []
        runs: list[tuple[str, str]] = []

        async def reconcile(key):
            runs.append(key)
            started.set()
            await hold.wait()  # a slow step (a Prometheus query, a slow API call)
            writes.append(key)  # what it would write afterwards
            return True

        controller.reconcile = reconcile
        await controller.start()
        controller.enqueue(("ml", "a"))
        await asyncio.wait_for(started.wait(), 1)
        controller.lead(False)
        hold.set()
        await asyncio.sleep(0.05)
        assert writes == []  # cancelled where it waited; the rest never ran
        assert runs == [("ml", "a")]
        started.clear()
        controller.lead(True)  # leading again: the key cut short is reconciled afresh
        await asyncio.wait_for(started.wait(), 1)
        await asyncio.sleep(0.05)
        assert writes == [("ml", "a")] and runs == [("ml", "a")] * 2
        await controller.stop()

    asyncio.run(scenario())


def test_a_fenced_write_is_not_a_failure_and_starts_no_backoff():
    async def scenario():
        controller = Controller(load_settings({}), kube=None, cache=cache_with("a"))
        later: list[tuple[tuple[str, str], float]] = []
        controller.enqueue_after = lambda key, delay: later.append((key, delay))

        async def reconcile(_key):
            raise NotLeader("patch refused: this replica does not hold the leader Lease")

        controller.reconcile = reconcile
        await controller._reconcile_safely(("ml", "a"))
        assert later == [] and controller._failures == {}

    asyncio.run(scenario())


def test_stop_also_ends_the_reconciles_in_flight():
    async def scenario():
        controller = Controller(load_settings({}), kube=None, cache=cache_with("a"))
        started = asyncio.Event()

        async def reconcile(_key):
            started.set()
            await asyncio.Event().wait()

        controller.reconcile = reconcile
        await controller.start()
        controller.enqueue(("ml", "a"))
        await asyncio.wait_for(started.wait(), 1)
        await asyncio.wait_for(controller.stop(), 1)
        assert not controller._inflight or all(t.done() for t in controller._inflight)

    asyncio.run(scenario())


# --- the Gateway API gate -------------------------------------------------------------------

GATEWAY_SPEC = {
    "model": {"uri": "https://models.example/m.joblib", "digest": "sha256:" + "1" * 64},
    "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}]}},
    "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "public"}]}},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (GATEWAY_SPEC, True),
        ({"trafficRouting": {"shadow": {"percent": 10}}}, False),
        ({"trafficRouting": None}, False),
        ({}, False),
    ],
)
def test_needs_gateway_api(spec, expected):
    assert needs_gateway_api(spec) is expected


def subject(status: dict | None = None) -> Subject:
    return Subject(owner=Owner("m", "ml", "uid-m"), generation=3, spec=GATEWAY_SPEC, status=status or {})


def test_waiting_for_the_gateway_api_says_why_and_changes_nothing_else():
    result = plan_waiting_for_gateway_api(subject(), NOW, 10)
    assert result.apply == () and result.delete == () and result.scale == ()
    status = result.status
    assert status["phase"] == c.PENDING and status["reason"] == GATEWAY_API_NOT_INSTALLED
    assert status["message"].startswith("waiting: Gateway API not installed")
    assert "within 10 s" in status["message"] and status["observedGeneration"] == 3
    ready = next(cond for cond in status["conditions"] if cond["type"] == c.READY)
    assert (ready["status"], ready["reason"]) == ("False", GATEWAY_API_NOT_INSTALLED)
    assert [(e.type, e.reason) for e in result.events] == [("Warning", GATEWAY_API_NOT_INSTALLED)]
    # Planned again while still missing: no write at all (no status change, no second Event).
    again = plan_waiting_for_gateway_api(subject(status), NOW, 10)
    assert again.status is None and again.events == () and again.writes == 0


def test_an_object_that_served_and_lost_its_gateway_api_is_degraded_and_keeps_its_other_conditions():
    verified = {"type": c.MODEL_VERIFIED, "status": "True", "reason": c.DIGEST_VERIFIED, "message": "ok",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}  # fmt: skip
    before = {"phase": c.HEALTHY, "stable": {"revision": "abc"}, "conditions": [verified]}
    status = plan_waiting_for_gateway_api(subject(before), NOW, 10).status
    assert status["phase"] == c.DEGRADED and status["stable"] == {"revision": "abc"}
    assert verified in status["conditions"]
    degraded = next(cond for cond in status["conditions"] if cond["type"] == c.DEGRADED_COND)
    assert degraded["status"] == "True"


class RecordingKube:
    def __init__(self) -> None:
        self.statuses: list[dict] = []
        self.events: list[str] = []
        self.applied: list[dict] = []

    async def patch_status(self, owner, status, previous):
        self.statuses.append(dict(status))
        return {"metadata": {"namespace": owner.namespace, "name": owner.name, "resourceVersion": "2"},
                "spec": GATEWAY_SPEC, "status": dict(status)}  # fmt: skip

    async def emit_event(self, owner, event, now):
        self.events.append(event.reason)

    async def apply(self, obj):
        self.applied.append(obj)
        return obj


@pytest.mark.parametrize("served", [None, False, True])
def test_the_controller_plans_a_gateway_object_only_while_httproute_is_served(served, monkeypatch):
    planned: list[str] = []

    def fake_plan(subject, *_args, **_kwargs):
        planned.append(subject.owner.name)
        from modelroll.planner import Plan

        return Plan()

    monkeypatch.setattr("modelroll.controller.plan", fake_plan)
    kube = RecordingKube()
    controller = Controller(load_settings({}), kube=kube, cache=cache_with("m", spec=GATEWAY_SPEC))
    controller.gateway_api = lambda: served
    asyncio.run(controller.reconcile(("ml", "m")))
    if served is None:  # not known yet (discovery has not answered): nothing at all
        assert (planned, kube.statuses, kube.events) == ([], [], [])
    elif served is False:
        assert planned == [] and kube.applied == []
        assert [s["reason"] for s in kube.statuses] == [GATEWAY_API_NOT_INSTALLED]
        assert kube.events == [GATEWAY_API_NOT_INSTALLED]
    else:
        assert planned == ["m"] and kube.statuses == []


def test_discovery_queues_only_the_objects_that_need_the_gateway_api():
    async def scenario():
        cache = cache_with("plain")
        cache.put_parent({"metadata": {"namespace": "ml", "name": "gw", "uid": "u", "resourceVersion": "1"},
                          "spec": GATEWAY_SPEC})  # fmt: skip
        controller = Controller(load_settings({}), kube=None, cache=cache)
        controller.enqueue_needing_gateway_api()
        return sorted(controller._queued)

    assert asyncio.run(scenario()) == [("ml", "gw")]
