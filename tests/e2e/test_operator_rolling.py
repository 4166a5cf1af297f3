"""The operator against a real API server: create, roll, fail, scale, resync, delete.

The Pods here are kwok fakes on the tainted kwok nodes (fake model URIs, failures steered by
kwok labels): these tests are about the operator's decisions. Models really serving on the
real node are tests/e2e/test_real_node.py."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.operator_helpers import ROOT, apply, manifest, mdep, phase_is, scrape, status_of, total
from tests.helpers import get_json, on_kwok, wait_for

pytestmark = pytest.mark.e2e


def test_example_becomes_healthy_with_children_and_columns(kubectl, namespace, operator):
    example = yaml.safe_load((ROOT / "examples/fraud-rolling.yaml").read_text())
    # Its file:// model is on no node: the Pods must be kwok fakes to become Ready.
    example["spec"]["server"] = on_kwok(example["spec"].get("server"))
    apply(kubectl, namespace, yaml.safe_dump(example))
    dep = wait_for(
        lambda: get_json(kubectl, "deployment", "fraud-stable", "-n", namespace),
        timeout=30,
        message="Deployment fraud-stable",
    )
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", "fraud")
    assert dep["spec"]["replicas"] == 2
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"

    status = wait_for(
        phase_is(kubectl, namespace, "fraud", "Healthy"),
        timeout=60,
        message=lambda: f"Healthy; status {status_of(kubectl, namespace, 'fraud')}\n{operator.log()[-3000:]}",
    )
    assert status["ready"] == "2/2" and status["stable"]["version"] == "v7"
    # The children are applied concurrently, so the Deployment may show before the Services;
    # the status is written only after every apply returned, so Healthy implies both exist.
    for svc in ("fraud", "fraud-stable"):
        get_json(kubectl, "service", svc, "-n", namespace)
    assert status["observedGeneration"] == mdep(kubectl, namespace, "fraud")["metadata"]["generation"]
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {"Ready": "True", "Progressing": "False", "Degraded": "False", "ModelVerified": "True"}
    row = kubectl("get", "mdep", "fraud", "-n", namespace).stdout.splitlines()
    header, values = row[0].split(), row[1].split()
    assert header[:6] == ["NAME", "PHASE", "STRATEGY", "STABLE", "CANARY", "WEIGHT"] or "PHASE" in header
    assert "Healthy" in values and "Rolling" in values and "v7" in values and "2/2" in values
    events = get_json(kubectl, "events", "-n", namespace, "--field-selector", "involvedObject.name=fraud")
    assert {"Creating", "Promoted"} <= {e["reason"] for e in events["items"]}


def test_model_change_rolls_to_the_new_revision(kubectl, namespace, operator):
    apply(kubectl, namespace, manifest("churn"))
    wait_for(phase_is(kubectl, namespace, "churn", "Healthy"), timeout=60, message="first revision Healthy")
    old = status_of(kubectl, namespace, "churn")["stable"]["revision"]

    apply(kubectl, namespace, manifest("churn", "v2"))
    seen = wait_for(
        lambda: (s := status_of(kubectl, namespace, "churn")).get("canary") and s,
        timeout=30,
        message="the new revision shown as canary while rolling",
    )
    assert seen["stable"]["revision"] == old and seen["canary"]["version"] == "v2"
    status = wait_for(
        lambda: (
            (s := status_of(kubectl, namespace, "churn")).get("phase") == "Healthy"
            and s["stable"]["version"] == "v2"
            and s
        ),
        timeout=90,
        message=lambda: f"v2 Healthy; status {status_of(kubectl, namespace, 'churn')}",
    )
    assert "canary" not in status and status["stable"]["revision"] != old
    assert [h["version"] for h in status["history"]] == ["v2", "v1"]
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "modelroll.io/name=churn")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"]["modelroll.io/revision"] for p in live} == {status["stable"]["revision"]}


def test_pods_that_never_become_ready_degrade_after_the_deadline(kubectl, namespace, operator):
    spec = {"progressDeadlineSeconds": 5, "server": {"podLabels": {"modelroll.test/crashloop": "true"}}}
    apply(kubectl, namespace, manifest("stuck", **spec))
    wait_for(phase_is(kubectl, namespace, "stuck", "Progressing"), timeout=30, message="Progressing first")
    status = wait_for(
        phase_is(kubectl, namespace, "stuck", "Degraded"),
        timeout=90,
        message=lambda: f"Degraded; status {status_of(kubectl, namespace, 'stuck')}",
    )
    assert status["reason"] == "ModelLoadFailed"
    assert "not Ready within 5s" in status["message"] and "crash-looping" in status["message"]
    warnings = get_json(
        kubectl, "events", "-n", namespace, "--field-selector", "involvedObject.name=stuck,type=Warning"
    )
    assert any(e["reason"] == "ModelLoadFailed" for e in warnings["items"])


def test_kubectl_scale_changes_the_replicas(kubectl, namespace, operator):
    apply(kubectl, namespace, manifest("scaled"))
    wait_for(phase_is(kubectl, namespace, "scaled", "Healthy"), timeout=60, message="Healthy")
    kubectl("scale", "mdep", "scaled", "-n", namespace, "--replicas=4")
    wait_for(
        lambda: get_json(kubectl, "deployment", "scaled-stable", "-n", namespace)["spec"]["replicas"] == 4,
        timeout=30,
        message="Deployment scaled to 4",
    )
    status = wait_for(
        lambda: (s := status_of(kubectl, namespace, "scaled")).get("ready") == "4/4" and s,
        timeout=60,
        message="4/4 ready",
    )
    assert status["replicas"] == 4 and status["phase"] == "Healthy"
    scale = json.loads(
        kubectl(
            "get", "--raw", f"/apis/modelroll.io/v1alpha1/namespaces/{namespace}/modeldeployments/scaled/scale"
        ).stdout
    )
    assert scale["status"]["replicas"] == 4 and "modelroll.io/name=scaled" in scale["status"]["selector"]


def test_healthy_resync_writes_nothing(kubectl, namespace, operator):
    apply(kubectl, namespace, manifest("quiet"))
    wait_for(phase_is(kubectl, namespace, "quiet", "Healthy"), timeout=60, message="Healthy")

    def versions():
        objs = [mdep(kubectl, namespace, "quiet")]
        objs += get_json(kubectl, "deployments,services", "-n", namespace, "-l", "modelroll.io/name=quiet")["items"]
        return {o["kind"] + "/" + o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objs}

    # Let any in-flight writes of the rollout land, then measure over several resyncs.
    wait_for(lambda: (v := versions()) == versions() and v, timeout=10, message="stable resourceVersions")
    before_rv, before = versions(), scrape(operator.metrics_port)
    unchanged = 'modelroll_operator_reconciles_total{outcome="unchanged"}'
    wait_for(
        lambda: scrape(operator.metrics_port).get(unchanged, 0) >= before.get(unchanged, 0) + 3,
        timeout=30,
        message="three more resyncs",
    )
    after = scrape(operator.metrics_port)
    assert total(after, "modelroll_operator_api_writes_total") == total(before, "modelroll_operator_api_writes_total")
    assert versions() == before_rv


def test_delete_removes_every_child(kubectl, namespace, operator):
    apply(kubectl, namespace, manifest("gone"))
    wait_for(lambda: get_json(kubectl, "deployment", "gone-stable", "-n", namespace), timeout=30, message="children")
    kubectl("delete", "mdep", "gone", "-n", namespace, "--wait=true")
    wait_for(
        lambda: (
            not get_json(kubectl, "deployments,services,pods", "-n", namespace, "-l", "modelroll.io/name=gone")["items"]
        ),
        timeout=60,
        message="children garbage-collected",
    )
