"""The Helm chart on a real API server: lint, render, validate, install, and the operator run
with exactly the permissions the chart grants.

In most tests the chart's operator Pods are kwok fakes (``install`` places them on kwok's tainted
nodes through the chart's nodeSelector/tolerations values), so the operator runs as a local
process with a token of the chart's ServiceAccount: the same identity, the same RBAC, the same
API server.

One test runs the real operator image: ``test_real_operator_image_in_cluster_...`` installs the
chart with ``localhost/modelroll-operator:dev`` (``make images``) and no kwok placement, so its
two Pods run on the cluster's real node (containerd, kubelet) with in-cluster config, elect a
leader, roll a real model served by ``localhost/modelroll-server:dev``, and are checked for the
restricted security context at runtime (uid, capabilities, read-only root) in both images.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import launcher  # tests/cluster, on sys.path via tests/conftest.py
import pytest
import yaml

from tests.e2e.operator_helpers import (
    apply,
    events_of,
    manifest,
    operator_metrics,
    phase_is,
    plugin,
    scrape,
    stable_version_is,
    status_of,
    total,
)
from tests.e2e.real_node import OPERATOR_IMAGE, REAL_NODE, SERVER_IMAGE, real_manifest
from tests.helpers import KWOK_NODE_SELECTOR, KWOK_TOLERATIONS, free_port, get_json, pod_is_ready, wait_for

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
        "--set", "operator.discoverySeconds=3",
    ],
}  # fmt: skip


def helm_bin() -> str:
    path = launcher.bin_dir() / "helm"
    if not path.exists():
        pytest.fail(f"helm is not built ({path}); run `make cluster-tools`")
    return str(path)


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=timeout)
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
    assert env["MODELROLL_DISCOVERY_SECONDS"] == "3"
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


# --- installed: the operator as the chart's ServiceAccount ---------------------------------------

CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
RBAC_REFUSAL = re.compile(r"cannot \w+ resource")


@dataclass
class Release:
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-modelroll"


# Chart values that put the operator Pods on kwok's fake nodes, where they become Ready without
# running the image (the operator itself runs as a local process in these tests).
KWOK_PLACEMENT = (
    "--set-json", f"nodeSelector={json.dumps(KWOK_NODE_SELECTOR)}",
    "--set-json", f"tolerations={json.dumps(KWOK_TOLERATIONS)}",
)  # fmt: skip


def install(kubectl, *values: str, placement: Sequence[str] = KWOK_PLACEMENT, wait: float = 0) -> Release:
    """helm install into a fresh namespace that enforces the restricted Pod Security Standard.

    The operator Pods go on kwok by default; placement=() leaves them to the real node. wait > 0:
    `helm install --wait` for that many seconds (the Deployment's Pods Ready). A failed install
    is uninstalled (namespace included) before the error is raised, with the Pods' state."""
    rel = Release(name=f"mr-{uuid.uuid4().hex[:6]}", namespace=f"mr-{uuid.uuid4().hex[:6]}")
    kubectl("create", "namespace", rel.namespace)
    try:
        kubectl("label", "namespace", rel.namespace, "pod-security.kubernetes.io/enforce=restricted")
        waiting = ("--wait", "--timeout", f"{wait:g}s") if wait else ()
        helm("install", rel.name, str(CHART), "-n", rel.namespace, *placement, *values, *waiting, timeout=wait + 120)
    except BaseException as error:
        pods = kubectl("get", "pods", "-n", rel.namespace, "-o", "wide", check=False).stdout
        events = kubectl("get", "events", "-n", rel.namespace, check=False).stdout
        uninstall(kubectl, rel)
        if isinstance(error, AssertionError):
            raise AssertionError(f"{error}\npods:\n{pods}\nevents:\n{events[-3000:]}") from None
        raise
    return rel


def uninstall(kubectl, rel: Release) -> None:
    helm("uninstall", rel.name, "-n", rel.namespace, "--wait=false", check=False)
    kubectl("delete", "namespace", rel.namespace, "--wait=false", check=False)


def sa_kubeconfig(kubectl, admin_kubeconfig: Path, rel: Release, path: Path) -> Path:
    """A kubeconfig holding only a token of the chart's ServiceAccount (never the admin's cert)."""
    token = kubectl("create", "token", rel.fullname, "-n", rel.namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {k: cluster[k] for k in ("server", "certificate-authority-data")}}],
        "users": [{"name": rel.fullname, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": rel.fullname}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    who = subprocess.run(
        ["kubectl", "--kubeconfig", str(path), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True,
        text=True,
    )
    assert who.stdout == f"system:serviceaccount:{rel.namespace}:{rel.fullname}", who.stderr
    return path


def operator_env(kubectl, rel: Release, pod_name: str) -> dict[str, str]:
    """The environment the chart gives the operator container (fieldRefs filled in as the kubelet would)."""
    dep = get_json(kubectl, "deployment", rel.fullname, "-n", rel.namespace)
    env: dict[str, str] = {}
    for var in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        env[var["name"]] = {"metadata.namespace": rel.namespace, "metadata.name": pod_name}.get(
            ref, var.get("value", "")
        )
    env.update(MODELROLL_METRICS_PORT=str(free_port()), MODELROLL_LOG_JSON="false", MODELROLL_RESYNC_SECONDS="2")
    return env


def start(run_operator, kubectl, rel, sa_config: Path, pod_name: str, watch: str, **extra: str):
    """The operator as a local process with the chart's environment and ServiceAccount token.

    It watches only `watch` (the test's namespace), even under the cluster-wide chart: its
    ClusterRole is what is tested, and a cluster shared with `make demo` must not be touched."""
    env = {**operator_env(kubectl, rel, pod_name), "KUBECONFIG": str(sa_config), **extra}
    env["MODELROLL_NAMESPACES"] = watch
    proc = run_operator(env=env, log_name=pod_name)
    proc.metrics_port = int(env["MODELROLL_METRICS_PORT"])
    wait_for(lambda: scrape(proc.metrics_port), timeout=30, message=lambda: f"{pod_name} metrics; log:\n{proc.log()}")
    return proc


def describe(kubectl, namespace, name, *procs):
    return lambda: f"status {status_of(kubectl, namespace, name)}\n" + "\n".join(p.log()[-2000:] for p in procs)


@pytest.fixture(scope="module")
def clusterwide(kubectl, install_crds, gateway_crds):
    rel = install(kubectl)
    yield rel
    uninstall(kubectl, rel)


def test_install_runs_restricted_and_grants_nothing_beyond_the_rules(kubectl, clusterwide):
    rel = clusterwide
    # The Deployment's Pods (kwok fakes) were admitted under `enforce: restricted`.
    kubectl("rollout", "status", f"deployment/{rel.fullname}", "-n", rel.namespace, "--timeout=60s")
    pods = get_json(kubectl, "pods", "-n", rel.namespace, "-l", f"app.kubernetes.io/instance={rel.name}")["items"]
    assert len(pods) == 2
    nodes = [get_json(kubectl, "node", p["spec"]["nodeName"]) for p in pods]
    assert all(KWOK_NODE_SELECTOR.items() <= n["metadata"]["labels"].items() for n in nodes)  # KWOK_PLACEMENT
    sa = f"system:serviceaccount:{rel.namespace}:{rel.fullname}"

    def can(*args: str) -> bool:
        return kubectl("auth", "can-i", "--as", sa, *args, check=False).stdout.strip() == "yes"

    assert can("patch", "deployments.apps", "-A") and can("watch", "modeldeployments.modelroll.io", "-A")
    assert can("patch", "modeldeployments.modelroll.io", "--subresource=status", "-n", "default")
    assert not can("get", "secrets", "-A") and not can("list", "secrets", "-n", "default")
    assert not can("update", "modeldeployments.modelroll.io", "-n", "default")  # spec is never written
    assert not can("patch", "modeldeployments.modelroll.io", "-n", "default")
    assert not can("get", "deployments.apps", "-n", "default")  # reads come from watches
    assert not can("create", "pods", "-n", "default")
    assert can("update", "leases.coordination.k8s.io/" + rel.fullname, "-n", rel.namespace)
    assert not can("update", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system")


def test_canary_to_promotion_as_the_chart_service_account_and_gitops_sees_no_drift(
    kubectl, kubeconfig, clusterwide, namespace, run_operator, tmp_path, argocd_lua
):
    rel = clusterwide
    sa = sa_kubeconfig(kubectl, kubeconfig, rel, tmp_path / "sa-kubeconfig")
    op = start(run_operator, kubectl, rel, sa, "op-solo", namespace)
    apply(kubectl, namespace, manifest("fraud", "v1", 2, strategy=CANARY))
    wait_for(
        stable_version_is(kubectl, namespace, "fraud", "v1"), 90, message=describe(kubectl, namespace, "fraud", op)
    )
    apply(kubectl, namespace, manifest("fraud", "v2", 2, strategy=CANARY))
    status = wait_for(
        phase_is(kubectl, namespace, "fraud", "Paused", currentStep=1),
        90,
        message=describe(kubectl, namespace, "fraud", op),
    )
    assert status["weights"] == {"stable": 50, "canary": 50}
    # What the Grafana dashboard draws for rollouts: per-object phase, weight and step gauges.
    text = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
    ident = f'model_name="fraud",model_namespace="{namespace}"'
    assert f'modelroll_modeldeployment_phase{{{ident},phase="Paused"}} 1.0' in text
    assert f'modelroll_modeldeployment_weight{{{ident},track="canary"}} 50.0' in text
    assert f"modelroll_modeldeployment_step{{{ident}}} 1.0" in text
    plugin(kubeconfig, "promote", "fraud", "-n", namespace)
    status = wait_for(
        lambda: (s := stable_version_is(kubectl, namespace, "fraud", "v2")()) and "canary" not in s and s,
        90,
        message=describe(kubectl, namespace, "fraud", op),
    )
    assert [h["version"] for h in status["history"]] == ["v2", "v1"]
    assert "Promoted" in [e["reason"] for e in events_of(kubectl, namespace, "fraud")]  # events: create
    # No RBAC refusal at all (a cluster-wide operator may also meet other tests' namespaces being
    # deleted, whose "forbidden: ... being terminated" is not about permissions).
    assert not RBAC_REFUSAL.search(op.log()), RBAC_REFUSAL.search(op.log())

    # GitOps: applying the same manifest again changes nothing — the operator never wrote spec.
    text = manifest("fraud", "v2", 2, strategy=CANARY)
    before = get_json(kubectl, "mdep", "fraud", "-n", namespace, "--show-managed-fields")["metadata"]
    diff = kubectl("diff", "--server-side", "-n", namespace, "-f", "-", input=text, check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    apply(kubectl, namespace, text)
    after = get_json(kubectl, "mdep", "fraud", "-n", namespace, "--show-managed-fields")["metadata"]
    # The re-apply wrote nothing: the generation and the applier's own entry (with its time) are
    # unchanged. (resourceVersion is no witness: a status write of the operator may land meanwhile.)
    assert after["generation"] == before["generation"]

    def applied(meta: dict) -> list[dict]:
        return [m for m in meta["managedFields"] if m["manager"] == "kubectl" and not m.get("subresource")]

    assert applied(after) == applied(before), (applied(before), applied(after))
    # The operator's field manager owns status only; spec belongs to whoever applied the manifest.
    fields = {(m["manager"], m.get("subresource", "")): m["fieldsV1"] for m in after["managedFields"]}
    assert "f:spec" not in json.dumps([v for k, v in fields.items() if k[0] != "kubectl"]), list(fields)
    assert fields[("modelroll", "status")].keys() == {"f:status"}, list(fields)
    # ... and Argo CD's health check reads the live object as Healthy.
    assert argocd_lua([get_json(kubectl, "mdep", "fraud", "-n", namespace)])[0]["status"] == "Healthy"


def test_one_verb_less_and_the_rollout_visibly_fails(
    kubectl, kubeconfig, clusterwide, namespace, run_operator, tmp_path
):
    """Proof that the RBAC test is real: without `patch` on Deployments nothing rolls out."""
    rel = clusterwide
    role = get_json(kubectl, "clusterrole", rel.fullname)
    crippled = json.loads(json.dumps(role))
    for rule in crippled["rules"]:
        if rule["apiGroups"] == ["apps"] and rule["resources"] == ["deployments"]:
            rule["verbs"].remove("patch")
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        crippled["metadata"].pop(key, None)
    kubectl("replace", "-f", "-", input=json.dumps(crippled))
    try:
        sa = sa_kubeconfig(kubectl, kubeconfig, rel, tmp_path / "sa-kubeconfig")
        op = start(run_operator, kubectl, rel, sa, "op-crippled", namespace)
        apply(kubectl, namespace, manifest("fraud", "v1", 2, strategy=CANARY))
        wait_for(
            lambda: re.search(r'cannot patch resource \\?"deployments\\?" in API group \\?"apps\\?"', op.log()),
            timeout=60,
            message=lambda: f"a 403 on patching deployments; log:\n{op.log()[-3000:]}",
        )
        assert status_of(kubectl, namespace, "fraud").get("phase") != "Healthy"
        assert not get_json(kubectl, "deployments", "-n", namespace)["items"]
    finally:
        role["metadata"].pop("resourceVersion", None)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(role))


def test_two_replicas_one_leader_and_the_standby_finishes_the_rollout(
    kubectl, kubeconfig, install_crds, gateway_crds, namespace, run_operator, tmp_path
):
    """Namespaced mode (a Role in the watched namespace only), leader election as the chart sets it."""
    rel = install(kubectl, "--set", f"watchNamespaces={{{namespace}}}")
    try:
        assert kubectl("get", "clusterrole", rel.fullname, check=False).returncode != 0
        sa = sa_kubeconfig(kubectl, kubeconfig, rel, tmp_path / "sa-kubeconfig")
        a = start(run_operator, kubectl, rel, sa, "op-a", namespace)
        wait_for(lambda: scrape(a.metrics_port).get("modelroll_operator_leader") == 1.0, 30, message=lambda: a.log())
        b = start(run_operator, kubectl, rel, sa, "op-b", namespace)
        apply(kubectl, namespace, manifest("fraud", "v1", 2, strategy=CANARY))
        wait_for(
            stable_version_is(kubectl, namespace, "fraud", "v1"),
            90,
            message=describe(kubectl, namespace, "fraud", a, b),
        )
        apply(kubectl, namespace, manifest("fraud", "v2", 2, strategy=CANARY))
        wait_for(
            phase_is(kubectl, namespace, "fraud", "Paused", currentStep=1),
            90,
            message=describe(kubectl, namespace, "fraud", a, b),
        )
        # Only the leader acted; the standby's cache is warm (it sees the object) but it wrote nothing.
        standby = scrape(b.metrics_port)
        assert standby["modelroll_operator_leader"] == 0.0
        assert total(standby, "modelroll_operator_api_writes_total") == 0
        assert total(standby, "modelroll_operator_reconciles_total") == 0
        assert standby.get('modelroll_operator_objects{phase="Paused"}') == 1.0
        assert total(scrape(a.metrics_port), "modelroll_operator_api_writes_total") > 0
        lease = get_json(kubectl, "lease", rel.fullname, "-n", rel.namespace)
        assert lease["spec"]["holderIdentity"] == f"op-a_{a.pid}"

        a.kill()  # SIGKILL: no release; b must wait for the Lease to expire
        plugin(kubeconfig, "promote", "fraud", "-n", namespace)
        wait_for(
            lambda: (s := stable_version_is(kubectl, namespace, "fraud", "v2")()) and "canary" not in s and s,
            90,
            message=describe(kubectl, namespace, "fraud", b),
        )
        assert scrape(b.metrics_port)["modelroll_operator_leader"] == 1.0
        lease = get_json(kubectl, "lease", rel.fullname, "-n", rel.namespace)
        assert lease["spec"]["holderIdentity"] == f"op-b_{b.pid}" and lease["spec"]["leaseTransitions"] == 1
        assert not RBAC_REFUSAL.search(a.log() + b.log())
    finally:
        uninstall(kubectl, rel)


# --- the real operator image, in-cluster, on the real node ----------------------------------------

REAL_TIMEOUT = 300  # a busy 2-core machine: Pods start in ~10 s, a model Pod's Python imports take longer
REAL_CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}}

# Run inside a Pod by `kubectl exec ... python3 -c` (the images have no `id`, no shell tools):
# who the container's processes are, what they may do, and whether the root filesystem takes a write.
RUNTIME_PROBE = r"""
import errno, json, os
def status(pid):
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return dict((k, v.strip()) for k, _, v in (line.partition(":") for line in lines))
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        return "written"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
main = status(1)
root = next(line.split() for line in open("/proc/self/mountinfo") if line.split()[4] == "/")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "pid1": open("/proc/1/cmdline").read().replace("\0", " ").strip(),
    "pid1_uid": main["Uid"].split(), "pid1_gid": main["Gid"].split(),
    "cap_eff": main["CapEff"], "cap_prm": main["CapPrm"], "cap_bnd": main["CapBnd"],
    "exec_cap_eff": status("self")["CapEff"],
    "no_new_privs": main["NoNewPrivs"], "seccomp": main["Seccomp"],
    "root_mount_options": root[5].split(","),
    "write_root": write("/modelroll-probe"), "write_tmp": write("/tmp/modelroll-probe"),
}))
"""

# Run inside an operator Pod: its environment, where its TCP connections go (before this probe
# opens one), and who the API server says the Pod's own ServiceAccount token is.
IN_CLUSTER_PROBE = r"""
import json, os, socket, ssl, urllib.request
def established():
    out = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[3] != "01":
            continue
        (lip, lport), (rip, rport) = (a.split(":") for a in f[1:3])
        out.append([int(lport, 16), socket.inet_ntoa(bytes.fromhex(rip)[::-1]), int(rport, 16)])
    return out
connections = established()
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
request = urllib.request.Request(
    f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews", data=review, method="POST",
    headers={"Authorization": "Bearer " + open(sa + "/token").read().strip(), "Content-Type": "application/json"},
)
context = ssl.create_default_context(cafile=sa + "/ca.crt")
user = json.load(urllib.request.urlopen(request, context=context, timeout=10))["status"]["userInfo"]
print(json.dumps({
    "env": dict(os.environ), "user": user, "connections": connections,
    "kubeconfig_file": os.path.exists(os.path.expanduser("~/.kube/config")),
}))
"""

METRICS_PROBE = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8081/metrics').read().decode())"


def pod_python(kubectl, namespace: str, pod: str, code: str, *args: str, container: str = "") -> str:
    where = ["-c", container] if container else []
    return kubectl("exec", pod, "-n", namespace, *where, "--", "python3", "-c", code, *args).stdout


def log_records(kubectl, namespace: str, pod: str) -> list[dict]:
    """The operator's JSON log lines (the chart's default operator.logJson=true)."""
    lines = kubectl("logs", pod, "-n", namespace).stdout.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_real_operator_image_in_cluster_two_replicas_one_leader_canary_to_promotion_restricted(
    kubectl, install_crds, gateway_crds, namespace, model_store, trained
):
    """The Helm chart with the real operator image: the operator runs as Pods under the chart's
    ServiceAccount with in-cluster config, two replicas with leader election, and drives a canary
    to promotion. Restricted pod security (non-root 65532, read-only root, no capabilities) holds
    on the real runtime for both images."""
    _, models = trained
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    rel = install(
        kubectl,
        "--set", f"image.repository={OPERATOR_IMAGE.rsplit(':', 1)[0]}",
        "--set", f"image.tag={OPERATOR_IMAGE.rsplit(':', 1)[1]}",
        "--set", "image.pullPolicy=Never",  # no registry: the image is in the node's containerd
        "--set", "replicaCount=2",
        "--set", "leaderElection.enabled=true",
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", f"operator.serverImage={SERVER_IMAGE}",
        placement=(),
        wait=REAL_TIMEOUT,
    )  # fmt: skip
    try:
        sa_name = f"system:serviceaccount:{rel.namespace}:{rel.fullname}"
        selector = f"app.kubernetes.io/instance={rel.name}"
        ops = get_json(kubectl, "pods", "-n", rel.namespace, "-l", selector)["items"]
        names = sorted(p["metadata"]["name"] for p in ops)
        assert len(ops) == 2, names
        for pod in ops:  # real containers on the real node, admitted under enforce=restricted
            assert pod["spec"]["nodeName"] == REAL_NODE and pod["status"]["phase"] == "Running"
            assert pod_is_ready(pod), pod["status"]
            assert pod["spec"]["serviceAccountName"] == rel.fullname
            (c,) = pod["spec"]["containers"]
            assert c["image"] == OPERATOR_IMAGE and "KUBECONFIG" not in {e["name"] for e in c.get("env", [])}

        # In-cluster config: no kubeconfig anywhere; the Pod's own token is the chart's
        # ServiceAccount, and the operator's connections go to the `kubernetes` Service.
        api = get_json(kubectl, "service", "kubernetes", "-n", "default")["spec"]
        api_ip, api_port = api["clusterIP"], next(p["port"] for p in api["ports"] if p["name"] == "https")
        for name in names:
            inside = json.loads(pod_python(kubectl, rel.namespace, name, IN_CLUSTER_PROBE))
            env = inside["env"]
            assert "KUBECONFIG" not in env and not inside["kubeconfig_file"]
            assert inside["user"]["username"] == sa_name, inside["user"]
            assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (api_ip, str(api_port))
            outgoing = {(ip, port) for local, ip, port in inside["connections"] if local != 8081}  # 8081: probes
            assert outgoing == {(api_ip, api_port)}, inside["connections"]
            said = [r["message"] for r in log_records(kubectl, rel.namespace, name) if "Kubernetes API" in r["message"]]
            assert said == [f"Kubernetes API at https://{api_ip}:{api_port} (in-cluster ServiceAccount)"], said

        def can(*args: str) -> bool:
            return kubectl("auth", "can-i", "--as", sa_name, *args, check=False).stdout.strip() == "yes"

        assert can("watch", "modeldeployments.modelroll.io", "-n", namespace)
        assert can("patch", "modeldeployments.modelroll.io", "--subresource=status", "-n", namespace)
        assert can("patch", "deployments.apps", "-n", namespace)
        assert can("update", f"leases.coordination.k8s.io/{rel.fullname}", "-n", rel.namespace)
        assert not can("patch", "deployments.apps", "-n", "default")  # only the watched namespace
        assert not can("list", "secrets", "-n", namespace)

        # Exactly one replica holds the Lease.
        def holder() -> str:
            return get_json(kubectl, "lease", rel.fullname, "-n", rel.namespace)["spec"].get("holderIdentity") or ""

        leader_id = wait_for(holder, timeout=60, message="a holder of the Lease")
        leader = leader_id.rsplit("_", 1)[0]
        assert leader in names, (leader_id, names)
        (standby,) = set(names) - {leader}

        def metrics(pod: str) -> dict[str, float]:
            return operator_metrics(pod_python(kubectl, rel.namespace, pod, METRICS_PROBE))

        def describe_real(name: str):
            def text() -> str:
                logs = {p: kubectl("logs", p, "-n", rel.namespace, "--tail=20", check=False).stdout for p in names}
                pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
                return f"status {status_of(kubectl, namespace, name)}\npods:\n{pods}\n" + "\n".join(
                    f"--- {p}:\n{log}" for p, log in logs.items()
                )

            return text

        # A real model, canary v1 -> v2, driven by the in-cluster leader.
        uri, digest = model_store.put(f"{namespace}-fraud-v1.joblib", models["v1"].data)
        apply(kubectl, namespace, real_manifest("fraud", uri, digest, "v1", replicas=2, strategy=REAL_CANARY))
        wait_for(stable_version_is(kubectl, namespace, "fraud", "v1"), REAL_TIMEOUT, message=describe_real("fraud"))
        uri, digest = model_store.put(f"{namespace}-fraud-v2.joblib", models["v2"].data)
        apply(kubectl, namespace, real_manifest("fraud", uri, digest, "v2", replicas=2, strategy=REAL_CANARY))
        status = wait_for(
            lambda: (s := stable_version_is(kubectl, namespace, "fraud", "v2")()) and "canary" not in s and s,
            REAL_TIMEOUT,
            message=describe_real("fraud"),
        )
        assert [h["version"] for h in status["history"]] == ["v2", "v1"]
        reasons = [e["reason"] for e in events_of(kubectl, namespace, "fraud")]
        assert "Promoted" in reasons, reasons
        servers = [
            p
            for p in get_json(kubectl, "pods", "-n", namespace, "-l", "modelroll.io/name=fraud")["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]
        assert servers and all(p["spec"]["nodeName"] == REAL_NODE for p in servers)
        assert all(p["spec"]["containers"][0]["image"] == SERVER_IMAGE for p in servers)

        # Only the leader reconciled and wrote; the standby's own watches (in-cluster too) kept
        # its cache warm; the Lease never changed hands; every Event came from the leader Pod.
        lead, stand = metrics(leader), metrics(standby)
        assert lead["modelroll_operator_leader"] == 1.0 and stand["modelroll_operator_leader"] == 0.0
        assert total(lead, "modelroll_operator_reconciles_total") > 0
        assert total(lead, "modelroll_operator_api_writes_total") > 0
        assert total(stand, "modelroll_operator_reconciles_total") == 0
        assert total(stand, "modelroll_operator_api_writes_total") == 0
        wait_for(
            lambda: metrics(standby).get('modelroll_operator_objects{phase="Healthy"}') == 1.0,
            60,
            message="the standby's cache sees fraud Healthy",
        )
        lease = get_json(kubectl, "lease", rel.fullname, "-n", rel.namespace)["spec"]
        assert lease["holderIdentity"] == leader_id and lease.get("leaseTransitions", 0) == 0, lease
        instances = {e.get("reportingInstance") for e in events_of(kubectl, namespace, "fraud")}
        assert instances == {leader}, instances
        for name in names:
            records = log_records(kubectl, rel.namespace, name)
            errors = [r["message"] for r in records if r["level"] in ("ERROR", "CRITICAL")]
            assert not errors, f"{name}: {errors[:3]}"
            assert not RBAC_REFUSAL.search("\n".join(r["message"] for r in records))
        restarts = {
            p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
            for p in get_json(kubectl, "pods", "-n", rel.namespace, "-l", selector)["items"]
        }
        assert restarts == dict.fromkeys(names, 0), restarts

        # Restricted at runtime, both images: uid/gid 65532, no capabilities at all, no privilege
        # escalation, seccomp filtering, a read-only root filesystem (EROFS) with /tmp writable.
        for image, (ns, pod, container, entrypoint) in {
            OPERATOR_IMAGE: (rel.namespace, leader, "operator", "modelroll-operator"),
            SERVER_IMAGE: (namespace, servers[0]["metadata"]["name"], "server", "modelroll-server"),
        }.items():
            got = json.loads(pod_python(kubectl, ns, pod, RUNTIME_PROBE, container=container))
            assert entrypoint in got["pid1"], (image, got)
            assert (got["uid"], got["gid"]) == (65532, 65532), (image, got)
            assert got["pid1_uid"] == ["65532"] * 4 and got["pid1_gid"] == ["65532"] * 4, (image, got)
            zero = "0000000000000000"
            assert got["cap_eff"] == got["cap_prm"] == got["cap_bnd"] == got["exec_cap_eff"] == zero, (image, got)
            assert got["no_new_privs"] == "1" and got["seccomp"] == "2", (image, got)
            assert "ro" in got["root_mount_options"] and got["write_root"] == "EROFS", (image, got)
            assert got["write_tmp"] == "written", (image, got)
    finally:
        uninstall(kubectl, rel)


# --- least privilege, derived: the rules are exactly what the operator is refused without them ----

READS = [
    "modeldeployments",
    "deployments",
    "services",
    "configmaps",
    "pods",
    "horizontalpodautoscalers",
    "httproutes",
]
REFUSED = re.compile(r'cannot (\w+) resource \\?"([^"\\]+)\\?" in API group \\?"([^"\\]*)\\?"')


def test_chart_rules_are_exactly_the_verbs_the_operator_is_refused_without_them(
    kubectl, kubeconfig, install_crds, gateway_crds, namespace, run_operator, tmp_path
):
    """Start the operator with list + watch only; grant each verb it is refused while canary,
    scale-during-pause, blue-green with Gateway API and autoscaling, and a switch back to Rolling
    run to completion; the verbs granted must be the chart's rules, no more and no fewer."""
    probe = Release(name="probe", namespace=namespace)
    kubectl("create", "serviceaccount", probe.fullname, "-n", namespace)
    kubectl("create", "rolebinding", "probe", "--role=probe", f"--serviceaccount={namespace}:{probe.fullname}",
            "-n", namespace)  # fmt: skip
    granted: set[tuple[str, str, str]] = set()  # (api group, resource, verb)

    def write_role() -> None:
        rules = [{"apiGroups": sorted({"modelroll.io", "apps", "", "autoscaling", "gateway.networking.k8s.io"}),
                  "resources": READS, "verbs": ["list", "watch"]}]  # fmt: skip
        rules += [{"apiGroups": [g], "resources": [r], "verbs": [v]} for g, r, v in sorted(granted)]
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "probe", "namespace": namespace}, "rules": rules}  # fmt: skip
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(role))

    write_role()
    sa = sa_kubeconfig(kubectl, kubeconfig, probe, tmp_path / "probe-kubeconfig")
    op = run_operator(
        env={"KUBECONFIG": str(sa), "MODELROLL_NAMESPACES": namespace, "MODELROLL_METRICS_PORT": str(free_port()),
             "MODELROLL_RESYNC_SECONDS": "2"},
        log_name="probe",
    )  # fmt: skip
    pokes = iter(range(1_000_000))

    def until(name: str, predicate, what: str) -> None:
        """Poll; grant whatever was refused since, and poke the objects so they retry at once."""

        def step():
            refused = {(g, r, v) for v, r, g in REFUSED.findall(op.log())} - granted
            if refused:
                granted.update(refused)
                write_role()
                kubectl("annotate", "mdep", "--all", "-n", namespace, f"modelroll.test/poke={next(pokes)}",
                        "--overwrite")  # fmt: skip
                return None
            return predicate(status_of(kubectl, namespace, name))

        wait_for(step, timeout=120, interval=0.5, message=lambda: f"{name}: {what}; granted {sorted(granted)}")

    healthy_at = lambda v: lambda s: s.get("phase") == "Healthy" and s["stable"]["version"] == v and "canary" not in s  # noqa: E731
    # A canary with a manual pause, scaled while paused (the held stable track), then promoted.
    apply(kubectl, namespace, manifest("can", "v1", 2, strategy=CANARY))
    until("can", healthy_at("v1"), "v1 Healthy")
    apply(kubectl, namespace, manifest("can", "v2", 2, strategy=CANARY))
    until("can", lambda s: s.get("phase") == "Paused", "Paused")
    kubectl("scale", "mdep", "can", "-n", namespace, "--replicas=3")  # at 50 %: 2 stable and 2 canary Pods
    until("can", lambda s: s.get("phase") == "Paused" and s["stable"]["replicas"] == 2, "stable scaled to 2 of 3")
    plugin(kubeconfig, "promote", "can", "-n", namespace)
    until("can", healthy_at("v2"), "v2 promoted")
    # Blue-green behind a Gateway API HTTPRoute, with an HPA; then back to plain Rolling.
    gw = {"gatewayAPI": {"parentRefs": [{"name": "public", "namespace": "gateways"}], "hostnames": ["bg.example.com"]}}
    bg = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 1}}
    extra = {"strategy": bg, "trafficRouting": gw, "autoscaling": {"minReplicas": 2, "maxReplicas": 3}}
    apply(kubectl, namespace, manifest("bg", "v1", 2, **extra))
    until("bg", healthy_at("v1"), "v1 Healthy")
    apply(kubectl, namespace, manifest("bg", "v2", 2, **extra))
    until("bg", lambda s: s.get("phase") == "Paused", "preview Paused")
    plugin(kubeconfig, "promote", "bg", "-n", namespace)
    until("bg", healthy_at("v2"), "v2 promoted")
    apply(kubectl, namespace, manifest("bg", "v2", 2))

    def children_gone(_status) -> bool:
        left = [kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0
                for kind, name in (("httproute", "bg"), ("hpa", "bg"), ("service", "bg-preview"))]  # fmt: skip
        return not any(left)

    until("bg", children_gone, "HTTPRoute, HPA and preview Service deleted")

    role = next(
        d for d in render("x", "--set", "watchNamespaces={x}") if d["kind"] == "Role"
    )  # same rules as the ClusterRole
    rules = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {r for _, r, v in rules if v in ("list", "watch")} == set(READS)
    writes = {rule for rule in rules if rule[2] not in ("list", "watch")}
    # Not exercisable here: only clusters with the OwnerReferencesPermissionEnforcement admission
    # plugin check it (children carry blockOwnerDeletion).
    writes.discard(("modelroll.io", "modeldeployments/finalizers", "update"))
    assert granted == writes, f"missing from the chart: {sorted(granted - writes)}; unused: {sorted(writes - granted)}"


