"""Paired shadow comparison (shadow.py): a stable server copies a share of its requests to a
canary server over gRPC and counts, row by row, whether the canary agrees. Real servers with
real scikit-learn models on loopback; the target comes from a file changed while they run."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import joblib
import modelroll_test_models as tm
import numpy as np
import pytest
from conftest import Models, Server, running_server, wait_until
from modelroll_server.shadow import ShadowConfigError, ShadowTarget, parse_config

from tests.helpers import free_port

pytestmark = pytest.mark.server


def shadow_counts(srv: Server, version: str) -> dict[str, float]:
    """This server's shadow series for canary ``version``: outcome and result -> count."""
    out: dict[str, float] = {}
    for key, value in srv.metrics().items():
        if not key.startswith("modelroll_shadow_") or f'canary_version="{version}"' not in key:
            continue
        found = re.search(r'(outcome|result)="(\w+)"', key)
        if found:
            out[found.group(2)] = value
        elif key.startswith("modelroll_shadow_pending_requests"):
            out["pending"] = value
        elif key.startswith("modelroll_shadow_abs_difference_sum"):
            out["abs_sum"] = value
        elif key.startswith("modelroll_shadow_abs_difference_count"):
            out["abs_count"] = value
    return out


def write_config(path: Path, target: str, percent: float, version: str) -> None:
    tmp = path.with_suffix(".tmp")  # replaced at once, as the kubelet swaps a ConfigMap's files
    tmp.write_text(json.dumps({"target": target, "percent": percent, "version": version}))
    tmp.replace(path)


