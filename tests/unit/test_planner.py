"""planner.plan for the Rolling strategy: spec x observed -> children, deletions, status."""

from datetime import UTC, datetime

import pytest
from modelroll.children import HASH_ANNOTATION, Owner
from modelroll.observed import Observed
from modelroll.planner import ChildRef, Subject, plan
from modelroll_contract import GRPC_PORT, LABEL_NAME, LABEL_REVISION, LABEL_TRACK, SERVER_PORT

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 12, 5, tzinfo=UTC)
IMAGE = "registry.example/modelroll-server:test"
OWNER = Owner("fraud", "ml", "uid-1")
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def raw_spec(version="v1", digest=DIGEST_A, **extra):
    return {
        "model": {"uri": f"s3://models/fraud/{version}.joblib", "digest": digest, "version": version},
        "replicas": 2,
        **extra,
    }


def subject(spec, status=None, generation=1):
    return Subject(owner=OWNER, generation=generation, spec=spec, status=status or {})


def pod(name, revision, ready=True, **status):
    return {
        "metadata": {"name": name, "labels": {LABEL_NAME: "fraud", LABEL_TRACK: "stable", LABEL_REVISION: revision}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}], **status},
    }


def live(obj, **status):
    """``obj`` as the API server would return it after its controller acted on it."""
    return {**obj, "metadata": {**obj["metadata"], "generation": 1}, "status": {"observedGeneration": 1, **status}}


def cluster_after(result, ready, revision_pods=None, **dep_status):
    """Observed state once the applied children exist and the Deployment reports ``ready``."""
    deps, svcs, cms = {}, {}, {}
    for obj in result.apply:
        if obj["kind"] == "Deployment":
            deps[obj["metadata"]["name"]] = live(obj, **dep_status)
        elif obj["kind"] == "Service":
            svcs[obj["metadata"]["name"]] = obj
        elif obj["kind"] == "ConfigMap":
            cms[obj["metadata"]["name"]] = obj
    secrets = {"fraud-feedback": {"metadata": {"name": "fraud-feedback"}}} if result.create_feedback_secret else {}
    return Observed(deployments=deps, services=svcs, configmaps=cms, secrets=secrets, pods=revision_pods or ())


def revision(result):
    dep = next(o for o in result.apply if o["kind"] == "Deployment")
    return dep["spec"]["template"]["metadata"]["labels"][LABEL_REVISION]


