"""Safe loading: the digest is checked before unpickling, skops loads only trusted types,
version drift is reported, and readiness waits for the model."""

from __future__ import annotations

import pickle
import socket
import subprocess
from unittest import mock

import joblib
import modelroll_test_models as tm
import pytest
import requests
from conftest import running_server, sha256_of, spawn_server, wait_until
from modelroll_contract import EXIT_INTEGRITY_MISMATCH, EXIT_MODEL_LOAD_FAILED

pytestmark = pytest.mark.server


def _exits(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    return proc.wait(timeout=timeout)


def test_marker_pickle_really_runs_code_when_loaded(tmp_path):
    marker = tmp_path / "marker-control"
    pickle.loads(pickle.dumps(tm.Marker(str(marker))))
    assert marker.exists()  # so its absence below proves the other pickle was never loaded


def test_wrong_digest_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(tm.Marker(str(marker))))
    wrong = "sha256:" + "0" * 64
    proc, port, log = spawn_server(tmp_path, ["--model", str(evil), "--name", "m", "--digest", wrong])
    assert _exits(proc) == EXIT_INTEGRITY_MISMATCH
    assert not marker.exists()
    reason = (tmp_path / f"termination-{port}.log").read_text()
    assert reason.startswith("IntegrityMismatch: digest mismatch") and "refusing to load" in reason
    assert wrong.split(":")[1] in reason


def test_right_digest_loads(models, tmp_path):
    with running_server(tmp_path, models.paths["rf"], "rf",
                        ["--digest", sha256_of(models.paths["rf"])]) as s:  # fmt: skip
        assert s.get("/v2/models/rf").json()["parameters"]["sha256"] == sha256_of(models.paths["rf"])[7:]


def test_skops_refuses_untrusted_types(models, tmp_path):
    proc, port, _ = spawn_server(tmp_path, ["--model", str(models.paths["rf_skops"]), "--name", "rf"])
    assert _exits(proc) == EXIT_MODEL_LOAD_FAILED
    reason = (tmp_path / f"termination-{port}.log").read_text()
    assert reason.startswith("ModelLoadFailed: ") and "not trusted" in reason and "sklearn.tree._tree.Tree" in reason


def test_skops_loads_types_the_operator_trusts(models, tmp_path):
    with running_server(tmp_path, models.paths["rf_skops"], "rf",
                        env={"MODELROLL_SERVER_TRUSTED_TYPES": "sklearn.tree._tree.Tree"}) as s:  # fmt: skip
        rows = models.X[:3]
        assert s.infer(rows).json()["outputs"][0]["data"] == models.rf.predict(rows).tolist()


def test_scikit_learn_version_drift_is_reported(models, tmp_path):
    path = tmp_path / "old.joblib"
    with mock.patch("sklearn.base.__version__", "1.0.2"):
        joblib.dump(models.lr, path)
    with running_server(tmp_path, path, "old") as s:
        params = s.get("/v2/models/old").json()["parameters"]
        assert params["trained_sklearn_version"] == "1.0.2"
        assert any("trained with scikit-learn 1.0.2" in w for w in params["warnings"])
        assert "trained with scikit-learn 1.0.2" in s.output()


def test_no_connection_is_taken_until_the_model_is_loaded(models, tmp_path):
    """A client is refused at once while the model loads (the Pod's startupProbe waits), and
    the first answer the server gives is already ready: no worker ever answers 503 for loading."""
    proc, port, _ = spawn_server(
        tmp_path, ["--model", str(models.paths["slow_to_load"]), "--name", "slow"],
        env={"MODELROLL_TEST_LOAD_DELAY": "2"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    refused = 0
    try:

        def answered() -> bool:
            nonlocal refused
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except ConnectionRefusedError:
                refused += 1
                return False

        wait_until(answered, interval=0.02, what="the server to listen")
        assert refused > 0, "the server listened before its model was loaded"
        assert requests.get(url + "/v2/health/ready", timeout=5).status_code == 200
        assert requests.get(url + "/v2/models/slow/ready", timeout=5).json() == {"name": "slow", "ready": True}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_missing_file_and_bad_config_fail_fast(tmp_path):
    proc, port, _ = spawn_server(tmp_path, ["--model", str(tmp_path / "none.joblib"), "--name", "m"])
    assert _exits(proc) == EXIT_MODEL_LOAD_FAILED
    assert "cannot read model file" in (tmp_path / f"termination-{port}.log").read_text()
    proc, _, log = spawn_server(tmp_path, ["--model", "x.joblib", "--name", "m", "--track", "blue"])
    assert _exits(proc) == 2
    assert "--track (MODELROLL_SERVER_TRACK)" in log.read_text()


@pytest.mark.parametrize("which", ["--port", "--grpc-port"])
def test_a_taken_port_is_a_configuration_error_naming_the_flag(models, tmp_path, which):
    """Not a traceback, and not a worker forked again and again (gRPC binds in each worker)."""
    from conftest import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), which: str(busy)}
        args = [
            "--model",
            str(models.paths["lr"]),
            "--name",
            "m",
            "--workers",
            "2",
            "--grpc-port",
            ports["--grpc-port"],
        ]
        proc, _, log = spawn_server(tmp_path, args, port=int(ports["--port"]))
        assert _exits(proc) == 2
    assert f"{which} (MODELROLL_SERVER_{which[2:].upper().replace('-', '_')})" in log.read_text()


def test_configured_entirely_from_env(models, tmp_path):
    from conftest import free_port

    port = free_port()
    env = {
        "MODELROLL_SERVER_MODEL": str(models.paths["lr"]),
        "MODELROLL_SERVER_NAME": "fromenv",
        "MODELROLL_SERVER_VERSION": "v9",
        "MODELROLL_SERVER_TRACK": "canary",
        "MODELROLL_SERVER_PORT": str(port),
        "MODELROLL_SERVER_HOST": "127.0.0.1",
        "MODELROLL_SERVER_METHOD": "predict_proba",
        "MODELROLL_SERVER_DIGEST": sha256_of(models.paths["lr"]),
        "MODELROLL_SERVER_FORMAT": "joblib",
        "MODELROLL_SERVER_MAX_BATCH_SIZE": "8",
        "MODELROLL_SERVER_MAX_BATCH_WAIT_MS": "1",
        "MODELROLL_SERVER_TERMINATION_LOG": str(tmp_path / "tl"),
    }
    import sys

    from conftest import server_env, stop

    proc = subprocess.Popen([sys.executable, "-m", "modelroll_server.cli", "serve"],
                            env=server_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None
            try:
                return requests.get(url + "/v2/health/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, what="readiness")
        meta = requests.get(url + "/v2/models/fromenv/versions/v9", timeout=5).json()
        assert meta["parameters"]["track"] == "canary" and meta["parameters"]["method"] == "predict_proba"
    finally:
        stop(proc)
