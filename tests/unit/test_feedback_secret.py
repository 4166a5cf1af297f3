"""Secret NAME-feedback and the Pod env that lets a label reach the Pod that answered: every Pod
of both tracks gets its IP and the one shared key; the key is drawn once, by the I/O side, and
the Secret is created only while it is not known to exist and never written again."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError
from modelroll.cache import Cache
from modelroll.children import Owner, build_feedback_secret, build_pod_template
from modelroll.controller import Controller
from modelroll.kube import Kube
from modelroll.observed import Observed
from modelroll.planner import Subject, plan
from modelroll.settings import load_settings
from modelroll.spec import parse_spec
from modelroll_contract import ENV_FEEDBACK_KEY, ENV_POD_IP, FEEDBACK_SECRET_KEY, LABEL_NAME, LABEL_TRACK

from tests.unit.sim import Cluster

OWNER = Owner("fraud", "ml", "uid-1")
IMAGE = "registry.example/modelroll-server:test"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
STEPS = [{"setWeight": 50}, {"pause": {}}]
POD_IP = {"name": ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
KEY_REF = {"name": ENV_FEEDBACK_KEY, "valueFrom": {"secretKeyRef": {
    "name": "fraud-feedback", "key": FEEDBACK_SECRET_KEY, "optional": True}}}  # fmt: skip


def spec(version: str = "v1") -> dict:
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": "sha256:" + version[-1] * 64, "version": version},
        "replicas": 2,
        "strategy": {"type": "Canary", "canary": {"steps": STEPS}},
        "server": {"env": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
    }


def test_every_pod_of_both_tracks_gets_its_ip_and_the_one_shared_key():
    cluster = Cluster(spec("v1"))
    cluster.settle(T0)
    cluster.set_spec(spec("v2"))
    cluster.settle(T0 + timedelta(seconds=1))
    assert cluster.status["phase"] == "Paused"  # both tracks run
    for track in ("stable", "canary"):
        env = cluster.deps[f"fraud-{track}"]["spec"]["template"]["spec"]["containers"][0]["env"]
        assert POD_IP in env and KEY_REF in env, track
        assert env[-1] == {"name": "AWS_REGION", "value": "eu-west-1"}  # spec.server.env still last
    # one Secret for both tracks, asked for once in the whole rollout
    assert list(cluster.secrets) == ["fraud-feedback"]
    assert sum(p.create_feedback_secret for p in cluster.plans) == 1


def test_the_template_is_the_same_at_every_reconcile():
    parsed = parse_spec(spec("v1"))
    first = json.dumps(build_pod_template(parsed, OWNER, "stable", IMAGE), sort_keys=True)
    assert json.dumps(build_pod_template(parsed, OWNER, "stable", IMAGE), sort_keys=True) == first


def test_the_secret_is_asked_for_only_while_not_known_to_exist_and_never_deleted():
    subject = Subject(owner=OWNER, generation=1, spec=spec("v1"))
    first = plan(subject, Observed(), T0, IMAGE)
    assert first.create_feedback_secret and first.writes > len(first.apply)
    assert all(obj["kind"] != "Secret" for obj in first.apply)  # never applied: an apply would rewrite it
    known = Observed(secrets={"fraud-feedback": {"metadata": {"name": "fraud-feedback"}}})
    again = plan(subject, known, T0, IMAGE)
    assert not again.create_feedback_secret
    assert all(ref.kind != "Secret" for ref in again.delete)


def test_the_secret_is_owned_labelled_immutable_and_holds_the_key_it_was_given():
    secret = build_feedback_secret(OWNER, "k" * 43)
    meta = secret["metadata"]
    assert (secret["kind"], meta["name"], meta["namespace"]) == ("Secret", "fraud-feedback", "ml")
    assert meta["labels"][LABEL_NAME] == "fraud" and LABEL_TRACK not in meta["labels"]  # both tracks read it
    assert meta["ownerReferences"][0]["kind"] == "ModelDeployment" and meta["ownerReferences"][0]["uid"] == "uid-1"
    assert secret["immutable"] is True
    assert base64.b64decode(secret["data"][FEEDBACK_SECRET_KEY]) == b"k" * 43


class FakeKube:
    """Records what the controller sends; applies and status patches come back as sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.created: list[dict] = []

    async def create_once(self, obj):
        self.calls.append(("create", obj["kind"]))
        self.created.append(obj)
        return True

    async def apply(self, obj):
        self.calls.append(("apply", obj["kind"]))
        return obj

    async def patch_status(self, owner, status, previous):
        self.calls.append(("status", ""))
        return {"metadata": {"namespace": owner.namespace, "name": owner.name, "uid": owner.uid,
                             "resourceVersion": "2"}, "spec": spec("v1"), "status": dict(status)}  # fmt: skip

    async def emit_event(self, owner, event, now):
        self.calls.append(("event", event.reason))


def test_the_controller_draws_a_fresh_key_creates_the_secret_first_and_keeps_no_key_in_memory():
    cache = Cache()
    for name in ("fraud", "other"):
        cache.put_parent({"metadata": {"namespace": "ml", "name": name, "uid": f"uid-{name}", "resourceVersion": "1"},
                          "spec": spec("v1")})  # fmt: skip
    kube = FakeKube()
    controller = Controller(load_settings({}), kube=kube, cache=cache)  # type: ignore[arg-type]
    for _ in range(2):
        asyncio.run(controller.reconcile(("ml", "fraud")))
    asyncio.run(controller.reconcile(("ml", "other")))
    assert [c for c in kube.calls if c[0] in ("create", "apply")][0] == ("create", "Secret")  # before any Pod
    assert [obj["metadata"]["name"] for obj in kube.created] == ["fraud-feedback", "other-feedback"]  # once each
    keys = [base64.b64decode(obj["data"][FEEDBACK_SECRET_KEY]).decode() for obj in kube.created]
    assert keys[0] != keys[1] and all(len(k) == 43 for k in keys)  # secrets.token_urlsafe(32): 256 bits
    cached = cache.observed(("ml", "fraud")).secrets["fraud-feedback"]
    assert "data" not in cached and cached["metadata"]["name"] == "fraud-feedback"


def api(answer: int) -> tuple[AsyncClient, list[tuple[str, str]]]:
    """lightkube's own client against an API that answers a create with ``answer``."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((request.method, request.url.path))
        if answer >= 400:
            return httpx2.Response(answer, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                 "code": answer, "message": f"answered {answer}"})  # fmt: skip
        return httpx2.Response(answer, content=request.content)

    config = KubeConfig.from_dict({
        "clusters": [{"name": "c", "cluster": {"server": "http://api.test"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
        "current-context": "c",
    })  # fmt: skip
    return AsyncClient(config=config, transport=httpx2.MockTransport(handler)), seen


@pytest.mark.parametrize(("answer", "created"), [(201, True), (409, False)])
def test_create_once_only_ever_creates(answer, created):
    client, seen = api(answer)
    assert asyncio.run(Kube(client).create_once(build_feedback_secret(OWNER, "k" * 43))) is created
    assert seen == [("POST", "/api/v1/namespaces/ml/secrets")]  # no read, no patch: an existing key stays


def test_create_once_fails_the_reconcile_on_any_other_refusal():
    client, _ = api(403)
    with pytest.raises(ApiError, match="answered 403"):
        asyncio.run(Kube(client).create_once(build_feedback_secret(OWNER, "k" * 43)))
