"""Canary, blue-green, Gateway API routing, abort, deadline, undo and crash safety, with the
operator running against a real API server and kwok playing the Pods."""

from __future__ import annotations

import pytest

from tests.e2e.operator_helpers import (
    STEPS,
    apply,
    events_of,
    manifest,
    phase_is,
    plugin,
    ready_endpoints_by_track,
    stable_version_is,
    status_of,
    weights_are,
)
from tests.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e
CANARY = {"type": "Canary", "canary": {"steps": STEPS}}


def describe(kubectl, namespace, name, operator=None):
    def text():
        log = operator.log()[-2500:] if operator else ""
        return f"status {status_of(kubectl, namespace, name)}\n{log}"

    return text


def start_v2(kubectl, namespace, name, strategy=CANARY, replicas=4, **extra):
    apply(kubectl, namespace, manifest(name, "v1", replicas, strategy=strategy, **extra))
    wait_for(stable_version_is(kubectl, namespace, name, "v1"), timeout=60, message=describe(kubectl, namespace, name))
    apply(kubectl, namespace, manifest(name, "v2", replicas, strategy=strategy, **extra))


def test_canary_through_timed_and_manual_pauses_with_promote(kubectl, kubeconfig, namespace, operator):
    start_v2(kubectl, namespace, "fraud")
    # step 1 (setWeight 20): 1 canary Pod next to 4 stable ones -> 20 % of the ready endpoints
    status = wait_for(
        phase_is(kubectl, namespace, "fraud", "Progressing", currentStep=1),
        timeout=60,
        message=describe(kubectl, namespace, "fraud", operator),
    )
    assert status["stable"]["version"] == "v1" and status["canary"]["version"] == "v2"
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "fraud") == {"stable": 4, "canary": 1},
        timeout=60,
        message=lambda: f"endpoints 4+1: {ready_endpoints_by_track(kubectl, namespace, 'fraud')}",
    )
    wait_for(weights_are(kubectl, namespace, "fraud", 80, 20), timeout=60, message="weights 80/20")

    # the 4 s pause passes by itself; setWeight 50 brings 2 canary Pods and, once they are Ready,
    # the stable track down to its 2; then the manual pause
    status = wait_for(
        phase_is(kubectl, namespace, "fraud", "Paused", currentStep=3),
        timeout=90,
        message=describe(kubectl, namespace, "fraud", operator),
    )
    wait_for(weights_are(kubectl, namespace, "fraud", 50, 50), timeout=60, message="weights 50/50")
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "fraud") == {"stable": 2, "canary": 2},
        timeout=60,
        message=lambda: f"endpoints 2+2: {ready_endpoints_by_track(kubectl, namespace, 'fraud')}",
    )
    shown = plugin(kubeconfig, "status", "fraud", "-n", namespace).stdout
    assert "Paused" in shown and "Step:      4/4" in shown and "v2" in shown

    plugin(kubeconfig, "promote", "fraud", "-n", namespace)
    status = wait_for(
        stable_version_is(kubectl, namespace, "fraud", "v2"),
        timeout=60,
        message=describe(kubectl, namespace, "fraud", operator),
    )
    assert "canary" not in status
    wait_for(weights_are(kubectl, namespace, "fraud", 100, 0), timeout=60, message="weights back to 100/0")
    assert [h["version"] for h in status["history"]] == ["v2", "v1"]
    wait_for(
        lambda: not get_json(kubectl, "deployments", "-n", namespace, "-l", "modelroll.io/track=canary")["items"],
        timeout=60,
        message="canary track gone",
    )
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "fraud") == {"stable": 4},
        timeout=60,
        message=lambda: f"only stable endpoints: {ready_endpoints_by_track(kubectl, namespace, 'fraud')}",
    )
    reasons = [e["reason"] for e in events_of(kubectl, namespace, "fraud")]
    assert reasons.count("RolloutStarted") == 1 and "Promoted" in reasons


GATEWAY = {
    "gatewayAPI": {"parentRefs": [{"name": "public", "namespace": "gateways"}], "hostnames": ["fraud.example.com"]},
}


def route_rule(kubectl, namespace, name):
    return get_json(kubectl, "httproute", name, "-n", namespace)["spec"]["rules"][0]


