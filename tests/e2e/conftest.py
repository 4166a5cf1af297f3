"""Fixtures for end-to-end tests of the operator: a running operator and the Gateway API CRDs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import established
from tests.e2e.real_node import SERVER_IMAGE, ModelStore, TrainedModel, train_models
from tests.helpers import free_port, wait_for

GATEWAY_API_VERSION = "v1.3.0"  # standard channel; RequestMirror.percent is standard from v1.3


def gateway_crd_dir() -> Path:
    """The standard-channel CRDs of the Gateway API release, from the sigs.k8s.io/gateway-api Go module."""
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"],
            cwd=scratch,
            capture_output=True,
            text=True,
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""},
        )
    if proc.returncode != 0:
        pytest.fail(f"step 'download Gateway API CRDs': {proc.stdout}{proc.stderr}")
    return Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "standard"


@pytest.fixture(scope="session")
def gateway_crds(kubectl) -> None:
    """The Gateway API standard-channel CRDs installed, and HTTPRoute established."""
    kubectl("apply", "--server-side", "-f", str(gateway_crd_dir()))
    crd = "httproutes.gateway.networking.k8s.io"
    wait_for(lambda: established(kubectl, crd), timeout=60, message="HTTPRoute CRD Established")


def start_operator(run_operator, namespace: str, **env: str):
    """The operator watching `namespace`, with metrics on a free port, once it is healthy."""
    port = free_port()
    proc = run_operator(
        env={"MODELROLL_NAMESPACES": namespace, "MODELROLL_METRICS_PORT": str(port), "MODELROLL_RESYNC_SECONDS": "1"}
        | env
    )
    wait_for(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
        timeout=30,
        message=lambda: f"operator health endpoint; log:\n{proc.log()}",
    )
    proc.metrics_port = port
    return proc


@pytest.fixture
def operator(run_operator, install_crds, gateway_crds, namespace):
    """The operator, watching this test's namespace, with metrics on a free port."""
    return start_operator(run_operator, namespace)


@pytest.fixture(scope="session")
def host_ip(cluster) -> str:
    """The address of this host that Pods on the real node reach (the Pod bridge's gateway)."""
    external = os.environ.get("MODELROLL_TEST_HOST_IP")
    if external:
        return external
    if cluster.state_dir is None or not (cluster.state_dir / "host-ip").is_file():
        pytest.fail("no host-ip for this cluster: set MODELROLL_TEST_HOST_IP to an address its Pods reach this host at")
    return (cluster.state_dir / "host-ip").read_text().strip()


@pytest.fixture(scope="session")
def model_store(host_ip, tmp_path_factory) -> ModelStore:
    store = ModelStore(tmp_path_factory.mktemp("model-store"), host_ip)
    yield store
    store.close()


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[object, dict[str, TrainedModel]]:
    """(rows, {"v1": LogisticRegression, "v2": RandomForest}) trained once per session."""
    return train_models(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def real_operator(run_operator, install_crds, namespace):
    """The operator (a local process) watching this test's namespace, running the server image
    built by `make images` on the real node."""
    return start_operator(run_operator, namespace, MODELROLL_SERVER_IMAGE=SERVER_IMAGE)
