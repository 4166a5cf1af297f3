"""Real parts for the analysis end-to-end tests: a Prometheus process, inference servers on
loopback playing the stable and canary tracks, and a bounded traffic generator (I/O).

Prometheus is Debian's package (`make host-packages`); each test runs its own on a
free loopback port with a temporary config and data directory, scraping every second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
import yaml

from tests.helpers import free_port, stop_process, wait_for

SCRAPE_SECONDS = 1


class Prometheus:
    """A Prometheus scraping ``targets`` every second; stop() and start() keep port and data."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
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
                    "scrape_configs": [{"job_name": "modelroll-server", "static_configs": [{"targets": targets}]}],
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

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]


@dataclass
class ModelServer:
    proc: subprocess.Popen[bytes]
    port: int
    name: str
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_server(workdir: Path, model: Path, name: str, version: str, track: str) -> ModelServer:
    """``modelroll-server serve`` on loopback, labelling its metrics with name/version/track."""
    port = free_port()
    log = workdir / f"server-{track}-{version}-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelroll_server.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model",
                str(model),
                "--name",
                name,
                "--version",
                version,
                "--track",
                track,
                "--termination-log",
                str(workdir / f"termination-{port}.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ModelServer(proc, port, name, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        return requests.get(f"http://{server.target}/v2/health/ready", timeout=1).status_code == 200

    wait_for(ready, timeout=60, message=f"{track} server ready")
    return server


def stop_server(server: ModelServer) -> None:
    stop_process(server.proc)


@dataclass
class Traffic:
    """Sends the same rows to every server, ``rate`` rounds a second, until stopped or
    ``max_seconds`` pass (bounded: it always ends by itself)."""

    servers: list[ModelServer]
    rows: np.ndarray
    rate: float
    max_seconds: float = 240.0
    sent: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        sessions = [requests.Session() for _ in self.servers]
        deadline = time.monotonic() + self.max_seconds
        period = 1.0 / self.rate
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            row = self.rows[i % len(self.rows)]
            i += 1
            body = {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row.tolist()}]}
            for session, server in zip(sessions, self.servers, strict=True):
                try:
                    code = session.post(
                        f"http://{server.target}/v2/models/{server.name}/infer", json=body, timeout=5
                    ).status_code
                except requests.RequestException:
                    code = 0
                self.codes[code] = self.codes.get(code, 0) + 1
            self.sent += 1
            self._stop.wait(max(period - (time.monotonic() - started), 0.0))  # pacing, not settling
        for session in sessions:
            session.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="modelroll-analysis-"))
