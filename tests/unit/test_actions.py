"""Manual actions are settled in every reconcile: acted on, deferred within the same rollout,
or acknowledged with an Event saying why there was nothing to do. None reaches a later rollout."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta

import pytest
from modelroll.actions import ONE_SHOT, read_requests
from modelroll.cli.render import status_view

from tests.unit.sim import Cluster

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGESTS = {v: "sha256:" + str(i) * 64 for i, v in enumerate(["v1", "v2", "v3"], start=1)}
STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "60s"}}]
CANARY = {"type": "Canary", "canary": {"steps": STEPS}}
BLUE_GREEN = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 30}}
ROLLING = {"type": "Rolling"}


def spec(version, strategy=CANARY):
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": DIGESTS[version], "version": version},
        "replicas": 4,
        "strategy": strategy,
    }


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def healthy(strategy=CANARY):
    cluster = Cluster(spec("v1", strategy))
    cluster.settle(T0)
    assert cluster.status["phase"] == "Healthy"
    return cluster


def ask(cluster, action, token, now):
    cluster.annotations[f"modelroll.io/{action}"] = token
    return cluster.reconcile(now)


def said(result):
    return [(e.reason, e.message) for e in result.events]


def test_abort_while_healthy_is_acknowledged_and_the_next_rollout_runs_to_promotion():
    cluster = healthy()
    result = ask(cluster, "abort", "a1", at(1))
    assert ("NothingToDo", "nothing to abort: no rollout in progress") in said(result)
    assert cluster.status["acknowledged"] == {"abort": "a1"}
    assert cluster.settle(at(2)).writes == 0  # settled once, never again

    cluster.set_spec(spec("v2"))
    cluster.settle(at(3))
    s = cluster.status
    assert (s["phase"], s["currentStep"]) == ("Paused", 1) and "aborted" not in s  # the old abort is gone
    ask(cluster, "promote", "p1", at(4))
    cluster.settle(at(4))
    assert cluster.status["currentStep"] == 3
    cluster.settle(at(70))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2" and "Aborted" not in cluster.events()


def test_promote_while_healthy_does_not_skip_a_pause_of_the_next_rollout():
    cluster = healthy()
    result = ask(cluster, "promote", "p1", at(1))
    assert ("NothingToDo", "nothing to promote: no rollout in progress") in said(result)
    cluster.set_spec(spec("v2"))
    cluster.settle(at(2))
    assert (cluster.status["phase"], cluster.status["currentStep"]) == ("Paused", 1)


def test_retry_and_undo_while_healthy_are_acknowledged_too():
    cluster = healthy()
    result = ask(cluster, "retry", "r1", at(1))
    assert ("NothingToDo", "nothing to retry: no rollout in progress") in said(result)
    result = ask(cluster, "undo", "u1", at(2))  # no earlier revision: refused, but settled
    assert [e.reason for e in result.events] == ["UndoFailed"]
    assert cluster.status["acknowledged"] == {"retry": "r1", "undo": "u1"}


def test_promote_at_a_weight_step_ends_that_step():
    """A promote is not kept for a later pause: it ends the step in progress (here a weight
    whose Pods are not Ready yet), so the rollout moves on to the next step at once."""
    cluster = healthy()
    cluster.set_spec(spec("v2"))
    cluster.reconcile(at(1))
    cluster.unready.add(cluster.revision("canary"))
    cluster.settle(at(2))
    assert cluster.status["currentStep"] == 0
    result = ask(cluster, "promote", "p1", at(3))
    assert "Promoted" in [e.reason for e in result.events]
    assert cluster.status["currentStep"] == 1 and cluster.status["acknowledged"]["promote"] == "p1"


def test_actions_on_an_aborted_rollout_say_why_and_do_not_survive_the_retry():
    cluster = healthy()
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    ask(cluster, "abort", "a1", at(2))
    assert cluster.status["reason"] == "Aborted"
    result = ask(cluster, "abort", "a2", at(3))
    assert ("NothingToDo", "nothing to abort: the rollout of v2 is already aborted") in said(result)
    result = ask(cluster, "promote", "p1", at(4))
    assert (
        "NothingToDo",
        "nothing to promote: the rollout of v2 is aborted (`kubectl modelroll retry fraud` restarts it)",
    ) in said(result)
    ask(cluster, "retry", "r1", at(5))
    cluster.settle(at(5))
    assert (cluster.status["phase"], cluster.status["currentStep"]) == ("Paused", 1)  # the promote is gone


def test_abort_during_a_rolling_update_points_to_undo():
    cluster = healthy(ROLLING)
    cluster.set_spec(spec("v2", ROLLING))
    cluster.reconcile(at(1))
    cluster.unready.add(cluster.revision("stable"))
    cluster.settle(at(2))
    assert cluster.status["phase"] == "Progressing"
    result = ask(cluster, "abort", "a1", at(3))
    (message,) = [m for r, m in said(result) if r == "NothingToDo"]
    assert message.startswith("nothing to abort: a rolling update") and "kubectl modelroll undo fraud" in message


def test_blue_green_promote_waits_for_the_preview_bound_to_its_revision():
    cluster = healthy(BLUE_GREEN)
    cluster.set_spec(spec("v2", BLUE_GREEN))
    cluster.reconcile(at(1))
    v2 = cluster.revision("canary")
    cluster.unready.add(v2)
    cluster.settle(at(2))
    result = ask(cluster, "promote", "p1", at(3))
    assert not [e for e in result.events if e.reason in ("NothingToDo", "Switched")]
    assert cluster.status["deferred"] == {"promote": {"token": "p1", "revision": v2}}
    assert "promote" not in cluster.status.get("acknowledged", {})
    shown = status_view({"metadata": {"name": "fraud", "namespace": "ml"}, "spec": {}, "status": cluster.status})
    assert f"Deferred:  promote (waits for revision {v2})" in shown.splitlines()

    cluster.unready.discard(v2)  # the preview comes up: the deferred promote switches
    result = cluster.settle(at(4))
    assert cluster.status["blueGreen"]["stage"] == "Switched" and "deferred" not in cluster.status
    assert cluster.status["acknowledged"]["promote"] == "p1"


def test_a_deferred_promote_is_dropped_when_the_rollout_changes():
    cluster = healthy(BLUE_GREEN)
    cluster.set_spec(spec("v2", BLUE_GREEN))
    cluster.reconcile(at(1))
    v2 = cluster.revision("canary")
    cluster.unready.add(v2)
    cluster.settle(at(2))
    ask(cluster, "promote", "p1", at(3))
    assert cluster.status["deferred"]["promote"]["revision"] == v2

    cluster.set_spec(spec("v3", BLUE_GREEN))  # a new rollout: the promote was for v2's preview
    result = cluster.reconcile(at(4))
    assert "ActionDropped" in [e.reason for e in result.events]
    assert cluster.status["acknowledged"]["promote"] == "p1" and "deferred" not in cluster.status
    cluster.settle(at(5))
    s = cluster.status
    assert (s["phase"], s["blueGreen"]["stage"], s["canary"]["version"]) == ("Paused", "Preview", "v3")


def test_a_spec_that_cannot_be_parsed_still_settles_the_actions():
    cluster = healthy()
    cluster.set_spec({**spec("v1"), "replicas": -1})
    result = ask(cluster, "abort", "a1", at(1))
    assert ("NothingToDo", "nothing to abort: the spec is invalid") in said(result)


def states():
    """(name, cluster) at every kind of moment a person may act."""
    c = healthy()
    yield "healthy", c
    c = healthy()
    c.set_spec(spec("v2"))
    c.settle(at(1))
    yield "canary paused", c
    c = healthy()
    c.set_spec(spec("v2"))
    c.reconcile(at(1))
    c.unready.add(c.revision("canary"))
    c.settle(at(2))
    yield "canary coming up", c
    c = healthy()
    c.set_spec(spec("v2"))
    c.settle(at(1))
    ask(c, "abort", "a0", at(2))
    yield "canary aborted", c
    c = healthy(BLUE_GREEN)
    c.set_spec(spec("v2", BLUE_GREEN))
    c.settle(at(1))
    yield "preview", c
    ask(c, "promote", "p0", at(2))
    c.settle(at(2))
    yield "switched", c
    c = healthy(ROLLING)
    c.set_spec(spec("v2", ROLLING))
    c.reconcile(at(1))
    yield "rolling", c


@pytest.mark.parametrize("action", ONE_SHOT)
def test_every_action_is_settled_in_the_reconcile_that_sees_it(action):
    for name, cluster in states():
        token = f"{action}-{name}"
        result = ask(cluster, action, token, at(10))
        s = cluster.status
        settled = s.get("acknowledged", {}).get(action) == token or s.get("deferred", {}).get(action, {}).get("token")
        assert settled, (name, action, s.get("message"))
        if s.get("acknowledged", {}).get(action) == token and not result.events:
            pytest.fail(f"{action} in state {name!r} was acknowledged without an Event")


def test_requests_are_immutable():
    requests = read_requests({"modelroll.io/promote": "p1"}, {})
    with pytest.raises(TypeError):
        requests.pending["abort"] = "a1"  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        requests.paused = True  # type: ignore[misc]
    assert requests.without(["promote"]).pending == {} and requests.pending == {"promote": "p1"}
