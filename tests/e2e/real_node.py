"""Real parts for end-to-end tests on the cluster's real node: real scikit-learn models served
over HTTP from this host to the Pods' init containers, ModelDeployments without kwok placement
(so their Pods run the real server image on the real node), and clients that call a Service's
ClusterIP from the host through kube-proxy's rules (I/O: HTTP, files, kubectl).
"""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import requests
import yaml

from tests.e2e.operator_helpers import ready_endpoints
from tests.helpers import Kubectl, get_json, wait_for

SERVER_IMAGE = "localhost/modelroll-server:dev"
OPERATOR_IMAGE = "localhost/modelroll-operator:dev"
REAL_NODE = "modelroll-node"
N_FEATURES = 6


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class ModelStore:
    """Files served over HTTP on the host address Pods can reach (``host-ip``); what a bucket
    is to a real cluster. ``put`` returns the URL and digest a ModelDeployment names."""

    def __init__(self, root: Path, host_ip: str) -> None:
        self.root = root
        self.server = http.server.ThreadingHTTPServer((host_ip, 0), partial(_QuietHandler, directory=str(root)))
        self.base = f"http://{host_ip}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, name: str, data: bytes) -> tuple[str, str]:
        (self.root / name).write_bytes(data)
        return f"{self.base}/{name}", digest_of(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class TrainedModel:
    estimator: Any
    data: bytes  # the joblib file's bytes


def train_models(workdir: Path) -> tuple[np.ndarray, dict[str, TrainedModel]]:
    """Two different classifiers on the same data (v1, v2) and the rows to ask them about."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=N_FEATURES, n_informative=4, n_classes=3, random_state=1)
    estimators = {
        "v1": LogisticRegression(max_iter=500).fit(X, y),
        "v2": RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X, y),
    }
    models = {}
    for version, est in estimators.items():
        path = workdir / f"{version}.joblib"
        joblib.dump(est, path)
        models[version] = TrainedModel(est, path.read_bytes())
    return X[:20], models


def real_manifest(name: str, uri: str, digest: str, version: str, replicas: int = 2, **spec: Any) -> str:
    """A ModelDeployment with no placement: its Pods go to the real node."""
    body = {
        "apiVersion": "modelroll.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri, "digest": digest, "version": version, "method": "predict_proba"},
            "replicas": replicas,
            **spec,
        },
    }
    return yaml.safe_dump(body)


def cluster_ip(kubectl: Kubectl, namespace: str, service: str) -> str:
    return str(get_json(kubectl, "service", service, "-n", namespace)["spec"]["clusterIP"])


def infer_body(rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def post_infer(address: str, name: str, rows: np.ndarray, request_id: str | None = None) -> requests.Response:
    """One V2 inference request on a fresh connection (kube-proxy picks an endpoint per connection)."""
    return requests.post(
        f"http://{address}/v2/models/{name}/infer",
        json=infer_body(rows, request_id),
        headers={"Connection": "close"},
        timeout=10,
    )


def infer(address: str, name: str, rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    """One V2 inference that must succeed; its answer."""
    resp = post_infer(address, name, rows, request_id)
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


@dataclass
class ServiceLoad:
    """Requests to a Service's ClusterIP from the host, ``rate`` a second in total from
    ``threads`` threads, each on a fresh connection (kube-proxy picks an endpoint per
    connection, so the split follows the ready Pods). Records every status code, which model
    version answered, and a line for each request not answered 200. Bounded: it ends by itself
    after ``max_seconds``."""

    address: str
    name: str
    rows: np.ndarray
    rate: float
    threads: int = 4
    max_seconds: float = 300.0
    codes: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ServiceLoad:
        n = max(1, min(self.threads, int(self.rate) or 1))
        for k in range(n):
            worker = threading.Thread(target=self._run, args=(k, n), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, k: int, n: int) -> None:
        period = n / self.rate
        deadline = time.monotonic() + self.max_seconds
        due = time.monotonic() + period * k / n  # threads spread evenly over one period
        i = k
        while not self._stop.wait(max(due - time.monotonic(), 0.0)) and time.monotonic() < deadline:
            due = max(due + period, time.monotonic())  # fallen behind: carry on, no burst
            row = self.rows[i % len(self.rows)][None, :]
            i += n
            code, version, failure = self._one(row)
            with self._lock:
                self.codes[code] += 1
                if version:
                    self.versions[version] += 1
                if failure:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {failure}")

    @property
    def ok(self) -> int:
        return self.codes[200]

    def _one(self, row: np.ndarray) -> tuple[int, str | None, str | None]:
        try:
            resp = post_infer(self.address, self.name, row)
            if resp.status_code != 200:
                return resp.status_code, None, f"{resp.status_code}: {resp.text[:200]}"
            return 200, resp.json()["model_version"], None
        except (requests.RequestException, ValueError, KeyError) as e:
            return 0, None, f"{type(e).__name__}: {e}"  # no (readable) answer: code 0

    def stop(self) -> ServiceLoad:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)
        return self


def ready_endpoint_ips(kubectl: Kubectl, namespace: str, service: str) -> set[str]:
    """The addresses the control plane says the Service routes to (its ready endpoints)."""
    return {address for ep in ready_endpoints(kubectl, namespace, service) for address in ep.get("addresses", [])}


def proxied_ips(namespace: str, service: str) -> set[str]:
    """The Pod addresses kube-proxy's rules on this node send the Service's traffic to (it
    comments each endpoint rule "NS/NAME:PORT -> IP:PORT")."""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    marker = f'--comment "{namespace}/{service}:http -> '
    return {
        line.split(marker, 1)[1].split(":", 1)[0]
        for line in rules.splitlines()
        if line.startswith("-A KUBE-SVC-") and marker in line and "-j KUBE-SEP-" in line
    }


def wait_until_proxied(kubectl: Kubectl, namespace: str, service: str, timeout: float = 60) -> set[str]:
    """Wait until the data plane routes the Service to exactly its ready endpoints. kube-proxy
    programs a change a moment after the EndpointSlice has it, as on any cluster; a client
    measuring a split (or calling a brand-new Service) waits for that, not just for status."""

    def in_sync() -> set[str] | None:
        want = ready_endpoint_ips(kubectl, namespace, service)
        return want if want and proxied_ips(namespace, service) == want else None

    return wait_for(
        in_sync,
        timeout=timeout,
        message=lambda: (
            f"kube-proxy rules of {namespace}/{service} "
            f"{sorted(proxied_ips(namespace, service))} = ready endpoints "
            f"{sorted(ready_endpoint_ips(kubectl, namespace, service))}"
        ),
    )
