"""Gateway API CRDs installed after the operator started are picked up without a restart.

The operator starts on a cluster without the HTTPRoute CRD. A ModelDeployment routed through
the Gateway API waits, its status saying why (``GatewayAPINotInstalled``), and nothing is
created for it. Then the Gateway API CRDs are installed — the same standard-channel release the
other tests use — and the same operator process, within its discovery interval, watches
HTTPRoutes, creates the route and brings the object to Healthy. A route deleted behind its back
is put back: the watch is live, not just the discovery.

The CRDs are cluster-wide and shared with every other test session on this cluster. The test
removes only the HTTPRoute CRD, and only while no HTTPRoute exists anywhere (no other test is
using one), and always installs the full set again before it ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import gateway_crd_dir
from tests.e2e.operator_helpers import apply, events_of, manifest, scrape, status_of
from tests.helpers import free_port, get_json, wait_for

HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
WRITES = "modelroll_operator_api_writes_total"
DISCOVERY_SECONDS = 2
CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}
GATEWAY = {
    "gatewayAPI": {"parentRefs": [{"name": "public", "namespace": "gateways"}], "hostnames": ["late.example.com"]}
}


def httproute_served(kubectl) -> bool:
    return kubectl("get", "httproutes", "-A", "-o", "name", check=False).returncode == 0


def install_gateway_api(kubectl, crds: Path) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{HTTPROUTE_CRD}")


@pytest.fixture
def without_httproute(kubectl):
    """The HTTPRoute CRD removed for this test (when no HTTPRoute exists anywhere), and the
    Gateway API CRDs installed again afterwards, whatever happened."""
    crds = gateway_crd_dir()
    if httproute_served(kubectl):

        def nobody_routes() -> bool:
            return not get_json(kubectl, "httproutes", "-A")["items"]

        wait_for(nobody_routes, 300, interval=2, message="no HTTPRoute in any namespace (another test uses them)")
        kubectl("delete", "crd", HTTPROUTE_CRD, "--wait=true", "--timeout=60s")
        wait_for(lambda: not httproute_served(kubectl), 60, message="HTTPRoute no longer served")
    try:
        yield crds
    finally:
        install_gateway_api(kubectl, crds)


def test_gateway_api_installed_after_start_is_picked_up_without_a_restart(
    kubectl, install_crds, namespace, run_operator, without_httproute
):
    port = free_port()
    op = run_operator(
        env={
            "MODELROLL_NAMESPACES": namespace,
            "MODELROLL_METRICS_PORT": str(port),
            "MODELROLL_RESYNC_SECONDS": "1",
            "MODELROLL_DISCOVERY_SECONDS": str(DISCOVERY_SECONDS),
        }
    )
    pid = op.pid
    log = lambda: op.log()[-3000:]  # noqa: E731
    wait_for(lambda: "HTTPRoute is not served" in op.log(), 30, message=log)

    # It waits, says why, and creates nothing.
    apply(kubectl, namespace, manifest("late", "v1", 2, strategy=CANARY, trafficRouting=GATEWAY))
    waiting = wait_for(
        lambda: (s := status_of(kubectl, namespace, "late")).get("reason") == "GatewayAPINotInstalled" and s,
        30,
        message=lambda: f"{status_of(kubectl, namespace, 'late')}\n{log()}",
    )
    assert waiting["phase"] == "Pending"
    assert waiting["message"].startswith("waiting: Gateway API not installed")
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "GatewayAPINotInstalled")
    warned = [e for e in events_of(kubectl, namespace, "late") if e["reason"] == "GatewayAPINotInstalled"]
    assert len(warned) == 1 and warned[0]["type"] == "Warning"
    time.sleep(DISCOVERY_SECONDS * 1.5)  # several discovery rounds and resyncs: still nothing
    assert get_json(kubectl, "deployments,services", "-n", namespace)["items"] == []
    assert status_of(kubectl, namespace, "late")["reason"] == "GatewayAPINotInstalled"

    # The Gateway API is installed; the same process picks it up within its discovery interval.
    install_gateway_api(kubectl, without_httproute)
    installed = time.monotonic()
    route = wait_for(
        lambda: get_json(kubectl, "httproute", "late", "-n", namespace),
        DISCOVERY_SECONDS + 15,
        message=lambda: f"HTTPRoute late; status {status_of(kubectl, namespace, 'late')}\n{log()}",
    )
    noticed = time.monotonic() - installed
    assert route["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelroll"
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]][0] == "late-stable"
    healthy = wait_for(
        lambda: (s := status_of(kubectl, namespace, "late")).get("phase") == "Healthy" and s,
        60,
        message=lambda: f"Healthy; status {status_of(kubectl, namespace, 'late')}\n{log()}",
    )
    assert healthy["stable"]["version"] == "v1"
    assert op.running() and op.pid == pid  # never restarted
    assert "HTTPRoute is served; watching" in op.log()

    # It is watched, not just written: an unchanged object costs no route write at resync...
    def route_writes() -> float:
        return sum(v for k, v in scrape(port).items() if k.startswith(WRITES) and 'kind="HTTPRoute"' in k)

    settled = route_writes()
    time.sleep(3)  # three resyncs
    assert route_writes() == settled
    # ... a route deleted behind its back is seen gone and put back (the operator's own writes
    # alone would leave it believing the route still exists) ...
    uid = route["metadata"]["uid"]
    kubectl("delete", "httproute", "late", "-n", namespace)
    wait_for(
        lambda: get_json(kubectl, "httproute", "late", "-n", namespace)["metadata"]["uid"] != uid,
        30,
        message=lambda: f"HTTPRoute late recreated\n{log()}",
    )
    # ... and a route no longer wanted is deleted.
    apply(kubectl, namespace, manifest("late", "v1", 2, strategy=CANARY))
    wait_for(
        lambda: kubectl("get", "httproute", "late", "-n", namespace, check=False).returncode != 0,
        30,
        message=lambda: f"HTTPRoute late deleted once spec.trafficRouting is gone\n{log()}",
    )
    print(f"HTTPRoute created {noticed:.1f} s after the Gateway API CRDs were Established")
