"""Real parts for the analysis end-to-end tests: a Prometheus process that discovers the model
Pods from the Kubernetes API, and a bounded traffic generator calling a Service (I/O).

Prometheus is Debian's package (`make host-packages`); each test runs its own on a free
loopback port with a temporary config and data directory. Its one scrape job is
docs/prometheus-scrape-config.yaml, the documented equivalent of the chart's PodMonitor, with
its relabelling and everything else as written, save where the targets come from: Debian
builds Prometheus WITHOUT Kubernetes service discovery (its packaging dropped the client
library's dependencies; `kubernetes_sd_configs` is an unknown field to it). So the job's
``kubernetes_sd_configs`` (role pod) is replaced by ``http_sd_configs`` pointing at
``PodDiscovery``: a loopback endpoint that lists the namespace's Pods from the API server at
every refresh (each second) and answers with the targets and ``__meta_kubernetes_*`` labels
Prometheus' own role-pod discovery makes of them (discovery/kubernetes/pod.go). The Pods,
their IPs, ports and labels are the cluster's; only the translation is the test's.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml

from tests.e2e.real_node import infer_body
from tests.helpers import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "docs" / "prometheus-scrape-config.yaml"
SCRAPE_SECONDS = 1


def pod_scrape_job(discovery: PodDiscovery, interval_seconds: int = SCRAPE_SECONDS) -> dict[str, Any]:
    """The documented scrape job (docs/prometheus-scrape-config.yaml), scraping every
    ``interval_seconds``, its role-pod Kubernetes discovery replaced by ``discovery``'s (see
    the module docstring for why)."""
    (job,) = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    job = copy.deepcopy(job)
    (sd,) = job.pop("kubernetes_sd_configs")
    assert sd == {"role": "pod"}, f"PodDiscovery stands in for role pod over one namespace's Pods, not for {sd}"
    job["http_sd_configs"] = [{"url": discovery.url, "refresh_interval": f"{interval_seconds}s"}]
    job["scrape_interval"] = job["scrape_timeout"] = f"{interval_seconds}s"
    return dict(job)


def _sanitize(name: str) -> str:
    """Prometheus' strutil.SanitizeLabelName."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_target_groups(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """What Prometheus' Kubernetes discovery (role pod) makes of one Pod, in http_sd's format:
    nothing until it has an IP, then one target per container port (a container without ports
    is one target at the bare Pod IP), with the Pod's and the container's meta labels."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    ip = status.get("podIP")
    if not ip:
        return []
    ready = next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready"), "Unknown")
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_ready": ready.lower(),
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
    }
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner:
        labels["__meta_kubernetes_pod_controller_kind"] = owner["kind"]
        labels["__meta_kubernetes_pod_controller_name"] = owner["name"]
    for prefix, values in (("label", meta.get("labels")), ("annotation", meta.get("annotations"))):
        for k, v in (values or {}).items():
            labels[f"__meta_kubernetes_pod_{prefix}_{_sanitize(k)}"] = v
            labels[f"__meta_kubernetes_pod_{prefix}present_{_sanitize(k)}"] = "true"
    groups = []
    containers = [(c, "false") for c in spec.get("containers", [])]
    containers += [(c, "true") for c in spec.get("initContainers") or []]
    for c, init in containers:
        base = {
            **labels,
            "__meta_kubernetes_pod_container_name": c["name"],
            "__meta_kubernetes_pod_container_image": c.get("image", ""),
            "__meta_kubernetes_pod_container_init": init,
        }
        if not c.get("ports"):
            groups.append({"targets": [ip], "labels": base})
        for port in c.get("ports") or []:
            number = str(port["containerPort"])
            port_labels = {
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": number,
                "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
            }
            groups.append({"targets": [f"{ip}:{number}"], "labels": base | port_labels})
    return groups


