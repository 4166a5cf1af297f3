"""Input drift (drift.py) and the regressor's prediction histogram: real servers with real
scikit-learn models on loopback, given the model's reference statistics with --reference.
Every expected count is computed here from the rows sent, with the contract's own binning
rule (bisect), never with the server's code."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from conftest import N_FEATURES, Models, Server, running_server, sha256_of, spawn_server, wait_until
from modelroll_contract import EXIT_BAD_CONFIGURATION, EXIT_INTEGRITY_MISMATCH
from modelroll_contract import reference as contract
from modelroll_server.drift import MAX_FEATURES, WINDOW_ROWS, DriftLayout
from modelroll_server.metrics import PREDICTION_VALUE_BUCKETS

pytestmark = pytest.mark.server

WINDOW_SERIES = 'modelroll_drift_window_rows{model_name="lr",model_version="1",track="stable"}'
SERIES = re.compile(r'(\w+)\{.*?feature="([^"]*)"(?:,bin="([^"]*)")?\}')


def reference_for(model_path: Path, estimator: object, X: np.ndarray, bins: int = 10) -> contract.Reference:
    """Reference statistics of ``estimator`` (saved at ``model_path``) on rows ``X``, built
    with the contract's pure-Python histogram over decile edges."""
    features = []
    for i in range(X.shape[1]):
        col = X[:, i]
        finite = col[np.isfinite(col)]
        cuts = np.unique(np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf"))
        edges = [float(e) for e in cuts[cuts < finite.max()]]
        features.append(contract.Feature(f"f{i}", contract.histogram(edges, col.tolist())))
    pred = estimator.predict(np.nan_to_num(X) if np.isnan(X).any() else X)  # type: ignore[attr-defined]
    classes = getattr(estimator, "classes_", None)
    class_props = pred_hist = None
    if classes is not None:
        labels = tuple(str(c) for c in classes)
        class_props = tuple(float(np.mean(pred == c)) for c in classes)
    else:
        labels = None
        pred_hist = contract.histogram([float(np.median(pred))], pred.tolist())
    info = contract.ModelInfo(
        artifact=model_path.name,
        digest="sha256:" + hashlib.sha256(model_path.read_bytes()).hexdigest(),
        format="joblib",
        version=None,
        method="predict",
        estimator=f"{type(estimator).__module__}.{type(estimator).__name__}",
        task="classifier" if classes is not None else "regressor",
    )
    return contract.Reference("1", info, len(X), tuple(features), labels, class_props, pred_hist, None)


def write_reference(path: Path, ref: contract.Reference) -> Path:
    path.write_bytes(contract.dumps(ref))
    return path


def drift_series(srv: Server, rows: int | None = None) -> dict[str, dict[tuple[str, str | None], float]]:
    """metric -> (feature, bin) -> value, for the drift families; with ``rows``, once every
    worker has counted that many rows (rows are counted in bulk, within FLUSH_SECONDS)."""
    if rows is not None:
        wait_until(lambda: sum(drift_series(srv)["modelroll_feature_bin_total"].values()) >= rows * counted(srv),
                   timeout=10, what=f"{rows} rows counted")  # fmt: skip
    out: dict[str, dict[tuple[str, str | None], float]] = {}
    for key, value in srv.metrics().items():
        m = SERIES.match(key)
        if m and m.group(1).startswith("modelroll_feature_"):
            out.setdefault(m.group(1), {})[(m.group(2), m.group(3))] = value
    return out


def counted(srv: Server) -> int:
    """How many features the server counts (the series of one bin per feature)."""
    return len({f for f, _ in drift_series(srv)["modelroll_feature_bin_total"]})


def expected_bins(ref: contract.Reference, rows: np.ndarray) -> dict[tuple[str, str | None], float]:
    """(feature, bin label) -> rows in that bin, by the contract's bisect rule."""
    out: dict[tuple[str, str | None], float] = {}
    for i, f in enumerate(ref.features):
        edges = f.histogram.edges
        labels = [str(float(e)) for e in edges] + ["+Inf"]
        for label in labels:
            out[(f.name, label)] = 0.0
        for x in rows[:, i].tolist():
            if math.isnan(x):
                out[(f.name, "missing")] = out.get((f.name, "missing"), 0.0) + 1
            else:
                out[(f.name, labels[bisect.bisect_left(edges, x)])] += 1
    return out


def psi_of(srv: Server, rows: int) -> dict[str, float]:
    """The PSI gauges once ``rows`` rows in all were counted."""
    return {f: v for (f, _), v in drift_series(srv, rows).get("modelroll_feature_psi", {}).items()}


def send(srv: Server, rows: np.ndarray, size: int = 500) -> None:
    for start in range(0, len(rows), size):
        r = srv.infer(rows[start : start + size])
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def lr_reference(models: Models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, contract.Reference]:
    ref = reference_for(models.paths["lr"], models.lr, models.X)
    return write_reference(tmp_path_factory.mktemp("ref") / "reference.json", ref), ref


def edge_rows(ref: contract.Reference, rng: np.random.Generator) -> np.ndarray:
    """Rows whose values sit exactly on the edges (le: the bin below), beyond both ends, and between."""
    rows = []
    for k in range(11):
        row = []
        for f in ref.features:
            e = f.histogram.edges
            row.append(e[k] if k < len(e) else (e[-1] + 1e6 if k % 2 else e[0] - 1e6))
        rows.append(row)
    rows += rng.normal(0, 3, size=(40, N_FEATURES)).tolist()
    return np.asarray(rows)


def test_bin_counts_equal_the_rows_sent_and_reference_gauges_equal_the_file(models, lr_reference, tmp_path):
    path, ref = lr_reference
    rng = np.random.default_rng(1)
    # one row, a few rows, a batch binned by broadcasting, one binned per feature (> 364 rows)
    batches = [models.X[:1], edge_rows(ref, rng), models.X[5:12], rng.normal(0, 2, (300, N_FEATURES)),
               rng.normal(1, 2, (3000, N_FEATURES))]  # fmt: skip
    with running_server(tmp_path, models.paths["lr"], "lr", ["--reference", str(path)]) as srv:
        for rows in batches:
            r = srv.infer(rows)
            assert r.status_code == 200, r.text
        sent = np.concatenate(batches)
        got = drift_series(srv, len(sent))
    assert got["modelroll_feature_bin_total"] == expected_bins(ref, sent)
    assert got["modelroll_feature_reference_proportion"] == {
        (f.name, label): p
        for f in ref.features
        for label, p in zip([str(float(e)) for e in f.histogram.edges] + ["+Inf"], f.histogram.proportions, strict=True)
    }
    assert len(got["modelroll_feature_psi"]) == N_FEATURES


def test_sliding_psi_stays_near_zero_for_reference_like_rows_and_moves_with_shifted_ones(
    models, lr_reference, tmp_path
):
    path, ref = lr_reference
    rng = np.random.default_rng(2)
    like = models.X[rng.integers(0, len(models.X), 8000)]
    shifted = like + 2.0 * models.X.std(axis=0)
    with running_server(tmp_path, models.paths["lr"], "lr", ["--reference", str(path)]) as srv:
        assert psi_of(srv, 0) == {}  # no series before the first row
        send(srv, like)
        calm = psi_of(srv, 8000)
        assert srv.metrics()[WINDOW_SERIES] == 8000
        assert len(calm) == N_FEATURES and max(calm.values()) < 0.02, calm
        send(srv, shifted[:4000])  # half the window shifted
        half = psi_of(srv, 12000)
        assert min(half.values()) > 0.2, half
        send(srv, shifted)  # the whole window is shifted rows now
        drifted = psi_of(srv, 20000)
        assert min(drifted.values()) > 1.0 and all(drifted[f] > half[f] for f in drifted), drifted
        assert srv.metrics()[WINDOW_SERIES] == WINDOW_ROWS
        send(srv, like)
        send(srv, like[:2000])  # 10,000 reference-like rows: the shifted ones have all left the window
        back = psi_of(srv, 30000)
        assert max(back.values()) < 0.02, back


def test_several_workers_sum_their_counts(models, lr_reference, tmp_path):
    path, ref = lr_reference
    rng = np.random.default_rng(3)
    chunks = [rng.normal(0, 1.5, (int(n), N_FEATURES)) for n in rng.integers(1, 60, 80)]
    with running_server(tmp_path, models.paths["lr"], "lr", ["--reference", str(path), "--workers", "3"]) as srv:
        for rows in chunks:  # a fresh connection each: the kernel spreads them over the workers
            with requests.Session() as s:
                body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                                    "data": rows.ravel().tolist()}]}  # fmt: skip
                assert s.post(f"{srv.url}/v2/models/lr/infer", json=body, timeout=30).status_code == 200
        sent = np.concatenate(chunks)
        got = drift_series(srv, len(sent))
        window = srv.metrics()[WINDOW_SERIES]
    assert got["modelroll_feature_bin_total"] == expected_bins(ref, sent)
    assert window == len(sent)


