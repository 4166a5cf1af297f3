"""The Helm chart on a real API server: lint, render, validate, install, and the operator run
with exactly the permissions the chart grants.

The chart's operator image cannot run here (no container runtime: its Deployment's Pods are
kwok fakes), so the operator runs as a local process with a token of the chart's
ServiceAccount: the same identity, the same RBAC, the same API server.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import launcher  # tests/cluster, on sys.path via tests/conftest.py
import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelroll"
# The helm built from Go modules reports Kubernetes v1.20 by default; render for the real target.
KUBE_VERSION = "1.32.6"
MONITORING_CRDS = ROOT / "tests" / "e2e" / "data" / "monitoring-crds.yaml"

VALUE_SETS = {
    "defaults": [],
    # NS_A / NS_B / NS_G: namespaces the test creates (watched namespaces, Grafana's)
    "namespaced": ["--set", "watchNamespaces={NS_A,NS_B}"],
    "monitoring": [
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.grafanaDashboard.namespace=NS_G",
    ],
    "tuned": [
        "--set", "replicaCount=3", "--set", "image.digest=sha256:" + "a" * 64,
        "--set", "priorityClassName=system-cluster-critical", "--set", "nodeSelector.role=ops",
        "--set", "tolerations[0].key=ops", "--set", "tolerations[0].operator=Exists",
        "--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128",
        "--set", "podDisruptionBudget.maxUnavailable=50%", "--set", "operator.logLevel=DEBUG",
    ],
}  # fmt: skip


def helm_bin() -> str:
    path = launcher.bin_dir() / "helm"
    if not path.exists():
        pytest.fail(f"helm is not built ({path}); run `make cluster-tools`")
    return str(path)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def render(namespace: str, *args: str, release: str = "modelroll") -> list[dict]:
    out = helm("template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}" for d in docs)


@pytest.fixture(scope="module")
def monitoring_crds(kubectl) -> None:
    """Minimal ServiceMonitor / PodMonitor CRDs (open schemas): enough for the API server to
    accept and validate the objects' envelopes in a dry run."""
    kubectl("apply", "--server-side", "-f", str(MONITORING_CRDS))
    for name in ("servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com"):
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def test_helm_lint_strict() -> None:
    out = helm("lint", "--strict", str(CHART)).stdout
    assert "0 chart(s) failed" in out


def test_a_typo_in_values_fails_before_anything_is_sent() -> None:
    proc = helm("template", "x", str(CHART), "--set", "replicaCont=2", check=False)
    assert proc.returncode != 0 and "replicaCont" in proc.stderr
    proc = helm("template", "x", str(CHART), "--set", "replicaCount=2", "--set", "leaderElection.enabled=false",
                check=False)  # fmt: skip
    assert proc.returncode != 0 and "leaderElection" in proc.stderr


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_manifests_pass_server_side_dry_run(
    value_set, kubectl, install_crds, monitoring_crds, namespace
) -> None:
    suffix = uuid.uuid4().hex[:6]
    others = {p: f"{p.lower().replace('_', '-')}-{suffix}" for p in ("NS_A", "NS_B", "NS_G")}
    args = VALUE_SETS[value_set]
    for placeholder, name in others.items():
        args = [a.replace(placeholder, name) for a in args]
    # A restricted Pod Security warning on the operator's Deployment would show in stderr.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    docs = render(namespace, *args, release=f"dry-{suffix}")  # cluster-scoped names stay unique
    made = sorted({d["metadata"].get("namespace") for d in docs} & set(others.values()))
    for name in made:
        kubectl("create", "namespace", name)
    try:
        proc = kubectl(
            "apply", "--server-side", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump_all(docs)
        )
    finally:
        for name in made:
            kubectl("delete", "namespace", name, "--wait=false", check=False)
    served = json.loads(proc.stdout)
    served = served.get("items", [served])
    assert len(served) == len(docs)
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. deprecated APIs, unknown fields
    found = kinds(docs)
    assert any(k.startswith("Deployment/") for k in found)
    if value_set == "namespaced":
        assert not [k for k in found if k.startswith("ClusterRole")]
        assert sum(k.startswith("Role/") for k in found) == 3  # two watched namespaces + the Lease
    if value_set == "monitoring":
        assert any(k.startswith("ServiceMonitor/") for k in found) and any(k.startswith("PodMonitor/") for k in found)
        dash = next(d for d in docs if d["kind"] == "ConfigMap")
        assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(dash["data"]["modelroll.json"])


def test_monitoring_auto_follows_the_served_apis() -> None:
    without = kinds(render("modelroll"))
    assert not [k for k in without if "Monitor/" in k]
    with_api = kinds(render("modelroll", "--api-versions", "monitoring.coreos.com/v1"))
    assert [k for k in with_api if "Monitor/" in k] == [
        "PodMonitor/modelroll/modelroll-models",
        "ServiceMonitor/modelroll/modelroll",
    ]
    forced_off = render("modelroll", "--api-versions", "monitoring.coreos.com/v1",
                        "--set", "monitoring.serviceMonitor.enabled=false")  # fmt: skip
    assert not [k for k in kinds(forced_off) if k.startswith("ServiceMonitor/")]


def test_pod_runs_restricted_and_configured_from_values() -> None:
    docs = render("modelroll", *VALUE_SETS["tuned"])
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 3
    assert c["image"] == "ghcr.io/modelroll/modelroll-operator@sha256:" + "a" * 64
    assert pod["priorityClassName"] == "system-cluster-critical" and pod["nodeSelector"] == {"role": "ops"}
    assert pod["tolerations"] == [{"key": "ops", "operator": "Exists"}]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["MODELROLL_LOG_LEVEL"] == "DEBUG"
    assert env["MODELROLL_LEADER_ELECTION"] == "true" and env["MODELROLL_LEADER_ELECTION_LEASE"] == "modelroll"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "50%"
