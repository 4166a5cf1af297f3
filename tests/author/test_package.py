"""``modelroll package``: the artifact the server loads with its digest checked, reference.json as
the contract reads it, the report, and the spec fields the operator's parser accepts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from modelroll_contract import MODEL_FORMATS
from modelroll_contract import reference as contract
from modelroll_server.errors import LoadError
from modelroll_server.loading import detect_format, load_model
from modelroll_server.metrics import CONFIDENCE_BUCKETS
from sklearn import metrics

from tests.author.support import call, run, sha256_of


def _sums_to_one(h: contract.Histogram) -> bool:
    return math.isclose(math.fsum(h.proportions) + h.missing, 1.0, abs_tol=1e-12)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")  # the server's warm-up row
def test_package_binary_classifier(models, tmp_path):
    """The real script, default format skops: every digest is the sha256 of the file written, the
    server's loader verifies and loads the artifact, and reference.json round-trips."""
    c = models["binary"]
    out = tmp_path / "pkg"
    r = run("package", str(c.path), "--reference", str(c.features_csv), "--out", str(out), "--version", "v7", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    assert got["format"] == "skops" and got["version"] == "v7" and got["method"] == "predict_proba"
    assert got["path"] == str(out / "model.skops") and got["reference"] == str(out / "reference.json")
    assert got["digest"] == sha256_of(out / "model.skops")
    assert got["reference_digest"] == sha256_of(out / "reference.json")
    assert got["report"] is None and sorted(p.name for p in out.iterdir()) == ["model.skops", "reference.json"]

    loaded = load_model(got["path"], "skops", got["digest"])  # what the server does in a Pod
    assert np.array_equal(loaded.estimator.predict_proba(c.X), c.model.predict_proba(c.X))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(LoadError, match="digest mismatch") as e:
        load_model(got["path"], "skops", wrong)
    assert e.value.integrity

    raw = (out / "reference.json").read_bytes()
    ref = contract.loads(raw)
    assert contract.dumps(ref) == raw  # the writer's bytes are what the reader reads back
    assert ref.model == contract.ModelInfo(
        "model.skops", got["digest"], "skops", "v7", "predict_proba", "sklearn.pipeline.Pipeline", "classifier"
    )
    assert ref.rows == len(c.test) and ref.n_features == 30
    assert list(ref.feature_names) == list(c.model.feature_names_in_) == list(c.X.columns)
    import sklearn

    assert ref.sklearn_version == sklearn.__version__
    for f in ref.features:
        # numpy's vectorised bins are the contract's pure-Python rule, value for value
        assert f.histogram == contract.histogram(f.histogram.edges, c.X[f.name].tolist())
        assert _sums_to_one(f.histogram) and f.histogram.missing == 0
        assert min(f.histogram.proportions) > 0  # quantile edges leave no empty reference bin
    radius = ref.features[0].histogram  # continuous: deciles
    assert len(radius.edges) == 9 and max(radius.proportions) - min(radius.proportions) < 0.03
    pred = c.model.predict(c.X)
    assert ref.classes == ("0", "1")
    assert ref.class_proportions == (float(np.mean(pred == 0)), float(np.mean(pred == 1)))
    assert ref.confidence is not None and ref.confidence.edges == tuple(CONFIDENCE_BUCKETS)
    top = c.model.predict_proba(c.X).max(axis=1)
    assert ref.confidence == contract.histogram(CONFIDENCE_BUCKETS, top.tolist()) and _sums_to_one(ref.confidence)
    assert ref.prediction_histogram is None


def test_package_regressor_with_target_writes_the_report(models, tmp_path):
    c = models["regressor"]
    out = tmp_path / "pkg"
    r = call("package", str(c.path), "--reference", str(c.csv), "--out", str(out), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    assert got["method"] == "predict" and got["version"] is None
    assert got["report_digest"] == sha256_of(out / "report.json")
    report = json.loads((out / "report.json").read_text())
    pred = c.model.predict(c.X)
    assert report["rmse"] == metrics.root_mean_squared_error(c.y, pred) == got["metrics"]["rmse"]
    assert report["r2"] == metrics.r2_score(c.y, pred)
    evaluated = json.loads(call("evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json").out)
    assert {k: report[k] for k in ("mae", "rmse", "r2", "n_rows")} == {
        k: evaluated[k] for k in ("mae", "rmse", "r2", "n_rows")
    }

    ref = contract.loads((out / "reference.json").read_bytes())
    assert ref.classes is None and ref.class_proportions is None and ref.confidence is None
    assert ref.model.task == "regressor" and ref.model.method == "predict"
    assert ref.prediction_histogram == contract.histogram(ref.prediction_histogram.edges, pred.tolist())
    assert len(ref.prediction_histogram.edges) == 9 and _sums_to_one(ref.prediction_histogram)
    sex = ref.features[list(ref.feature_names).index("sex")].histogram  # two values: one bin each
    values = sorted(set(c.X["sex"]))
    assert len(values) == 2 and sex.edges == (values[0],)
    assert sex.proportions == (float(np.mean(c.X["sex"] == values[0])), float(np.mean(c.X["sex"] == values[1])))
    assert "target" not in ref.feature_names


@pytest.mark.parametrize("fmt", MODEL_FORMATS)
def test_every_format_loads_in_the_server_with_its_digest(models, tmp_path, fmt):
    c = models["multiclass"]
    out = tmp_path / fmt
    r = call("package", str(c.path), "--reference", str(c.features_csv), "--out", str(out), "--format", fmt, "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    assert detect_format(got["path"], None) == fmt  # the file's name says its format, to the server too
    loaded = load_model(got["path"], fmt, sha256_of(out / got["path"].rsplit("/", 1)[1]))
    X = c.X.to_numpy()
    assert np.array_equal(loaded.estimator.predict_proba(X), c.model.predict_proba(X))
    ref = contract.loads((out / "reference.json").read_bytes())
    assert ref.model.format == fmt and ref.model.digest == got["digest"]
    assert ref.feature_names == tuple(c.X.columns)  # fitted on an array: the CSV's names
    assert ref.classes == ("0", "1", "2") and math.isclose(sum(ref.class_proportions), 1.0)


def test_the_printed_spec_is_what_the_operator_parses(models, tmp_path):
    from modelroll.spec import parse_spec

    c = models["binary"]
    out = tmp_path / "pkg"
    r = call("package", str(c.path), "--reference", str(c.features_csv), "--out", str(out), "--version", "1.10")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith(f"wrote {out / 'model.skops'}  {sha256_of(out / 'model.skops')}  (skops, ")
    snippet = r.out.split("(after `modelroll push`, use the URIs it prints):\n")[1]
    spec = parse_spec({**yaml.safe_load(snippet), "replicas": 1})
    assert spec.model.uri == (out / "model.skops").as_uri()
    assert spec.model.digest == sha256_of(out / "model.skops")
    assert (spec.model.format, spec.model.version, spec.model.method) == ("skops", "1.10", "predict_proba")
    assert spec.drift_reference_uri == (out / "reference.json").as_uri()
    assert spec.drift_reference_digest == sha256_of(out / "reference.json")


def test_out_dir_rules_and_input_errors(models, tmp_path):
    c = models["binary"]
    out = tmp_path / "pkg"
    args = ["package", str(c.path), "--reference", str(c.csv), "--out", str(out)]
    assert call(*args, "--target", "target").code == 0
    assert (out / "report.json").exists()
    r = call("package", str(c.path), "--reference", str(c.features_csv), "--out", str(out))
    assert r.code == 0, r.err  # the same directory again: overwritten, the stale report removed
    assert sorted(p.name for p in out.iterdir()) == ["model.skops", "reference.json"]
    r = call(*args, "--format", "joblib", "--target", "target")  # two artifacts for push to upload
    assert r.code == 2 and f"--out {out} holds other files (model.skops)" in r.err
    r = call(*args[:-1], str(tmp_path / "x"))  # no --target: the label column is not a feature
    assert r.code == 2
    assert "not features of the model: 'target'; if one of them is the label, name it with --target" in r.err
    assert not (tmp_path / "x").exists() or list((tmp_path / "x").iterdir()) == []
    text = c.test.assign(**{"mean area": "big"})
    text.to_csv(tmp_path / "text.csv", index=False)
    r = call(*args[:3], str(tmp_path / "text.csv"), "--out", str(tmp_path / "y"), "--target", "target")
    assert r.code == 2 and "feature column 'mean area' is not numeric (first value 'big')" in r.err
    assert not (tmp_path / "y").exists()  # refused before anything was written
    r = call("package", str(models["regressor"].path), "--reference", str(models["regressor"].csv),
             "--out", str(tmp_path / "z"), "--target", "target", "--method", "predict_proba")  # fmt: skip
    assert r.code == 2 and "--method predict_proba: " in r.err and "has no predict_proba" in r.err


def test_artifact_names_agree_with_the_servers_format_detection():
    from modelroll_author.package import ARTIFACT_NAMES

    assert set(ARTIFACT_NAMES) == set(MODEL_FORMATS)
    assert all(detect_format(name, None) == fmt for fmt, name in ARTIFACT_NAMES.items())


def test_missing_values_and_a_model_skops_cannot_hold_by_default(models, tmp_path):
    """HistGradientBoosting takes NaN and its trees are not among skops' trusted types: MODEL
    loads with --trusted, the skops artifact is refused (a ModelDeployment's server trusts the
    defaults only), a joblib artifact records each feature's missing share. LogisticRegression
    refuses NaN: exit 2 with the estimator's reason, nothing written."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    c = models["binary"]
    gaps = c.X.copy()
    gaps.loc[gaps.index[:17], "mean area"] = np.nan
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    sio.dump(HistGradientBoostingClassifier(max_iter=5).fit(c.X, c.y), tmp_path / "hgb.skops")
    tree = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    args = ["package", str(tmp_path / "hgb.skops"), "--reference", str(tmp_path / "gaps.csv"), "--out"]
    r = call(*args, str(tmp_path / "a"))
    assert r.code == 2 and f"skops file contains types that are not trusted: {tree}" in r.err
    r = call(*args, str(tmp_path / "a"), "--trusted", tree)
    assert r.code == 1 and r.err == (
        "modelroll: error: the server's loader refuses the skops artifact: skops file contains types that are not "
        f"trusted: {tree} (review them, then list them in MODELROLL_SERVER_TRUSTED_TYPES); a model skops cannot "
        "hold by its defaults can be packaged with --format joblib\n"
    )
    assert list((tmp_path / "a").iterdir()) == []  # the refused artifact is not left behind
    r = call(*args, str(tmp_path / "a"), "--trusted", tree, "--format", "joblib")
    assert r.code == 0, r.err
    ref = contract.loads((tmp_path / "a" / "reference.json").read_bytes())
    area = ref.features[list(ref.feature_names).index("mean area")].histogram
    assert area.missing == 17 / len(gaps) and _sums_to_one(area)
    assert area == contract.histogram(area.edges, gaps["mean area"].tolist())

    r = call("package", str(c.path), "--reference", str(tmp_path / "gaps.csv"), "--out", str(tmp_path / "b"))
    assert r.code == 2
    assert f"{c.path} cannot predict on {tmp_path / 'gaps.csv'}: ValueError: Input X contains NaN" in r.err
    assert not (tmp_path / "b").exists()
