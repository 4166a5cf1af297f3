"""Fixtures for the server tier: small real models trained once per session, and a helper
that runs ``modelroll-server serve`` as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import modelroll_test_models as tm  # noqa: E402

from tests.helpers import free_port  # noqa: E402
from tests.helpers import stop_process as stop  # noqa: E402

N_FEATURES = 20


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Models:
    dir: Path
    X: np.ndarray
    lr: object
    rf: object
    paths: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("models")
    X, y = make_classification(n_samples=400, n_features=N_FEATURES, n_informative=8, n_classes=3, random_state=0)
    lr = LogisticRegression(max_iter=300).fit(X, y)
    rf = RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0).fit(X, y)
    hgb = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    m = Models(dir=d, X=X, lr=lr, rf=rf)
    m.paths["lr"] = d / "lr.joblib"
    joblib.dump(lr, m.paths["lr"])
    m.paths["rf"] = d / "rf.joblib"
    joblib.dump(rf, m.paths["rf"])
    m.paths["hgb"] = d / "hgb.joblib"
    joblib.dump(hgb, m.paths["hgb"])
    m.paths["lr_pickle"] = d / "lr.pkl"
    m.paths["lr_pickle"].write_bytes(pickle.dumps(lr))
    import skops.io as sio

    m.paths["lr_skops"] = d / "lr.skops"
    sio.dump(lr, m.paths["lr_skops"])
    m.paths["rf_skops"] = d / "rf.skops"
    sio.dump(rf, m.paths["rf_skops"])
    m.paths["faulty"] = d / "faulty.joblib"
    joblib.dump(tm.FaultyModel().fit(X, y), m.paths["faulty"])
    m.paths["slow"] = d / "slow.joblib"
    joblib.dump(tm.SlowModel().fit(X, y), m.paths["slow"])
    m.paths["contrarian"] = d / "contrarian.joblib"
    joblib.dump(tm.Contrarian().fit(X, y), m.paths["contrarian"])
    m.paths["slow_to_load"] = d / "slow_to_load.pkl"
    m.paths["slow_to_load"].write_bytes(pickle.dumps(tm.SlowToLoad().fit(X, y)))
    return m


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, name: str, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.name = name
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    def get(self, path: str, **kw: object) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> requests.Response:
        return self.http.post(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]

    def infer(self, rows: np.ndarray, **extra: object) -> requests.Response:
        rows = np.asarray(rows, dtype=float)
        body = {
            "inputs": [
                {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
            ],  # fmt: skip
            **extra,
        }
        return self.post(f"/v2/models/{self.name}/infer", json=body)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.get("/metrics").text)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, labels as written (sorted order is the server's)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELROLL_SERVER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    # no gRPC unless a test asks (--grpc-port): the default port is one for every server
    env["MODELROLL_SERVER_GRPC_PORT"] = "0"
    env.update(extra or {})
    return env


def spawn_server(
    tmp: Path, args: list[str], env: dict[str, str] | None = None, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = port or free_port()
    log = tmp / f"server-{port}.log"
    cmd = [sys.executable, "-m", "modelroll_server.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--termination-log", str(tmp / f"termination-{port}.log"), *args]  # fmt: skip
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=server_env(env))
    return proc, port, log


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@contextlib.contextmanager
def running_server(
    tmp: Path, model: Path, name: str = "m", args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:  # fmt: skip
    proc, port, log = spawn_server(tmp, ["--model", str(model), "--name", name, *(args or [])], env)
    srv = Server(proc, port, name, log)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{srv.output()}")
            try:
                return srv.http.get(srv.url + "/v2/health/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, what="the server to become ready")
        yield srv
    finally:
        srv.http.close()
        stop(proc)


@pytest.fixture(scope="session")
def lr_server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("lr"), models.paths["lr"], "lr",
        ["--version", "v7", "--digest", sha256_of(models.paths["lr"])],
    ) as srv:  # fmt: skip
        yield srv
