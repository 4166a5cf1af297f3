"""Training picks the better candidate by F1 with scikit-learn's own numbers; the evaluation
gate fails naming the metric; the corrupted-labels model is clearly worse but serves; the
drifted traffic is far from the reference."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from tests.pipeline.support import Build, columns

FEATURES, TARGET = columns.FEATURES, columns.TARGET


@pytest.fixture(scope="module")
def test_split(build: Build) -> pd.DataFrame:
    return pd.read_csv(build.data / "test.csv")


def sklearn_metrics(model, df: pd.DataFrame) -> dict[str, float]:
    from sklearn import metrics

    X, y = df[FEATURES], df[TARGET]
    predicted = model.predict(X)
    return {
        "accuracy": metrics.accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted, pos_label=1),
        "recall": metrics.recall_score(y, predicted, pos_label=1),
        "f1": metrics.f1_score(y, predicted, pos_label=1),
        "roc_auc": metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]),
    }


def test_train_keeps_the_better_candidate_by_f1_with_sklearns_numbers(build, test_split):
    out = build.root / "model"
    summary = json.loads((out / "candidates.json").read_text())
    assert summary["metric"] == "f1" and set(summary["candidates"]) == {"logistic_regression", "mlp"}
    for name, reported in summary["candidates"].items():
        direct = sklearn_metrics(joblib.load(out / "candidates" / f"{name}.joblib"), test_split)
        assert reported == pytest.approx(direct, abs=1e-12), name
    f1 = {name: c["f1"] for name, c in summary["candidates"].items()}
    assert f1[summary["chosen"]] == max(f1.values())
    assert (out / "model.joblib").read_bytes() == (out / "candidates" / f"{summary['chosen']}.joblib").read_bytes()
    model = joblib.load(out / "model.joblib")
    assert list(model.feature_names_in_) == FEATURES  # the clean files' order is the input order
    assert model.steps[0][0] == "standardscaler"  # scaling fitted inside the artifact


def test_the_evaluation_gate_passes_and_fails_naming_the_metric(build):
    r = build.make("pipeline-evaluate")
    assert "f1        0.9" in r.stdout  # the text report, F1 above the default 0.9 bound
    r = build.make("pipeline-evaluate", check=False, PIPELINE_MIN="f1=0.999 roc_auc=0.5")
    assert r.returncode != 0
    assert "modelroll: f1 " in r.stderr and "is below its minimum 0.999" in r.stderr
    assert "roc_auc" not in r.stderr  # the bound that holds is not reported
    assert "pipeline-evaluate] Error 1" in r.stderr  # modelroll's exit code 1, as make saw it


@pytest.fixture(scope="module")
def bad(build: Build, packaged: str) -> Build:
    build.make("pipeline-bad", PIPELINE_VERSION="v7")
    return build


# The server's warm-up, too, predicts on an array (it has no column names): scikit-learn warns.
@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
def test_the_corrupted_labels_model_is_clearly_worse_and_still_serves(bad, test_split):
    from modelroll_server.loading import load_model

    good = sklearn_metrics(joblib.load(bad.root / "model" / "model.joblib"), test_split)
    worse = sklearn_metrics(joblib.load(bad.root / "bad" / "model" / "model.joblib"), test_split)
    assert worse["accuracy"] < good["accuracy"] - 0.15
    summary = json.loads((bad.root / "bad" / "model" / "candidates.json").read_text())
    assert summary["corrupt_labels"] == 0.45
    # The server's loader loads the packaged artifact (digest checked, warm-up run) and it
    # answers every traffic row: an errorRate gate has nothing to catch.
    pushed = json.loads((bad.root / "bad" / "push.json").read_text())["spec"]["model"]
    assert pushed["version"] == "v7-bad"
    loaded = load_model(pushed["uri"].removeprefix("file://"), digest=pushed["digest"])
    traffic = pd.read_csv(bad.data / "traffic.csv")
    proba = loaded.estimator.predict_proba(traffic[FEATURES].to_numpy())  # an array, as the server's
    assert proba.shape == (len(traffic), 2) and np.isfinite(proba).all()
    manifest = (bad.root / "bad" / "modeldeployment.yaml").read_text()
    assert pushed["digest"] in manifest and "version: v7-bad" in manifest


def psi_per_feature(reference_path, df: pd.DataFrame) -> dict[str, float]:
    """The server's PSI (modelroll_server.drift.psi) of each feature of ``df`` against the
    reference bins, the rows binned by the contract's rule."""
    from modelroll_contract import reference
    from modelroll_server.drift import psi

    ref = reference.loads(reference_path.read_bytes())
    out = {}
    for f in ref.features:
        h = f.histogram
        counts = np.bincount([h.bin_index(v) for v in df[f.name]], minlength=len(h.proportions))
        out[f.name] = psi(counts.astype(float), np.array(h.proportions))
    return out


def test_drifted_traffic_is_far_from_the_reference_and_keeps_its_labels(build, packaged):
    build.make("pipeline-drift")
    traffic = pd.read_csv(build.data / "traffic.csv")
    drifted = pd.read_csv(build.data / "traffic-drifted.csv")
    assert list(drifted.columns) == list(traffic.columns)
    assert drifted[TARGET].equals(traffic[TARGET])
    scaled = ["radius_mean", "perimeter_mean", "area_mean"]
    assert all(drifted[f].equals(traffic[f]) for f in FEATURES if f not in scaled)
    reference = build.root / "package" / "reference.json"
    before, after = psi_per_feature(reference, traffic), psi_per_feature(reference, drifted)
    for f in scaled:
        assert after[f] > 1.0 and before[f] < 0.25, (f, before[f], after[f])
