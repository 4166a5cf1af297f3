"""``modelroll evaluate``: scikit-learn's own numbers, the bounds' exit codes, one-line input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics

from tests.author.support import call, run


def test_binary_json_is_sklearn_metrics_of_the_positive_class(models):
    """The real console script; precision, recall and f1 of the greater label, roc_auc from
    predict_proba, the confusion matrix and the classification report."""
    c = models["binary"]
    r = run("evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    pred = c.model.predict(c.X)
    assert got["task"] == "classifier" and got["n_rows"] == len(c.test) == 171
    assert got["classes"] == ["0", "1"] and got["positive_class"] == "1"
    assert got["accuracy"] == metrics.accuracy_score(c.y, pred)
    assert got["precision"] == metrics.precision_score(c.y, pred, pos_label=1)
    assert got["recall"] == metrics.recall_score(c.y, pred, pos_label=1)
    assert got["f1"] == metrics.f1_score(c.y, pred, pos_label=1)
    assert got["roc_auc"] == metrics.roc_auc_score(c.y, c.model.predict_proba(c.X)[:, 1])
    assert got["confusion_matrix"] == metrics.confusion_matrix(c.y, pred).tolist()
    assert got["classification_report"] == metrics.classification_report(c.y, pred, output_dict=True)
    assert 0.9 < got["accuracy"] < 1  # a real model, neither broken nor trivially perfect
    assert r.err == ""


def test_string_labels_and_a_model_without_predict_proba(models):
    """LinearSVC has no predict_proba: roc_auc ranks by decision_function; the positive class is
    the greater label, 'malignant'."""
    c = models["labels"]
    r = call("evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    pred = c.model.predict(c.X)
    assert got["classes"] == ["benign", "malignant"] and got["positive_class"] == "malignant"
    assert got["precision"] == metrics.precision_score(c.y, pred, pos_label="malignant")
    assert got["recall"] == metrics.recall_score(c.y, pred, pos_label="malignant")
    assert got["roc_auc"] == metrics.roc_auc_score(c.y == "malignant", c.model.decision_function(c.X))
    assert not hasattr(c.model, "predict_proba")


def test_multiclass_metrics_are_macro_averages_without_roc_auc(models):
    c = models["multiclass"]  # fitted on an array: the CSV's columns are taken in order
    r = call("evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    pred = c.model.predict(c.X.to_numpy())
    assert got["average"] == "macro" and got["positive_class"] is None
    assert got["accuracy"] == metrics.accuracy_score(c.y, pred)
    for name, fn in (("precision", metrics.precision_score), ("recall", metrics.recall_score)):
        assert got[name] == fn(c.y, pred, average="macro")
    assert got["f1"] == metrics.f1_score(c.y, pred, average="macro")
    assert got["roc_auc"] is None and got["notes"] == ["roc_auc is computed for binary classifiers only"]
    assert got["confusion_matrix"] == metrics.confusion_matrix(c.y, pred).tolist()
    assert np.asarray(got["confusion_matrix"]).shape == (3, 3)


def test_regressor_metrics(models):
    c = models["regressor"]
    r = call("evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    pred = c.model.predict(c.X)
    assert got["task"] == "regressor"
    assert got["mae"] == metrics.mean_absolute_error(c.y, pred)
    assert got["rmse"] == metrics.root_mean_squared_error(c.y, pred)
    assert got["r2"] == metrics.r2_score(c.y, pred)
    assert "accuracy" not in got


def test_bounds_not_met_exit_1_naming_each_metric(models):
    c = models["binary"]
    pred = c.model.predict(c.X)
    acc, f1 = metrics.accuracy_score(c.y, pred), metrics.f1_score(c.y, pred)
    args = ["evaluate", str(c.path), "--data", str(c.csv), "--target", "target", "--json"]
    r = run(*args, "--min", "accuracy=0.999", "--min", "recall=0.5", "--min", "f1=1")
    assert r.code == 1
    assert r.err.splitlines() == [
        f"modelroll: accuracy {acc:.6g} is below its minimum 0.999",
        f"modelroll: f1 {f1:.6g} is below its minimum 1",
    ]
    checks = json.loads(r.out)["checks"]  # the report is still printed, with each check's verdict
    assert [(k["metric"], k["passed"]) for k in checks] == [("accuracy", False), ("recall", True), ("f1", False)]
    ok = call(*args, "--min", f"accuracy={acc}", "--min", "roc_auc=0.9")  # at the bound passes
    assert ok.code == 0 and ok.err == ""


def test_error_metrics_take_a_maximum(models):
    c = models["regressor"]
    rmse = metrics.root_mean_squared_error(c.y, c.model.predict(c.X))
    args = ["evaluate", str(c.path), "--data", str(c.csv), "--target", "target"]
    r = call(*args, "--max", f"rmse={rmse * 0.9}", "--max", f"mae={rmse}", "--min", "r2=0.2")
    assert r.code == 1
    assert r.err.splitlines() == [f"modelroll: rmse {rmse:.6g} is above its maximum {rmse * 0.9:g}"]
    assert call(*args, "--max", f"rmse={rmse}").code == 0


def test_text_report_shows_the_confusion_matrix_and_sklearns_report(models):
    c = models["multiclass"]
    r = call("evaluate", str(c.path), "--data", str(c.csv), "--target", "target")
    assert r.code == 0, r.err
    pred = c.model.predict(c.X.to_numpy())
    assert f"accuracy  {metrics.accuracy_score(c.y, pred):.4f}" in r.out
    cm = metrics.confusion_matrix(c.y, pred)
    rows = r.out.split("confusion matrix (rows: true, columns: predicted)\n")[1].splitlines()[1:4]
    assert [[int(n) for n in row.split()[1:]] for row in rows] == cm.tolist()
    assert metrics.classification_report(c.y, pred, digits=4).rstrip() in r.out


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("binary", ["--target", "label"], "binary.csv: no column 'label' (the --target); its columns: 'mean radius',"),
        ("binary", ["--target", "target", "--min", "acc=0.9"], "--min acc: unknown metric; known: accuracy,"),
        ("binary", ["--target", "target", "--min", "accuracy"], "--min 'accuracy': expected METRIC=VALUE"),
        ("binary", ["--target", "target", "--min", "accuracy=high"], "--min accuracy=high: the bound must be a finite"),
        ("regressor", ["--target", "target", "--min", "mae=3"], "--min mae: mae is an error, lower is better; bound"),
        ("binary", ["--target", "target", "--max", "f1=0.9"], "--max f1: higher f1 is better; bound it with --min f1"),
        ("binary", ["--target", "target", "--min", "r2=0.5"], "--min r2=0.5: the model is a classifier; its metrics"),
        (
            "multiclass",
            ["--target", "sepal length (cm)"],
            "column 'sepal length (cm)' has labels the model does not know: '4.6', '4.8'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models, case, args, message):
    c = models[case]
    r = call("evaluate", str(c.path), "--data", str(c.csv), *args)
    assert r.code == 2, r
    assert r.err.startswith("modelroll: error: ") and message in r.err, r.err
    assert r.err.count("\n") == 1 and r.out == ""


def test_feature_columns_must_match_feature_names_in(models, tmp_path):
    """Through the real script: no traceback, the columns named."""
    c = models["binary"]
    bad = c.test.drop(columns=["mean area"]).assign(patient_id=1)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    r = run("evaluate", str(c.path), "--data", str(tmp_path / "bad.csv"), "--target", "target")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err == (
        f"modelroll: error: {tmp_path / 'bad.csv'}: columns do not match the model's feature_names_in_: "
        "missing 'mean area'; not features of the model: 'patient_id'\n"
    )
    # reordered columns are fine: the model's own order is used
    c.test[list(reversed(c.test.columns))].to_csv(tmp_path / "reordered.csv", index=False)
    r = call("evaluate", str(c.path), "--data", str(tmp_path / "reordered.csv"), "--target", "target", "--json")
    assert r.code == 0 and json.loads(r.out)["accuracy"] == metrics.accuracy_score(c.y, c.model.predict(c.X))


def test_more_input_errors(models, tmp_path):
    c = models["multiclass"]
    base = ["evaluate", str(c.path), "--data"]
    c.test.assign(extra=0).to_csv(tmp_path / "wide.csv", index=False)
    r = call(*base, str(tmp_path / "wide.csv"), "--target", "target")
    assert r.code == 2 and "5 feature columns (" in r.err and "the model takes 4" in r.err
    c.test.assign(target=c.y.map({0: 0, 1: 1, 2: 7})).to_csv(tmp_path / "labels.csv", index=False)
    r = call(*base, str(tmp_path / "labels.csv"), "--target", "target")
    assert r.code == 2
    assert "column 'target' has labels the model does not know: '7' (its classes: '0', '1', '2')" in r.err
    r = call(*base, str(tmp_path / "missing.csv"), "--target", "target")
    assert (r.code, r.err) == (2, f"modelroll: error: {tmp_path / 'missing.csv'}: no such file\n")
    (tmp_path / "empty.csv").write_text("")
    r = call(*base, str(tmp_path / "empty.csv"), "--target", "target")
    assert (r.code, r.err) == (2, f"modelroll: error: {tmp_path / 'empty.csv'}: empty file, no CSV header\n")
    (tmp_path / "model.bin").write_bytes(c.path.read_bytes())
    r = call("evaluate", str(tmp_path / "model.bin"), "--data", str(c.csv), "--target", "target")
    assert r.code == 2 and "cannot tell the format of" in r.err and "--model-format (joblib, pickle, skops)" in r.err
    data = ["--data", str(c.csv), "--target", "target"]
    r = call("evaluate", str(tmp_path / "model.bin"), "--model-format", "pickle", *data)
    assert r.code == 0, r.err
    (tmp_path / "broken.joblib").write_bytes(b"not a model")
    r = call("evaluate", str(tmp_path / "broken.joblib"), "--data", str(c.csv), "--target", "target")
    assert r.code == 2 and r.err.startswith("modelroll: error: cannot load joblib model") and r.err.count("\n") == 1


def test_labels_read_as_another_type_are_matched_by_their_text(models, tmp_path):
    """A model fitted on the labels "0", "1", "2" as text, and a CSV that pandas reads as numbers."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    c = models["multiclass"]
    model = LogisticRegression(max_iter=1000).fit(c.X.to_numpy(), c.y.astype(str).to_numpy())
    joblib.dump(model, tmp_path / "text-labels.joblib")
    r = call("evaluate", str(tmp_path / "text-labels.joblib"), "--data", str(c.csv), "--target", "target", "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)
    assert got["classes"] == ["0", "1", "2"]
    assert got["accuracy"] == metrics.accuracy_score(c.y.astype(str), model.predict(c.X.to_numpy()))
