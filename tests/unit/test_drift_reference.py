"""spec.monitoring.drift in the Pod: the reference statistics are fetched and verified by an init
container of their own beside the model, and the server is told where they are."""

import pytest
from modelroll.children import FETCH_MODEL, FETCH_REFERENCE, Owner, build_pod_template, revision_of
from modelroll.observed import pod_failure
from modelroll.spec import SpecError, parse_spec
from modelroll_contract import (
    ENV_REFERENCE,
    EXIT_INTEGRITY_MISMATCH,
    REASON_FETCH_FAILED,
    REASON_INTEGRITY_MISMATCH,
    termination_message,
)

OWNER = Owner("fraud", "ml", "uid-1")
IMAGE = "registry.example/modelroll-server:test"
MODEL_DIGEST = "sha256:" + "a" * 64
REF_DIGEST = "sha256:" + "c" * 64


def spec(drift=None, **model):
    raw = {
        "model": {"uri": "s3://models/fraud/v7/model.skops", "digest": MODEL_DIGEST, "format": "skops", **model},
        "server": {"env": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
    }
    if drift is not None:
        raw["monitoring"] = {"drift": drift}
    return parse_spec(raw)


def pod(drift=None, **model):
    return build_pod_template(spec(drift, **model), OWNER, "stable", IMAGE)["spec"]


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}  # valueFrom entries: None


def test_the_reference_is_fetched_and_verified_by_its_own_init_container():
    p = pod({"referenceUri": "s3://models/fraud/v7/reference.json", "referenceDigest": REF_DIGEST},
            storageSecretRef={"name": "s3-creds"})  # fmt: skip
    fetch_model, fetch_ref = p["initContainers"]
    assert fetch_model["name"] == FETCH_MODEL and fetch_ref["name"] == FETCH_REFERENCE
    assert fetch_ref["args"] == [
        "fetch", "s3://models/fraud/v7/reference.json", "/models/reference.json", "--digest", REF_DIGEST,
    ]  # fmt: skip
    # the same image, store credentials, restrictions and termination message as the model's fetch
    for key in ("image", "env", "envFrom", "securityContext", "resources", "terminationMessagePath"):
        assert fetch_ref[key] == fetch_model[key], key
    assert fetch_ref["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "model", "mountPath": "/models"} in fetch_ref["volumeMounts"]
    server = p["containers"][0]
    assert env_of(server)[ENV_REFERENCE] == "/models/reference.json"
    assert env_of(server)["AWS_REGION"] == "eu-west-1"  # spec.server.env still comes after


def test_without_drift_there_is_no_reference_fetch_and_no_reference_for_the_server():
    p = pod()
    assert [c["name"] for c in p["initContainers"]] == [FETCH_MODEL]
    assert ENV_REFERENCE not in env_of(p["containers"][0])


def test_a_pvc_reference_mounts_its_own_claim():
    p = pod({"referenceUri": "pvc://stats/fraud/v7/reference.json", "referenceDigest": REF_DIGEST},
            uri="pvc://models/fraud/v7/model.skops")  # fmt: skip
    fetch_model, fetch_ref = p["initContainers"]
    assert fetch_model["args"][1] == "/mnt/model-source/fraud/v7/model.skops"
    assert fetch_ref["args"][1] == "/mnt/reference-source/fraud/v7/reference.json"
    assert {"name": "reference-source", "mountPath": "/mnt/reference-source", "readOnly": True} in fetch_ref[
        "volumeMounts"
    ]
    assert not any(m["name"] == "model-source" for m in fetch_ref["volumeMounts"])
    volumes = {v["name"]: v for v in p["volumes"]}
    assert volumes["reference-source"]["persistentVolumeClaim"] == {"claimName": "stats", "readOnly": True}
    assert volumes["model-source"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_a_new_reference_is_a_new_revision():
    def rev(drift):
        return revision_of(build_pod_template(spec(drift), OWNER, "stable", IMAGE))

    uri = "s3://models/fraud/v7/reference.json"
    assert len({rev(None), rev({"referenceUri": uri, "referenceDigest": REF_DIGEST}),
                rev({"referenceUri": uri, "referenceDigest": "sha256:" + "d" * 64})}) == 3  # fmt: skip


@pytest.mark.parametrize(
    ("drift", "path"),
    [
        ({"referenceUri": "s3://models/fraud/v7/reference.json"}, "spec.monitoring.drift.referenceDigest"),
        (
            {"referenceUri": "s3://models/r.json", "referenceDigest": "sha256:abc"},
            "spec.monitoring.drift.referenceDigest",
        ),
        ({"referenceDigest": REF_DIGEST}, "spec.monitoring.drift.referenceUri"),
    ],
)
def test_the_reference_needs_both_its_uri_and_its_digest(drift, path):
    with pytest.raises(SpecError) as e:
        spec(drift)
    assert e.value.path == path


def test_parsed_reference_fields():
    s = spec({"referenceUri": "gs://stats/fraud/reference.json", "referenceDigest": REF_DIGEST})
    assert (s.drift_reference_uri, s.drift_reference_digest) == ("gs://stats/fraud/reference.json", REF_DIGEST)


def _failed_pod(container, exit_code, message):
    term = {"exitCode": exit_code, "message": message, "reason": "Error"}
    return {
        "metadata": {"name": "fraud-stable-1"},
        "status": {"initContainerStatuses": [
            {"name": FETCH_MODEL, "state": {"terminated": {"exitCode": 0}}},
            {"name": container, "state": {"terminated": term}},
        ]},
    }  # fmt: skip


def test_a_reference_digest_mismatch_is_an_integrity_mismatch_naming_the_reference_fetch():
    msg = termination_message(REASON_INTEGRITY_MISMATCH, "digest mismatch for s3://models/fraud/v7/reference.json")
    reason, detail = pod_failure([_failed_pod(FETCH_REFERENCE, EXIT_INTEGRITY_MISMATCH, msg)])  # type: ignore[misc]
    assert reason == REASON_INTEGRITY_MISMATCH
    assert detail == "pod fraud-stable-1: fetch-reference: digest mismatch for s3://models/fraud/v7/reference.json"


def test_a_reference_fetch_killed_without_a_reason_is_a_fetch_failure():
    reason, detail = pod_failure([_failed_pod(FETCH_REFERENCE, 137, "")])  # type: ignore[misc]
    assert reason == REASON_FETCH_FAILED and "fetch-reference" in detail