@pytest.fixture(scope="module")
def flip_model(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flip") / "flip.joblib"
    joblib.dump(tm.RegionFlip(models.lr, above=1.0).fit(models.X, None), path)
    return path


@pytest.fixture(scope="module")
def canaries(models: Models, flip_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two canaries on gRPC: the same LogisticRegression, and one that flips a region."""
    tmp = tmp_path_factory.mktemp("canaries")
    same_port, flip_port = free_port(), free_port()
    with (
        running_server(tmp, models.paths["lr"], "lr", ["--track", "canary", "--grpc-port", str(same_port)]),
        running_server(tmp, flip_model, "lr", ["--track", "canary", "--grpc-port", str(flip_port)]),
    ):
        yield {"same": f"127.0.0.1:{same_port}", "flip": f"127.0.0.1:{flip_port}"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "shadow.json"


@contextlib.contextmanager
def stable(tmp: Path, models: Models, config: Path, *args: str) -> Iterator[Server]:
    """The stable track's server: LogisticRegression, shadowing as ``config`` says."""
    with running_server(tmp, models.paths["lr"], "lr", ["--shadow-config", str(config), *args]) as srv:
        yield srv


def send(srv: Server, rows: np.ndarray, per_request: int = 1) -> np.ndarray:
    """Answers to ``rows`` sent ``per_request`` at a time, each checked to be 200."""
    labels = []
    for i in range(0, len(rows), per_request):
        r = srv.infer(rows[i : i + per_request])
        assert r.status_code == 200, r.text
        labels += r.json()["outputs"][0]["data"]
    return np.array(labels)


def test_an_equivalent_canary_agrees_on_every_row(models, canaries, config, tmp_path):
    write_config(config, canaries["same"], 100, "v8")
    with stable(tmp_path, models, config) as srv:
        rows = models.X[:60]
        answers = send(srv, rows, per_request=3)
        assert (answers == models.lr.predict(rows)).all()  # our clients got our own model's answers
        wait_until(lambda: shadow_counts(srv, "v8").get("compared") == 20, what="20 compared requests")
        counts = shadow_counts(srv, "v8")
        assert counts == {"compared": 20, "dropped": 0, "failed": 0, "pending": 0, "agree": 60, "disagree": 0}


def test_a_canary_wrong_on_a_region_is_counted_row_by_row(models, canaries, config, tmp_path):
    write_config(config, canaries["flip"], 100, "v9")
    rows = models.X[:200]
    expected_disagree = int((rows[:, 0] > 1.0).sum())
    assert 0 < expected_disagree < len(rows)
    with stable(tmp_path, models, config, "--workers", "2") as srv:
        answers = send(srv, rows, per_request=4)
        assert (answers == models.lr.predict(rows)).all()  # the canary's answers never reach clients
        wait_until(lambda: shadow_counts(srv, "v9").get("compared") == 50, what="50 compared requests")
        counts = shadow_counts(srv, "v9")  # summed over both workers
        assert counts["agree"] == len(rows) - expected_disagree
        assert counts["disagree"] == expected_disagree


def test_only_the_configured_share_is_copied(models, canaries, config, tmp_path):
    write_config(config, canaries["same"], 10, "v8")
    with stable(tmp_path, models, config) as srv:
        send(srv, models.X[:400])  # each copy is queued before its request's answer is sent
        wait_until(lambda: shadow_counts(srv, "v8")["pending"] == 0, what="no copy pending")
        counts = shadow_counts(srv, "v8")
        assert 16 <= counts["compared"] <= 64  # binomial(400, 0.1): mean 40, sd 6; 4 sd either side
        assert counts["dropped"] == counts["failed"] == 0


def test_the_target_changes_at_run_time_without_a_restart(models, canaries, config, tmp_path):
    with stable(tmp_path, models, config) as srv:
        pid = srv.proc.pid
        send(srv, models.X[:5])
        assert not [k for k in srv.metrics() if k.startswith("modelroll_shadow_")]  # no file: no shadowing
        write_config(config, canaries["same"], 100, "v8")

        def copies(version: str, n: int) -> bool:
            send(srv, models.X[:1])
            return shadow_counts(srv, version).get("compared", 0) >= n

        wait_until(lambda: copies("v8", 3), timeout=15, what="shadowing to start")
        write_config(config, canaries["flip"], 100, "v9")  # another canary: counted afresh
        wait_until(lambda: copies("v9", 3), timeout=15, what="shadowing to move to v9")
        assert not any("v8" in k for k in srv.metrics())
        config.unlink()
        wait_until(lambda: not [k for k in srv.metrics() if k.startswith("modelroll_shadow_")], timeout=15,
                   what="shadowing to stop")  # fmt: skip
        assert srv.proc.pid == pid and srv.proc.poll() is None


def test_an_unreachable_canary_is_counted_and_clients_never_notice(models, config, tmp_path):
    write_config(config, f"127.0.0.1:{free_port()}", 100, "v8")  # nothing listens there
    with stable(tmp_path, models, config) as srv:
        rows = models.X[:20]
        assert (send(srv, rows) == models.lr.predict(rows)).all()
        wait_until(lambda: shadow_counts(srv, "v8").get("failed") == 20, what="20 failed copies")
        assert shadow_counts(srv, "v8")["compared"] == 0
        codes = {k: v for k, v in srv.metrics().items() if k.startswith("modelroll_requests_total") and v}
        assert list(codes) == ['modelroll_requests_total{model_name="lr",model_version="1",track="stable",'
                               'protocol="v2",code="200"}']  # fmt: skip


def test_a_full_queue_drops_copies_instead_of_waiting(models, config, tmp_path):
    slow_port = free_port()
    with running_server(tmp_path, models.paths["slow"], "lr", ["--grpc-port", str(slow_port)]):
        write_config(config, f"127.0.0.1:{slow_port}", 100, "v8")
        # room for 8 rows of 20 features: the 8 senders each hold one copy for 0.25 s
        with stable(tmp_path, models, config, "--shadow-queue-bytes", str(8 * 20 * 8)) as srv:
            rows = models.X[:60]
            assert (send(srv, rows) == models.lr.predict(rows)).all()
            wait_until(lambda: sum(shadow_counts(srv, "v8").get(k, 0) for k in ("compared", "dropped", "failed"))
                       == 60, timeout=20, what="every copy accounted for")  # fmt: skip
            assert shadow_counts(srv, "v8")["dropped"] > 0


def test_a_regressor_exports_the_absolute_differences(tmp_path, config):
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression

    X, y = make_regression(n_samples=100, n_features=5, random_state=0)
    base = LinearRegression().fit(X, y)
    joblib.dump(base, tmp_path / "base.joblib")
    joblib.dump(tm.Offset(base, by=0.5).fit(X, y), tmp_path / "offset.joblib")
    port = free_port()
    with running_server(tmp_path, tmp_path / "offset.joblib", "reg", ["--grpc-port", str(port)]):
        write_config(config, f"127.0.0.1:{port}", 100, "v2")
        with running_server(tmp_path, tmp_path / "base.joblib", "reg", ["--shadow-config", str(config)]) as srv:
            send(srv, X[:30], per_request=5)
            wait_until(lambda: shadow_counts(srv, "v2").get("abs_count") == 30, what="30 compared rows")
            counts = shadow_counts(srv, "v2")
            assert counts["abs_sum"] == pytest.approx(15.0, rel=1e-9)  # 30 rows, each 0.5 apart
            assert "agree" not in counts


def test_a_bad_config_turns_shadowing_off_and_says_why(models, config, tmp_path):
    config.write_text('{"target": "nowhere", "percent": 100, "version": "v8"}')
    with stable(tmp_path, models, config) as srv:
        send(srv, models.X[:3])
        assert not [k for k in srv.metrics() if k.startswith("modelroll_shadow_")]
        assert "'target' must be the canary's gRPC address HOST:PORT" in srv.output()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", None),
        (b'{"target": "c.ns.svc:8081", "percent": 0, "version": "v2"}', None),
        (b'{"target": "c.ns.svc:8081", "percent": 20, "version": "v2"}', ShadowTarget("c.ns.svc:8081", 20.0, "v2")),
    ],
)
def test_config_files_that_are_accepted(raw, expected):
    assert parse_config(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"target": "c", "percent": 20, "version": "v2"}', "'target'"),
        (b'{"target": "c:1", "percent": 101, "version": "v2"}', "'percent'"),
        (b'{"target": "c:1", "percent": true, "version": "v2"}', "'percent'"),
        (b'{"target": "c:1", "percent": 5, "version": ""}', "'version'"),
        (b'{"target": "c:1", "percent": 5, "version": "' + b"v" * 64 + b'"}', "'version'"),
    ],
)
def test_config_files_that_are_refused_name_the_key(raw, message):
    with pytest.raises(ShadowConfigError, match=message):
        parse_config(raw)
