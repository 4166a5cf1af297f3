"""Real parts for the analysis end-to-end tests: a Prometheus process that discovers the model
Pods from the Kubernetes API (I/O). Traffic through a Service is tests/e2e/real_node.py's
ServiceLoad, shared with the real-node tests.

Prometheus is upstream's, built from its Go module with Kubernetes service discovery compiled
in by tests/cluster/build-tools.sh (`make cluster-tools`), never Debian's package: Debian
builds it without Kubernetes discovery (``kubernetes_sd_configs`` is an unknown field to it).
Each test runs its own on a free loopback port with a temporary config and data directory.
Its one scrape job is docs/prometheus-scrape-config.yaml as written, the documented
equivalent of the chart's PodMonitor, role-pod discovery and relabelling included, with only
what a Prometheus outside the cluster needs added to its ``kubernetes_sd_configs`` entry: the
test cluster's kubeconfig and the test's namespaces; and it scrapes every second, not every
15 s. Discovery watches the API server, so Pods show up (and go) as they change.
"""

from __future__ import annotations

import copy
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import launcher  # tests/cluster, on sys.path via tests/conftest.py
import yaml

from tests.helpers import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "docs" / "prometheus-scrape-config.yaml"
SCRAPE_SECONDS = 1


def prometheus_binary() -> Path:
    """Upstream Prometheus with Kubernetes discovery, as tests/cluster/build-tools.sh builds it."""
    exe = launcher.bin_dir() / "prometheus"
    if not exe.is_file():
        raise AssertionError(
            f"{exe} is missing: run `make cluster-tools` (tests/cluster/build-tools.sh builds Prometheus "
            "with Kubernetes service discovery; Debian's package has none)"
        )
    return exe


def pod_scrape_job(kubeconfig: Path, *namespaces: str, interval_seconds: int = SCRAPE_SECONDS) -> dict[str, Any]:
    """The documented scrape job (docs/prometheus-scrape-config.yaml) as written, scraping every
    ``interval_seconds``, its role-pod discovery given what a Prometheus outside the cluster
    needs: the API server and credentials of ``kubeconfig`` (its current context), and only
    the Pods of ``namespaces``."""
    (job,) = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    job = copy.deepcopy(job)
    (sd,) = job["kubernetes_sd_configs"]
    assert sd == {"role": "pod"}, f"the documented job's discovery changed: {sd}"
    sd["kubeconfig_file"] = str(kubeconfig.resolve())
    sd["namespaces"] = {"names": list(namespaces)}
    job["scrape_interval"] = job["scrape_timeout"] = f"{interval_seconds}s"
    return dict(job)


class Prometheus:
    """A Prometheus running ``scrape_configs``; stop() and start() keep its port and data."""

    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]]) -> None:
        self.exe = prometheus_binary()
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
                    # Prometheus 3 deprecates the --log.level and --storage.tsdb.retention.* flags
                    "runtime": {"log_level": "warn"},
                    "storage": {"tsdb": {"retention": {"time": "1h"}}},
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


def joblib_files(built: dict[str, object], out: Path) -> dict[str, bytes]:
    """Each model joblib-dumped under ``out``, by name: the bytes the tests serve to the Pods."""
    import joblib

    files = {}
    for name, model in built.items():
        path = out / f"{name}.joblib"
        joblib.dump(model, path)
        files[name] = path.read_bytes()
    return files