# --- GitOps: the Argo CD health check under Argo CD's own Lua interpreter (gopher-lua) ---------

ARGOCD_LUA = ROOT / "docs" / "gitops" / "argocd-health.lua"


def _md(generation: int, **status) -> dict:
    return {"metadata": {"name": "fraud", "generation": generation}, **({"status": status} if status else {})}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_md(1), "Progressing"),  # no status yet
        (_md(2, phase="Healthy", observedGeneration=2, message="v2 serving"), "Healthy"),
        (_md(3, phase="Healthy", observedGeneration=2), "Progressing"),  # new commit not yet seen
        (_md(2, phase="Progressing", observedGeneration=2), "Progressing"),
        (_md(2, phase="Pending", observedGeneration=2), "Progressing"),
        (_md(2, phase="Paused", observedGeneration=2, message="step 2/2: paused"), "Suspended"),
        (_md(2, phase="Degraded", observedGeneration=2, message="AnalysisFailed"), "Degraded"),
        (_md(2, phase="Failed", observedGeneration=2), "Degraded"),
    ],
)
def test_argocd_health_check(obj, expected, argocd_lua):
    (result,) = argocd_lua([obj])
    assert result["status"] == expected
    if "message" in obj.get("status", {}):
        assert result["message"] == obj["status"]["message"]


@pytest.fixture(scope="module")
def argocd_lua(tmp_path_factory):
    """run([obj, ...]) -> [{status, message}]: the health script run as Argo CD runs it."""
    exe = tmp_path_factory.mktemp("argocd-lua") / "argocd-lua"
    build = subprocess.run(
        ["go", "build", "-o", str(exe), "."],
        cwd=ROOT / "tests" / "e2e" / "data" / "argocd-lua",
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        timeout=300,
    )
    if build.returncode != 0:
        pytest.fail(f"step 'build the gopher-lua runner': {build.stderr}")

    def run(objs: list[dict]) -> list[dict]:
        proc = subprocess.run(
            [str(exe), str(ARGOCD_LUA)], input=json.dumps(objs), capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run