def test_missing_values_have_their_own_bin(models, tmp_path):
    """HistGradientBoosting takes NaN: a NaN is counted in bin "missing", whose reference share
    is the file's ``missing``."""
    X = models.X.copy()
    X[::10, 0] = np.nan  # a tenth of feature 0 missing in the reference
    hgb = joblib.load(models.paths["hgb"])
    ref = reference_for(models.paths["hgb"], hgb, X)
    path = write_reference(tmp_path / "reference.json", ref)
    rows = models.X[:40].copy()
    rows[:7, 0] = np.nan
    rows[3:5, 4] = np.nan  # the reference saw none here, but the model takes NaN: its own bin
    with running_server(tmp_path, models.paths["hgb"], "hgb", ["--reference", str(path)]) as srv:
        body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}
        r = srv.post("/v2/models/hgb/infer", data=json.dumps(body).encode())  # NaN as JSON's common extension
        assert r.status_code == 200, r.text
        got = drift_series(srv, len(rows))
    expected = expected_bins(ref, rows)
    for f in ref.features:
        expected.setdefault((f.name, "missing"), 0.0)
    assert got["modelroll_feature_bin_total"] == expected
    assert got["modelroll_feature_bin_total"][("f0", "missing")] == 7
    assert got["modelroll_feature_reference_proportion"][("f0", "missing")] == ref.features[0].histogram.missing == 0.1
    assert got["modelroll_feature_reference_proportion"][("f4", "missing")] == 0.0