def test_gateway_api_route_weights(kubectl, kubeconfig, namespace, operator):
    start_v2(kubectl, namespace, "gw", trafficRouting=GATEWAY)
    wait_for(
        phase_is(kubectl, namespace, "gw", "Paused", currentStep=3),
        timeout=90,
        message=describe(kubectl, namespace, "gw", operator),
    )
    route = get_json(kubectl, "httproute", "gw", "-n", namespace)
    assert route["spec"]["parentRefs"][0]["name"] == "public" and route["spec"]["hostnames"] == ["fraud.example.com"]
    assert route["metadata"]["ownerReferences"][0]["name"] == "gw"
    rule = route["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("gw-stable", 50), ("gw-canary", 50)]
    assert "filters" not in rule  # shadowing is the stable servers' own copy now, never a RequestMirror

    plugin(kubeconfig, "promote", "gw", "-n", namespace)
    wait_for(stable_version_is(kubectl, namespace, "gw", "v2"), timeout=60, message=describe(kubectl, namespace, "gw"))
    wait_for(
        lambda: (
            [(b["name"], b["weight"]) for b in route_rule(kubectl, namespace, "gw")["backendRefs"]]
            == [("gw-stable", 100), ("gw-canary", 0)]
        ),
        timeout=60,
        message="all weight on the promoted stable track",
    )


def test_blue_green_preview_promote_and_delayed_scale_down(kubectl, kubeconfig, namespace, operator):
    strategy = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 6}}
    start_v2(kubectl, namespace, "bg", strategy=strategy, replicas=2)
    status = wait_for(
        phase_is(kubectl, namespace, "bg", "Paused"), timeout=90, message=describe(kubectl, namespace, "bg", operator)
    )
    assert status["canary"]["readyReplicas"] == 2
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "bg-preview") == {"canary": 2},
        timeout=60,
        message="preview endpoints",
    )
    # EndpointSlices of the two Services are updated independently: poll the main one too
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "bg") == {"stable": 2},
        timeout=30,
        message=lambda: f"main endpoints during the preview: {ready_endpoints_by_track(kubectl, namespace, 'bg')}",
    )

    plugin(kubeconfig, "promote", "bg", "-n", namespace)
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "bg") == {"canary": 2},
        timeout=60,
        message=lambda: f"switched endpoints: {ready_endpoints_by_track(kubectl, namespace, 'bg')}",
    )
    status = status_of(kubectl, namespace, "bg")
    assert status["blueGreen"]["stage"] == "Switched"
    wait_for(weights_are(kubectl, namespace, "bg", 0, 100), timeout=60, message="weights 0/100 after the switch")
    stable = get_json(kubectl, "deployment", "bg-stable", "-n", namespace)
    assert stable["spec"]["replicas"] == 2 and stable["status"].get("readyReplicas") == 2  # old track kept warm

    wait_for(
        stable_version_is(kubectl, namespace, "bg", "v2"),
        timeout=60,
        message=describe(kubectl, namespace, "bg", operator),
    )
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "bg") == {"stable": 2},
        timeout=60,
        message="back on the stable track at v2",
    )


def test_abort_leaves_stable_at_full_weight_and_scale(kubectl, kubeconfig, namespace, operator):
    start_v2(kubectl, namespace, "ab")
    wait_for(phase_is(kubectl, namespace, "ab", "Progressing", currentStep=1), timeout=60, message="step 1")
    plugin(kubeconfig, "abort", "ab", "-n", namespace)
    status = wait_for(
        phase_is(kubectl, namespace, "ab", "Degraded"), timeout=60, message=describe(kubectl, namespace, "ab")
    )
    assert status["reason"] == "Aborted"
    wait_for(weights_are(kubectl, namespace, "ab", 100, 0), timeout=60, message="weights 100/0 after abort")
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "ab") == {"stable": 4},
        timeout=60,
        message="only stable endpoints after abort",
    )
    assert get_json(kubectl, "deployment", "ab-canary", "-n", namespace)["spec"]["replicas"] == 0
    assert get_json(kubectl, "deployment", "ab-stable", "-n", namespace)["spec"]["replicas"] == 4

    plugin(kubeconfig, "retry", "ab", "-n", namespace)
    wait_for(phase_is(kubectl, namespace, "ab", "Progressing", currentStep=1), timeout=60, message="retried")


