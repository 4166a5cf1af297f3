"""Replica-ratio canaries past 50 %: the stable track shrinks as the canary grows, never
leaving fewer than ``replicas`` ready Pods, and grows back first on abort, undo or a new spec.

Driven through the planner on a simulated cluster where Pods take a reconcile to come up.
"""

from datetime import UTC, datetime, timedelta

import pytest
from modelroll.traffic.replicas import split_replicas

from tests.unit.sim import LaggyCluster

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
N = 10
DIGESTS = {v: "sha256:" + str(i) * 64 for i, v in enumerate(["v1", "v2", "v3"], start=1)}
STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 90}, {"pause": {}}]


def spec(version, steps=STEPS):
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": DIGESTS[version], "version": version},
        "replicas": N,
        "strategy": {"type": "Canary", "canary": {"steps": steps}},
    }


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def promote(cluster, token, now):
    cluster.annotations["modelroll.io/promote"] = token
    return cluster.run(now)


def healthy(version="v1"):
    cluster = LaggyCluster(spec(version))
    cluster.run(T0)
    cluster.ready_seen.clear()  # from here on, never fewer than N ready Pods
    return cluster


def at_ninety(version="v2", history=("v1",)):
    """Healthy at ``history`` (the last one stable), then ``version`` walked to setWeight 90."""
    cluster = healthy(history[0])
    for i, older in enumerate(history[1:], start=1):
        cluster.set_spec(spec(older))
        cluster.annotations["modelroll.io/promote-full"] = f"f{i}"
        cluster.run(at(i))
    cluster.set_spec(spec(version))
    cluster.run(at(10))
    promote(cluster, "p1", at(11))
    return cluster


@pytest.mark.parametrize("replicas", range(1, 21))
def test_the_split_reaches_every_weight_and_keeps_capacity(replicas):
    previous = (replicas, 0)
    for weight in range(0, 101):
        stable, canary = split_replicas(weight, replicas)
        assert replicas <= stable + canary <= replicas + 1
        assert stable <= previous[0] and canary >= previous[1]  # stable only shrinks, canary only grows
        if 0 < weight < 100:
            assert stable >= 1 and canary >= 1
            # as close to the weight as whole Pods allow
            assert abs(100 * canary / (stable + canary) - weight) <= 100 / replicas
        previous = stable, canary


def test_set_weight_90_gives_nine_of_ten_ready_pods_to_the_canary_and_never_fewer_than_ten():
    cluster = healthy()
    cluster.set_spec(spec("v2"))
    cluster.run(at(1))
    s = cluster.status
    assert (s["currentStep"], s["phase"]) == (1, "Paused")
    assert (cluster.ready("stable"), cluster.ready("canary")) == (9, 1) and s["weights"] == {"stable": 90, "canary": 10}

    promote(cluster, "p1", at(2))
    s = cluster.status
    assert (s["currentStep"], s["phase"]) == (3, "Paused")
    assert (cluster.ready("stable"), cluster.ready("canary")) == (1, 9)
    assert s["weights"] == {"stable": 10, "canary": 90}
    assert min(cluster.ready_seen) >= N, cluster.ready_seen

    promote(cluster, "p2", at(3))  # stable rolls to v2 while the canary serves, then the canary goes
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2" and "fraud-canary" not in cluster.deps
    assert cluster.ready("stable") == N
    assert min(cluster.ready_seen) >= N, cluster.ready_seen


def test_stable_shrinks_only_as_canary_pods_become_ready():
    cluster = healthy()
    cluster.set_spec(spec("v2", [{"setWeight": 90}, {"pause": {}}]))
    first = cluster.reconcile(at(1))  # canary asked for 9; none Ready yet: stable stays at 10
    assert cluster.replicas("canary") == 9 and cluster.replicas("stable") == N and not first.scale
    cluster.reconcile(at(2))  # the canary Pods are starting
    assert cluster.replicas("stable") == N and cluster.ready("canary") == 9
    cluster.reconcile(at(3))  # and were seen Ready: now stable may go to 1
    assert cluster.replicas("stable") == 1
    assert cluster.status["currentStep"] == 0  # the step ends once stable is really down
    cluster.run(at(3))
    assert cluster.status["currentStep"] == 1 and cluster.status["weights"] == {"stable": 10, "canary": 90}
    assert min(cluster.ready_seen) >= N


def test_abort_at_ninety_restores_stable_before_the_canary_goes():
    cluster = at_ninety()
    cluster.ready_seen.clear()
    cluster.annotations["modelroll.io/abort"] = "a1"
    cluster.reconcile(at(20))
    s = cluster.status
    assert s["reason"] == "Aborted" and "scaling back to 10 Pods" in s["message"]
    assert cluster.replicas("stable") == N and cluster.replicas("canary") == 9  # the canary still serves
    cluster.run(at(21))
    s = cluster.status
    assert "v1 serving at full weight" in s["message"] and s["weights"] == {"stable": 100, "canary": 0}
    assert (cluster.ready("stable"), cluster.ready("canary")) == (N, 0)
    assert min(cluster.ready_seen) >= N, cluster.ready_seen


def test_undo_at_ninety_brings_stable_back_before_the_canary_goes():
    cluster = at_ninety("v3", history=("v1", "v2"))
    assert (cluster.ready("stable"), cluster.ready("canary")) == (1, 9)
    cluster.ready_seen.clear()
    cluster.annotations["modelroll.io/undo"] = "u1"
    cluster.reconcile(at(20))
    assert cluster.status["pinned"]["version"] == "v1" and cluster.replicas("canary") == 9
    cluster.run(at(21))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v1" and cluster.ready("canary") == 0
    assert min(cluster.ready_seen) >= N, cluster.ready_seen


@pytest.mark.parametrize("version", ["v3", "v1"])  # a newer model, or back to the stable one
def test_a_new_spec_at_ninety_brings_stable_back_before_the_canary_is_replaced(version):
    cluster = at_ninety()
    cluster.ready_seen.clear()
    cluster.set_spec(spec(version))
    cluster.run(at(20))
    assert min(cluster.ready_seen) >= N, cluster.ready_seen
    s = cluster.status
    if version == "v1":
        assert s["phase"] == "Healthy" and cluster.ready("canary") == 0 and cluster.ready("stable") == N
    else:
        assert (s["currentStep"], s["canary"]["version"]) == (1, "v3")
        assert (cluster.ready("stable"), cluster.ready("canary")) == (9, 1)