def test_regressor_prediction_histogram_and_drift(tmp_path):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 6))
    y = 3000.0 * X[:, 0] - 40.0 * X[:, 1] + 2.0  # values over several decades, both signs
    model = Ridge(alpha=1e-3).fit(X, y)
    mpath = tmp_path / "ridge.joblib"
    joblib.dump(model, mpath)
    ref = reference_for(mpath, model, X)
    path = write_reference(tmp_path / "reference.json", ref)
    rows = np.concatenate([rng.normal(size=(200, 6)), np.zeros((1, 6))])
    with running_server(tmp_path, mpath, "ridge", ["--reference", str(path)]) as srv:
        send(srv, rows, size=37)
        got = drift_series(srv, len(rows))
        metrics = srv.metrics()
    pred = model.predict(rows)
    base = 'model_name="ridge",model_version="1",track="stable"'
    cumulative = 0
    for le in PREDICTION_VALUE_BUCKETS:
        cumulative = int(np.sum(pred <= le))
        assert metrics[f'modelroll_prediction_value_bucket{{{base},le="{le}"}}'] == cumulative, le
    assert metrics[f'modelroll_prediction_value_bucket{{{base},le="+Inf"}}'] == len(pred)
    assert metrics[f"modelroll_prediction_value_count{{{base}}}"] == len(pred)
    assert metrics[f"modelroll_prediction_value_sum{{{base}}}"] == pytest.approx(pred.sum(), rel=1e-9)
    assert got["modelroll_feature_bin_total"] == expected_bins(ref, rows)
    assert not any(k.startswith("modelroll_predictions_total") for k in metrics)


def test_a_classifier_exports_no_prediction_value_histogram(lr_server):
    assert not any(k.startswith("modelroll_prediction_value") for k in lr_server.metrics())
    assert not any(k.startswith("modelroll_feature_") for k in lr_server.metrics())


def test_only_the_first_features_are_watched(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, MAX_FEATURES + 20))
    model = LogisticRegression(max_iter=200).fit(X, (X[:, 0] > 0).astype(int))
    mpath = tmp_path / "wide.joblib"
    joblib.dump(model, mpath)
    path = write_reference(tmp_path / "reference.json", reference_for(mpath, model, X))
    with running_server(tmp_path, mpath, "wide", ["--reference", str(path)]) as srv:
        assert srv.infer(X[:3]).status_code == 200
        got = drift_series(srv, 3)
        log = srv.output()
    watched = {f for f, _ in got["modelroll_feature_bin_total"]}
    assert watched == {f"f{i}" for i in range(MAX_FEATURES)}
    assert sum(got["modelroll_feature_bin_total"].values()) == 3 * MAX_FEATURES
    assert f"watching the first {MAX_FEATURES} features; the other 20 are not watched" in log


# --- refusals -------------------------------------------------------------------------------


def _refused(tmp_path: Path, model: Path, reference: Path) -> str:
    proc, port, _ = spawn_server(tmp_path, ["--model", str(model), "--name", "m", "--reference", str(reference)])
    assert proc.wait(timeout=60) == EXIT_BAD_CONFIGURATION
    return (tmp_path / f"termination-{port}.log").read_text()


