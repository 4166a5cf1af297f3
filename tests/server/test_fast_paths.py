"""The verified fast paths compute exactly what scikit-learn computes (in-process)."""

from __future__ import annotations

import numpy as np
import pytest
from modelroll_server.loading import forest_proba, linear_proba, load_model
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.server


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "make, fast",
    [
        (lambda: LogisticRegression(max_iter=300), linear_proba),
        (lambda: RandomForestClassifier(n_estimators=5, random_state=0), forest_proba),
        (lambda: ExtraTreesClassifier(n_estimators=5, random_state=0), forest_proba),
    ],
)
def test_fast_proba_is_bit_identical(make, fast, n_classes):
    X, y = make_classification(n_samples=300, n_features=20, n_informative=8,
                               n_classes=n_classes, random_state=0)  # fmt: skip
    est = make().fit(X, y)
    f = fast(est)
    assert f is not None
    Z = np.random.default_rng(1).normal(size=(257, 20)) * 3
    for rows in (Z[:1], Z[:7], Z):
        assert np.array_equal(f(rows), est.predict_proba(rows))


def test_fast_path_is_only_used_for_exact_types(models, tmp_path):
    import joblib

    class MyForest(RandomForestClassifier):
        pass

    assert forest_proba(MyForest(n_estimators=2).fit(models.X, models.X[:, 0] > 0)) is None
    path = tmp_path / "lr.joblib"
    joblib.dump(models.lr, path)
    assert load_model(str(path)).fast_proba is not None