class PodDiscovery:
    """An http_sd endpoint on loopback: the Pods of one namespace, read from the API server of
    ``kubeconfig`` (its current context; certificates written to ``workdir``) at every request,
    as Prometheus' role-pod Kubernetes discovery would present them."""

    def __init__(self, kubeconfig: Path, namespace: str, workdir: Path) -> None:
        self.api, self.auth = _api_client(kubeconfig, workdir)
        self.namespace = namespace
        self.requests = 0
        discovery = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the base class's naming
                try:
                    body, code = json.dumps(discovery.target_groups()).encode(), 200
                except (requests.RequestException, ValueError, KeyError) as e:
                    body, code = str(e).encode(), 503  # Prometheus keeps the last good answer
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def target_groups(self) -> list[dict[str, Any]]:
        self.requests += 1
        resp = self.auth.get(f"{self.api}/api/v1/namespaces/{self.namespace}/pods", timeout=5)
        resp.raise_for_status()
        return [group for pod in resp.json()["items"] for group in pod_target_groups(pod)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.auth.close()


def _api_client(kubeconfig: Path, workdir: Path) -> tuple[str, requests.Session]:
    """The API server URL of the kubeconfig's current context and a session authenticated as its
    user (client certificate or token); inline certificates are written to ``workdir``."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def file_of(entry: dict[str, Any], key: str, name: str) -> str | None:
        if entry.get(f"{key}-data"):
            path = workdir / name
            path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        if entry.get(key):
            return str((kubeconfig.parent / entry[key]).resolve())
        return None

    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides `verify`
    ca = file_of(cluster, "certificate-authority", "ca.crt")
    session.verify = ca if ca else not cluster.get("insecure-skip-tls-verify", False)
    cert, key = file_of(user, "client-certificate", "client.crt"), file_of(user, "client-key", "client.key")
    if cert and key:
        session.cert = (cert, key)
    elif user.get("token"):
        session.headers["Authorization"] = f"Bearer {user['token']}"
    else:
        raise AssertionError(f"{kubeconfig}: PodDiscovery needs a client certificate or a token for its user")
    return str(cluster["server"]).rstrip("/"), session


class Prometheus:
    """A Prometheus running ``scrape_configs``; stop() and start() keep its port and data."""

    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]]) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            raise AssertionError("prometheus is not on PATH: run `make host-packages` (make test does)")
        self.exe = exe
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": f"{SCRAPE_SECONDS}s",
                        "scrape_timeout": f"{SCRAPE_SECONDS}s",
                        "evaluation_interval": "15s",
                    },
                    "scrape_configs": scrape_configs,
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                self.exe,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for(self._ready, timeout=30, message=lambda: f"Prometheus ready; log:\n{self.log()[-2000:]}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()[-2000:]}")
        return urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        path = self.dir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=promql)["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        """The targets service discovery found and relabelling kept, with their labels and health."""
        targets: list[dict[str, Any]] = self._get("/api/v1/targets", state="active")["activeTargets"]
        return targets


@dataclass
class ServiceLoad:
    """Requests to a Service's ClusterIP from the host, ``rate`` a second in total from
    ``threads`` threads, each on a fresh connection (kube-proxy picks an endpoint per
    connection, so the split follows the ready Pods). Records every status code and which
    model version answered. Bounded: it ends by itself after ``max_seconds``."""

    address: str
    name: str
    rows: np.ndarray
    rate: float
    threads: int = 4
    max_seconds: float = 300.0
    codes: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
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
            code, version = self._one(row)
            with self._lock:
                self.codes[code] += 1
                if version:
                    self.versions[version] += 1

    def _one(self, row: np.ndarray) -> tuple[int, str | None]:
        try:
            resp = requests.post(
                f"http://{self.address}/v2/models/{self.name}/infer",
                json=infer_body(row),
                headers={"Connection": "close"},
                timeout=10,
            )
            version = resp.json().get("model_version") if resp.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return 0, None  # no (readable) answer: counted under code 0
        return resp.status_code, version

    def stop(self) -> ServiceLoad:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)
        return self
