"""Fixtures for the author command's tests: real scikit-learn models trained on datasets that
scikit-learn ships, saved in each format the server loads, with their held-out data as CSV."""

from __future__ import annotations

import pickle

import joblib
import pandas as pd
import pytest

from tests.author.support import Case, split


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """binary: a scaled LogisticRegression on the breast cancer data, fitted on a DataFrame
    (feature_names_in_), joblib; multiclass: LogisticRegression on iris fitted on an array (no
    names), pickle; regressor: Ridge on the diabetes data, skops; labels: the binary data with
    string labels and a LinearSVC (decision_function, no predict_proba), joblib."""
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    d = tmp_path_factory.mktemp("author-models")
    cases = {}

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_tr, X_te, y_tr, y_te = split(X, y)
    m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_tr, y_tr)
    joblib.dump(m, d / "binary.joblib")
    X_te.assign(target=y_te).to_csv(d / "binary.csv", index=False)
    X_tr.assign(target=y_tr).to_csv(d / "binary-train.csv", index=False)
    cases["binary"] = Case(m, d / "binary.joblib", d / "binary.csv", X_te.assign(target=y_te))

    names = pd.Series(load_breast_cancer().target_names[y.to_numpy()], index=y.index)  # malignant / benign
    m = make_pipeline(StandardScaler(), LinearSVC()).fit(X_tr, names[y_tr.index])
    joblib.dump(m, d / "labels.joblib")
    X_te.assign(target=names[y_te.index]).to_csv(d / "labels.csv", index=False)
    cases["labels"] = Case(m, d / "labels.joblib", d / "labels.csv", X_te.assign(target=names[y_te.index]))

    X, y = load_iris(return_X_y=True, as_frame=True)
    X_tr, X_te, y_tr, y_te = split(X, y)
    m = LogisticRegression(max_iter=1000).fit(X_tr.to_numpy(), y_tr.to_numpy())
    (d / "multiclass.pkl").write_bytes(pickle.dumps(m))
    X_te.assign(target=y_te).to_csv(d / "multiclass.csv", index=False)
    cases["multiclass"] = Case(m, d / "multiclass.pkl", d / "multiclass.csv", X_te.assign(target=y_te))

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_tr, X_te, y_tr, y_te = split(X, y)
    m = Ridge(alpha=1.0).fit(X_tr, y_tr)
    sio.dump(m, d / "regressor.skops")
    X_te.assign(target=y_te).to_csv(d / "regressor.csv", index=False)
    cases["regressor"] = Case(m, d / "regressor.skops", d / "regressor.csv", X_te.assign(target=y_te))
    return cases
