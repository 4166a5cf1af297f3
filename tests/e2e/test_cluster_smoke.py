"""Smoke tests that prove the test control plane is a real Kubernetes: controllers run
Deployments, kwok plays the kubelet, EndpointSlices follow readiness, garbage collection,
CRD schema validation and RBAC are enforced by the API server itself.

kwok's nodes are tainted (tests.helpers.KWOK_TAINT), so the fake Pods here ask for them with
KWOK_NODE_SELECTOR and KWOK_TOLERATIONS; one test checks that a Pod without the toleration is
kept off them."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    KWOK_NODE_SELECTOR,
    KWOK_TAINT,
    KWOK_TOLERATIONS,
    Kubectl,
    get_json,
    make_pod_ready,
    make_pod_unready,
    pod_is_ready,
    wait_for,
)

pytestmark = pytest.mark.e2e

APP = "smoke"


def _deployment_and_service(replicas: int, extra_pod_labels: str = "") -> str:
    # A fake image: only kwok's nodes can make these Pods Running and Ready.
    return textwrap.dedent(
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {APP}
        spec:
          replicas: {replicas}
          selector:
            matchLabels: {{app: {APP}}}
          template:
            metadata:
              labels: {{app: {APP}{extra_pod_labels}}}
            spec:
              nodeSelector: {json.dumps(KWOK_NODE_SELECTOR)}
              tolerations: {json.dumps(KWOK_TOLERATIONS)}
              containers:
              - name: app
                image: registry.invalid/smoke:1
                ports: [{{containerPort: 8080, name: http}}]
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: {APP}
        spec:
          selector: {{app: {APP}}}
          ports: [{{port: 80, targetPort: http, name: http}}]
        """
    )


def _pods(kubectl: Kubectl, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kubectl, "pods", "-n", ns, "-l", f"app={APP}")["items"]
    return items


def _endpoints(kubectl: Kubectl, ns: str) -> tuple[set[str], set[str]]:
    """(ready, not-ready) Pod names across the Service's EndpointSlices."""
    slices = get_json(kubectl, "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={APP}")["items"]
    ready, unready = set(), set()
    for s in slices:
        for ep in s.get("endpoints") or []:
            name = ep.get("targetRef", {}).get("name")
            (ready if ep.get("conditions", {}).get("ready") else unready).add(name)
    return ready, unready


def _all_running_ready(kubectl: Kubectl, ns: str, n: int) -> list[dict[str, Any]] | None:
    pods = _pods(kubectl, ns)
    ok = [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and pod_is_ready(p)
        and p["spec"].get("nodeName", "").startswith("kwok-node-")
        and p["status"].get("podIP")
    ]
    return ok if len(ok) == n and len(pods) == n else None


def test_deployment_pods_become_running_and_ready(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_deployment_and_service(3))

    pods = wait_for(
        lambda: _all_running_ready(kubectl, namespace, 3),
        timeout=60,
        message=lambda: f"3 Running+Ready pods; have {_pod_summary(kubectl, namespace)}",
    )
    # The scheduler placed them on kwok's nodes; the Deployment's status agrees.
    assert {p["spec"]["nodeName"] for p in pods} <= {f"kwok-node-{i}" for i in range(3)}
    wait_for(
        lambda: get_json(kubectl, "deployment", APP, "-n", namespace)["status"].get("availableReplicas") == 3,
        timeout=30,
        message="deployment availableReplicas == 3",
    )


def test_endpointslice_follows_pod_readiness(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_deployment_and_service(2))
    pods = wait_for(
        lambda: _all_running_ready(kubectl, namespace, 2),
        timeout=60,
        message=lambda: f"2 Running+Ready pods; have {_pod_summary(kubectl, namespace)}",
    )
    names = {p["metadata"]["name"] for p in pods}
    wait_for(
        lambda: _endpoints(kubectl, namespace)[0] == names,
        timeout=30,
        message=lambda: f"EndpointSlice ready endpoints == {names}: {_endpoints(kubectl, namespace)}",
    )

    victim = sorted(names)[0]
    make_pod_unready(kubectl, namespace, victim)
    wait_for(
        lambda: not pod_is_ready(get_json(kubectl, "pod", victim, "-n", namespace)),
        timeout=30,
        message=f"pod {victim} Ready=False",
    )
    wait_for(
        lambda: _endpoints(kubectl, namespace) == (names - {victim}, {victim}),
        timeout=30,
        message=lambda: f"{victim} moved to not-ready endpoints: {_endpoints(kubectl, namespace)}",
    )

    # And back: removing the label makes it Ready and a serving endpoint again.
    make_pod_ready(kubectl, namespace, victim)
    wait_for(
        lambda: _endpoints(kubectl, namespace) == (names, set()),
        timeout=30,
        message=lambda: f"{victim} ready again in endpoints: {_endpoints(kubectl, namespace)}",
    )


def test_pod_template_label_starts_pods_unready(kubectl: Kubectl, namespace: str) -> None:
    manifest = _deployment_and_service(1, ', modelroll.test/unready: "true"')
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    pod = wait_for(
        lambda: next((p for p in _pods(kubectl, namespace) if p["status"].get("phase") == "Running"), None),
        timeout=60,
        message=lambda: f"a Running pod; have {_pod_summary(kubectl, namespace)}",
    )
    assert not pod_is_ready(pod)
    assert get_json(kubectl, "deployment", APP, "-n", namespace)["status"].get("availableReplicas", 0) == 0