def complete(n):
    return {"replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}


def test_new_object_creates_deployment_and_services():
    result = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    names = sorted((o["kind"], o["metadata"]["name"]) for o in result.apply)
    assert names == [
        ("ConfigMap", "fraud-shadow"),  # empty but always there: every Pod mounts it (test_shadow_phase.py)
        ("Deployment", "fraud-stable"),
        ("Service", "fraud"),
        ("Service", "fraud-stable"),
    ]
    assert result.status["phase"] == "Progressing" and result.status["reason"] == "Creating"
    assert result.status["observedGeneration"] == 1
    assert result.status["selector"] == "app.kubernetes.io/managed-by=modelroll,modelroll.io/name=fraud"
    assert result.status["url"] == "http://fraud.ml.svc.cluster.local"
    assert [e.reason for e in result.events] == ["Creating"]
    for obj in result.apply:
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("ModelDeployment", "fraud", "uid-1", True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelroll"


def test_pod_template_is_restricted_and_verifies_the_digest():
    result = plan(
        subject(raw_spec(server={"resources": {"requests": {"cpu": "500m"}}, "nodeSelector": {"pool": "ml"}})),
        Observed(),
        NOW,
        IMAGE,
    )
    dep = next(o for o in result.apply if o["kind"] == "Deployment")
    pod_spec = dep["spec"]["template"]["spec"]
    fetch, server = pod_spec["initContainers"][0], pod_spec["containers"][0]
    assert fetch["args"] == ["fetch", "s3://models/fraud/v1.joblib", "/models/model.joblib", "--digest", DIGEST_A]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {"name": "MODELROLL_SERVER_DIGEST", "value": DIGEST_A} in server["env"]
    for container in (fetch, server):
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] and ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
        assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["resources"] == {"requests": {"cpu": "500m"}} and container["image"] == IMAGE
    assert pod_spec["nodeSelector"] == {"pool": "ml"}
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["progressDeadlineSeconds"] == 600


def test_pods_and_services_expose_http_and_grpc():
    result = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    dep = next(o for o in result.apply if o["kind"] == "Deployment")
    server = dep["spec"]["template"]["spec"]["containers"][0]
    assert server["ports"] == [
        {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
        {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
    ]
    services = [o for o in result.apply if o["kind"] == "Service"]
    assert len(services) == 2
    for svc in services:
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
             "appProtocol": "kubernetes.io/h2c"},
        ]  # fmt: skip


def test_ready_deployment_is_healthy_and_recorded_in_history():
    first = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    rev = revision(first)
    observed = cluster_after(first, 2, [pod("p1", rev), pod("p2", rev)], **complete(2))
    result = plan(subject(raw_spec(), first.status), observed, LATER, IMAGE)
    assert result.apply == () and result.delete == ()
    status = result.status
    assert status["phase"] == "Healthy" and status["ready"] == "2/2"
    assert status["stable"] == {
        "revision": rev,
        "version": "v1",
        "digest": DIGEST_A,
        "uri": "s3://models/fraud/v1.joblib",
        "format": "joblib",
        "method": "predict",
        "replicas": 2,
        "readyReplicas": 2,
    }
    assert status["history"] == [
        {
            "revision": rev,
            "version": "v1",
            "digest": DIGEST_A,
            "uri": "s3://models/fraud/v1.joblib",
            "format": "joblib",
            "method": "predict",
            "promotedAt": "2026-11-22T12:05:00Z",
        }
    ]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["ModelVerified"]["status"] == "True"
    assert conds["Degraded"]["status"] == "False"
    assert conds["Degraded"]["lastTransitionTime"] == "2026-11-22T12:00:00Z"  # unchanged status keeps its time
    assert conds["Ready"]["lastTransitionTime"] == "2026-11-22T12:05:00Z"
    assert {e.reason for e in result.events} == {"Promoted", "RolloutComplete"}

    # A resync of the healthy object writes nothing at all.
    again = plan(subject(raw_spec(), status), observed, datetime(2026, 11, 22, 13, 0, tzinfo=UTC), IMAGE)
    assert again.writes == 0


def test_model_change_rolls_and_keeps_the_old_revision_stable_until_done():
    first = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    old = revision(first)
    observed = cluster_after(first, 2, [pod("p1", old), pod("p2", old)], **complete(2))
    healthy = plan(subject(raw_spec(), first.status), observed, NOW, IMAGE).status

    change = plan(subject(raw_spec("v2", DIGEST_B), healthy, generation=2), observed, LATER, IMAGE)
    assert [o["kind"] for o in change.apply] == ["Deployment"]  # services unchanged
    new = revision(change)
    assert new != old
    assert change.status["phase"] == "Progressing"
    assert change.status["stable"]["revision"] == old and change.status["canary"]["revision"] == new

    mid = cluster_after(
        change,
        2,
        [pod("p1", old), pod("p2", old), pod("p3", new)],
        replicas=3,
        readyReplicas=3,
        updatedReplicas=1,
        availableReplicas=3,
    )
    status = plan(subject(raw_spec("v2", DIGEST_B), change.status, 2), mid, LATER, IMAGE).status
    assert {k: status["canary"][k] for k in ("revision", "version", "digest", "replicas", "readyReplicas")} == {
        "revision": new,
        "version": "v2",
        "digest": DIGEST_B,
        "replicas": 1,
        "readyReplicas": 1,
    }
    assert status["weights"] == {"stable": 67, "canary": 33}
    assert "1/2 updated" in status["message"] and "v1 keeps serving" in status["message"]

    done = cluster_after(change, 2, [pod("p3", new), pod("p4", new)], **complete(2))
    final = plan(subject(raw_spec("v2", DIGEST_B), status, 2), done, LATER, IMAGE).status
    assert final["phase"] == "Healthy" and "canary" not in final
    assert final["stable"]["revision"] == new
    assert [h["version"] for h in final["history"]] == ["v2", "v1"]


def test_deadline_exceeded_is_degraded_with_the_pod_reason():
    first = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    rev = revision(first)
    broken = pod(
        "p1",
        rev,
        ready=False,
        initContainerStatuses=[
            {
                "name": "fetch-model",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 4,
                        "message": "IntegrityMismatch: digest mismatch: expected sha256:aaaa, got sha256:ffff",
                    }
                },
            }
        ],
    )
    exceeded = {
        "replicas": 2,
        "updatedReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    }
    result = plan(subject(raw_spec(), first.status), cluster_after(first, 0, [broken], **exceeded), LATER, IMAGE)
    status = result.status
    assert status["phase"] == "Degraded" and status["reason"] == "IntegrityMismatch"
    assert "digest mismatch" in status["message"] and "within 600s" in status["message"]
    assert "IntegrityMismatch:" not in status["message"]  # the reason is said once, the detail shown
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Degraded"]["status"] == "True" and conds["ModelVerified"]["status"] == "False"
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "IntegrityMismatch")]