def test_a_reference_of_another_model_is_refused(models, tmp_path):
    other = write_reference(tmp_path / "rf-reference.json", reference_for(models.paths["rf"], models.rf, models.X))
    reason = _refused(tmp_path, models.paths["lr"], other)
    assert reason.startswith("BadConfiguration: --reference: ")
    assert "describes another model" in reason and sha256_of(models.paths["rf"]) in reason
    assert sha256_of(models.paths["lr"]) in reason


def test_a_reference_with_another_feature_count_is_refused(models, tmp_path):
    full = reference_for(models.paths["lr"], models.lr, models.X)
    ref = dataclasses.replace(full, features=full.features[:-1])  # the right digest, 19 features
    reason = _refused(tmp_path, models.paths["lr"], write_reference(tmp_path / "r.json", ref))
    assert "has 19 features, the model takes 20" in reason


def test_a_malformed_reference_is_refused_naming_the_key(models, lr_reference, tmp_path):
    path, _ = lr_reference
    bad = tmp_path / "bad.json"
    bad.write_text(path.read_text().replace('"format_version": 1', '"format_version": 2'))
    reason = _refused(tmp_path, models.paths["lr"], bad)
    assert "is malformed: format_version: this reader knows 1, got 2" in reason
    (tmp_path / "cut.json").write_text(path.read_text()[:100])
    assert "is malformed: not JSON" in _refused(tmp_path, models.paths["lr"], tmp_path / "cut.json")
    assert "cannot read reference file" in _refused(tmp_path, models.paths["lr"], tmp_path / "absent.json")


def test_fetching_a_reference_with_a_wrong_digest_is_an_integrity_mismatch(lr_reference, tmp_path):
    """The init container fetches the reference as it fetches the model: bytes that are not the
    pinned referenceDigest never land at DEST."""
    path, _ = lr_reference
    dest = tmp_path / "models" / "reference.json"
    dest.parent.mkdir()
    log = tmp_path / "termination.log"
    wrong = "sha256:" + "1" * 64
    cmd = [sys.executable, "-m", "modelroll_server.cli", "fetch", path.as_uri(), str(dest), "--digest", wrong,
           "--termination-log", str(log)]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == EXIT_INTEGRITY_MISMATCH
    assert log.read_text().startswith("IntegrityMismatch: ") and not dest.exists()
    right = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    cmd[cmd.index(wrong)] = right
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    assert dest.read_bytes() == path.read_bytes()


# --- the window's arithmetic, in process -------------------------------------------------------


def test_the_window_holds_exactly_the_most_recent_rows(models, lr_reference):
    """Batches of every size, wrapping the ring at every offset: the window's counts always
    equal the counts of the last WINDOW_ROWS rows observed."""
    from modelroll_server.drift import Drift
    from modelroll_server.metrics import Metrics

    _, ref = lr_reference
    layout = DriftLayout.of(ref, allow_nan=False)
    metrics = Metrics("m", "1", "stable", extra_slots=layout.size)
    drift = Drift(layout, metrics)
    rng = np.random.default_rng(6)
    seen = []
    for n in [1, 3, 4000, 5995, 2, 9999, 10_000, 10_001, 7, 123, 25_000, 1, 6000]:
        rows = rng.normal(rng.normal(), 1.5, (n, N_FEATURES))
        drift.observe(rows)
        seen.append(rows)
        recent = np.concatenate(seen)[-WINDOW_ROWS:]
        window = metrics.extra()[layout.slots : 2 * layout.slots]
        expected = np.bincount(layout.bin_slots(recent).ravel(), minlength=layout.slots)
        assert (window == expected).all(), n
        assert metrics.extra()[2 * layout.slots] == len(recent)
    assert (metrics.extra()[: layout.slots] == np.bincount(
        layout.bin_slots(np.concatenate(seen)).ravel(), minlength=layout.slots)).all()  # fmt: skip


def test_broadcast_and_searchsorted_binning_agree(lr_reference):
    _, ref = lr_reference
    layout = DriftLayout.of(ref, allow_nan=True)
    rows = np.random.default_rng(7).normal(0, 2, (2000, N_FEATURES))
    rows[::13, 3] = np.nan
    big = layout.bin_slots(rows)  # per feature
    small = np.concatenate([layout.bin_slots(rows[i : i + 50]) for i in range(0, 2000, 50)])  # broadcast
    assert (big == small).all()
    assert (big[::13, 3] == layout.missing[3]).all()