def test_launcher_taint_keeps_untolerating_pods_off_kwok_nodes(kubectl: Kubectl, namespace: str) -> None:
    """Tests the launcher's taint on kwok's nodes: a Pod that asks for them but does not
    tolerate the taint is never bound, so fakes land there only when a test says so."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "untolerated"},
        "spec": {
            "nodeSelector": KWOK_NODE_SELECTOR,
            "containers": [{"name": "app", "image": "registry.invalid/smoke:1"}],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))

    def unschedulable() -> dict[str, Any] | None:
        status = get_json(kubectl, "pod", "untolerated", "-n", namespace)["status"]
        conds = [c for c in status.get("conditions", []) if c["type"] == "PodScheduled"]
        return conds[0] if conds and conds[0]["status"] == "False" else None

    cond = wait_for(unschedulable, timeout=30, message="PodScheduled=False on the untolerating Pod")
    assert cond["reason"] == "Unschedulable", cond
    assert "taint" in cond["message"] and KWOK_TAINT["key"] in cond["message"], cond["message"]
    pod = get_json(kubectl, "pod", "untolerated", "-n", namespace)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName"), pod["status"]


def test_deleting_owner_garbage_collects_owned_configmap(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "owner", "-n", namespace, "--from-literal=k=v")
    owner_uid = get_json(kubectl, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"k": "v"},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(owned))
    assert kubectl("get", "configmap", "owned", "-n", namespace).returncode == 0

    kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode != 0
            and "NotFound" in kubectl("get", "configmap", "owned", "-n", namespace, check=False).stderr
        ),
        timeout=60,
        message="owned ConfigMap garbage-collected",
    )


def test_crd_schema_violation_is_refused(kubectl: Kubectl) -> None:
    # Cluster-scoped and uniquely named, so parallel or repeated runs never collide.
    group = f"smoke{uuid.uuid4().hex[:8]}.modelroll.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "replicas": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 10,
                                        },
                                        "mode": {"type": "string", "enum": ["a", "b"]},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.mode != 'b' || self.replicas > 0",
                                            "message": "mode b needs replicas",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/widgets.{group}")
        ns = "default"

        def widget(name: str, spec: dict[str, Any]) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": spec,
                }
            )

        good = kubectl("apply", "-f", "-", input=widget("good", {"replicas": 2, "mode": "a"}))
        assert good.returncode == 0

        cases = {
            "too-many": ({"replicas": 11}, "spec.replicas"),
            "wrong-type": ({"replicas": "two"}, "spec.replicas"),
            "missing": ({"mode": "a"}, "spec.replicas"),
            "bad-enum": ({"replicas": 1, "mode": "c"}, "spec.mode"),
            "cel": ({"replicas": 0, "mode": "b"}, "mode b needs replicas"),
        }
        for name, (spec, expected) in cases.items():
            proc = kubectl("apply", "-f", "-", input=widget(name, spec), check=False)
            assert proc.returncode != 0, f"{name}: API server accepted {spec}"
            assert "Invalid" in proc.stderr and expected in proc.stderr, (name, proc.stderr)
            absent = kubectl("get", f"widgets.{group}", name, "-n", ns, check=False)
            assert absent.returncode != 0 and "NotFound" in absent.stderr
    finally:
        kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_rbac_refuses_verb_outside_role(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl("create", "serviceaccount", "narrow", "-n", namespace)
    kubectl(
        "create", "role", "cm-reader", "-n", namespace,
        "--verb=get,list", "--resource=configmaps",
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "narrow-cm-reader", "-n", namespace,
        "--role=cm-reader", f"--serviceaccount={namespace}:narrow",
    )  # fmt: skip
    kubectl("create", "configmap", "visible", "-n", namespace, "--from-literal=k=v")
    token = kubectl("create", "token", "narrow", "-n", namespace, "--duration=10m").stdout.strip()
    assert token.count(".") == 2, "expected a JWT from the TokenRequest API"

    # A kubeconfig holding only the token: the admin one's client certificate would win.
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    sa_config = tmp_path / "narrow.kubeconfig"
    sa_config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "narrow", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "narrow"}}],
                "current-context": "c",
            }
        )
    )

    def as_sa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(sa_config), *args, "-n", namespace],
            capture_output=True,
            text=True,
            timeout=60,
        )

    # The token authenticates as the ServiceAccount, and the Role's verbs are allowed...
    who = as_sa("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == f"system:serviceaccount:{namespace}:narrow", who.stderr
    allowed = wait_for(
        lambda: (r := as_sa("get", "configmap", "visible", "-o", "name")).returncode == 0 and r,
        timeout=15,
        message="the RoleBinding to take effect",
    )
    assert allowed.stdout.strip() == "configmap/visible"
    # ...but verbs and resources outside it are refused by the API server.
    for args in (
        ("delete", "configmap", "visible"),
        ("create", "configmap", "other", "--from-literal=k=v"),
        ("get", "secrets"),
    ):
        proc = as_sa(*args)
        assert proc.returncode != 0, f"{args} was allowed"
        assert "forbidden" in proc.stderr.lower(), proc.stderr
        assert f"system:serviceaccount:{namespace}:narrow" in proc.stderr, proc.stderr
    assert kubectl("get", "configmap", "visible", "-n", namespace).returncode == 0


def _pod_summary(kubectl: Kubectl, ns: str) -> str:
    out = []
    for p in _pods(kubectl, ns):
        out.append(
            f"{p['metadata']['name']}:{p['status'].get('phase')}"
            f"/ready={pod_is_ready(p)}/node={p['spec'].get('nodeName')}"
        )
    return ", ".join(out) or "none"