@pytest.mark.parametrize(
    ("container_status", "reason"),
    [
        (
            {"name": "server", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}},
            "ImagePullFailed",
        ),
        (
            {
                "name": "server",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3, "message": "ModelLoadFailed: cannot unpickle model"}},
            },
            "ModelLoadFailed",
        ),
        (
            {
                "name": "fetch-model",
                "state": {"terminated": {"exitCode": 5, "message": "FetchFailed: GET http://x: 404"}},
            },
            "FetchFailed",
        ),
        (  # words in the message decide nothing: a 404 on a URL that says "sha256" and "digest"
            {
                "name": "fetch-model",
                "state": {
                    "terminated": {"exitCode": 5, "message": "FetchFailed: GET http://x/sha256/digest.joblib: 404"}
                },
            },
            "FetchFailed",
        ),
        (  # the fetch's own exit code for a digest mismatch
            {"name": "fetch-model", "state": {"terminated": {"exitCode": 4, "message": "IntegrityMismatch: no"}}},
            "IntegrityMismatch",
        ),
        (  # a code the server never uses (killed, out of memory): what the container was doing
            {"name": "server", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}},
            "ModelLoadFailed",
        ),
    ],
)
def test_failure_reasons(container_status, reason):
    first = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    key = "initContainerStatuses" if container_status["name"] == "fetch-model" else "containerStatuses"
    broken = pod("p1", revision(first), ready=False, **{key: [container_status]})
    exceeded = {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
    status = plan(subject(raw_spec(), first.status), cluster_after(first, 0, [broken], **exceeded), LATER, IMAGE).status
    assert status["reason"] == reason


def test_invalid_spec_fails_without_touching_children():
    bad = raw_spec()
    bad["model"]["digest"] = "sha256:nothex"
    result = plan(subject(bad), Observed(), NOW, IMAGE)
    assert result.apply == () and result.delete == ()
    assert result.status["phase"] == "Failed" and result.status["reason"] == "InvalidSpec"
    assert "spec.model.digest" in result.status["message"]


def test_scaled_to_zero_is_healthy():
    spec = {**raw_spec(), "replicas": 0}
    first = plan(subject(spec), Observed(), NOW, IMAGE)
    result = plan(subject(spec, first.status), cluster_after(first, 0), LATER, IMAGE)
    assert result.status["phase"] == "Healthy" and result.status["ready"] == "0/0"


def test_autoscaling_adds_an_hpa_on_the_scale_subresource():
    spec = raw_spec(autoscaling={"minReplicas": 2, "maxReplicas": 6})
    hpa = next(o for o in plan(subject(spec), Observed(), NOW, IMAGE).apply if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "modelroll.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_children_no_longer_wanted_are_deleted():
    first = plan(subject(raw_spec()), Observed(), NOW, IMAGE)
    observed = cluster_after(first, 2)
    extra = {"metadata": {"name": "fraud-canary", "annotations": {HASH_ANNOTATION: "x"}}}
    observed = Observed(deployments={**observed.deployments, "fraud-canary": extra}, services=observed.services)
    result = plan(subject(raw_spec(), first.status), observed, LATER, IMAGE)
    assert result.delete == (ChildRef("apps/v1", "Deployment", "fraud-canary"),)


def test_gateway_routing_with_a_single_track_is_refused_not_ignored():
    spec = raw_spec(trafficRouting={"gatewayAPI": {"parentRefs": [{"name": "gw"}]}})
    result = plan(subject(spec), Observed(), NOW, IMAGE)
    assert result.status["phase"] == "Failed" and "spec.trafficRouting.gatewayAPI" in result.status["message"]
    assert result.apply == ()