def test_abort_while_healthy_is_acknowledged_and_the_next_rollout_is_promoted(kubectl, kubeconfig, namespace, operator):
    """An abort with no rollout in progress is settled at once (an Event says there was nothing
    to abort); it never reaches the next rollout."""
    timed = {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}}
    apply(kubectl, namespace, manifest("calm", "v1", 2, strategy=timed))
    wait_for(
        stable_version_is(kubectl, namespace, "calm", "v1"), timeout=60, message=describe(kubectl, namespace, "calm")
    )
    plugin(kubeconfig, "abort", "calm", "-n", namespace)

    def acknowledged():
        return [
            e["message"] for e in events_of(kubectl, namespace, "calm") if e["reason"] == "NothingToDo"
        ] and "abort" in (status_of(kubectl, namespace, "calm").get("acknowledged") or {})

    wait_for(acknowledged, timeout=30, message=describe(kubectl, namespace, "calm", operator))
    (message,) = [e["message"] for e in events_of(kubectl, namespace, "calm") if e["reason"] == "NothingToDo"]
    assert message == "nothing to abort: no rollout in progress"

    apply(kubectl, namespace, manifest("calm", "v2", 2, strategy=timed))
    status = wait_for(
        stable_version_is(kubectl, namespace, "calm", "v2"),
        timeout=90,
        message=describe(kubectl, namespace, "calm", operator),
    )
    assert "aborted" not in status and "Aborted" not in [e["reason"] for e in events_of(kubectl, namespace, "calm")]


def test_canary_pods_never_ready_abort_after_the_deadline(kubectl, namespace, operator):
    apply(kubectl, namespace, manifest("dl", "v1", 2, strategy=CANARY, progressDeadlineSeconds=6))
    wait_for(stable_version_is(kubectl, namespace, "dl", "v1"), timeout=60, message="v1")
    broken = {"podLabels": {"modelroll.test/crashloop": "true"}}
    apply(kubectl, namespace, manifest("dl", "v2", 2, strategy=CANARY, progressDeadlineSeconds=6, server=broken))
    status = wait_for(
        phase_is(kubectl, namespace, "dl", "Degraded"), timeout=60, message=describe(kubectl, namespace, "dl", operator)
    )
    assert status["reason"] == "ModelLoadFailed" and "not Ready within 6s" in status["message"]
    assert "crash-looping" in status["message"]
    assert status["stable"]["readyReplicas"] == 2 and status["weights"]["canary"] == 0
    wait_for(
        lambda: ready_endpoints_by_track(kubectl, namespace, "dl") == {"stable": 2}, timeout=60, message="stable only"
    )


def test_undo_returns_to_the_previous_model(kubectl, kubeconfig, namespace, operator):
    start_v2(kubectl, namespace, "un", replicas=2)
    plugin(kubeconfig, "promote", "un", "--full", "-n", namespace)
    wait_for(stable_version_is(kubectl, namespace, "un", "v2"), timeout=60, message="v2 promoted")
    plugin(kubeconfig, "undo", "un", "-n", namespace)
    status = wait_for(
        stable_version_is(kubectl, namespace, "un", "v1"),
        timeout=60,
        message=describe(kubectl, namespace, "un", operator),
    )
    assert status["pinned"]["version"] == "v1" and "spec asks for v2" in status["message"]
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "modelroll.io/name=un")["items"]
    live = {
        p["metadata"]["labels"]["modelroll.io/revision"] for p in pods if not p["metadata"].get("deletionTimestamp")
    }
    assert live == {status["stable"]["revision"]}


def test_operator_killed_mid_canary_resumes_to_the_same_end_state(
    kubectl, kubeconfig, namespace, run_operator, operator
):
    """SIGKILL the operator at several steps; each restart resumes where it was."""
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "3s"}},
        {"setWeight": 40},
        {"pause": {"duration": "3s"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    strategy = {"type": "Canary", "canary": {"steps": steps}}
    start_v2(kubectl, namespace, "crash", strategy=strategy)
    current = operator
    for step in (1, 3, 5):
        wait_for(
            lambda s=step: status_of(kubectl, namespace, "crash").get("currentStep", -1) >= s,
            timeout=90,
            message=describe(kubectl, namespace, "crash", current),
        )
        current.kill()
        status = status_of(kubectl, namespace, "crash")
        current = run_operator(
            env={"MODELROLL_NAMESPACES": namespace, "MODELROLL_METRICS_PORT": "0", "MODELROLL_RESYNC_SECONDS": "1"},
            log_name=f"restart-{step}",
        )
        assert status["currentStep"] >= step
    wait_for(
        phase_is(kubectl, namespace, "crash", "Paused", currentStep=5),
        timeout=90,
        message=describe(kubectl, namespace, "crash", current),
    )
    plugin(kubeconfig, "promote", "crash", "-n", namespace)
    status = wait_for(
        stable_version_is(kubectl, namespace, "crash", "v2"),
        timeout=60,
        message=describe(kubectl, namespace, "crash", current),
    )
    assert [h["version"] for h in status["history"]] == ["v2", "v1"]
    wait_for(weights_are(kubectl, namespace, "crash", 100, 0), timeout=60, message="weights 100/0")
    reasons = [e["reason"] for e in events_of(kubectl, namespace, "crash")]
    assert reasons.count("RolloutStarted") == 1, reasons
