"""Estimators with deliberate behaviour for the server tests (imported by the server too,
through PYTHONPATH, so pickles of them load there)."""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class FaultyModel(ClassifierMixin, BaseEstimator):
    """Predicts class 1, but raises when the first feature is 666."""

    def fit(self, X, y):  # noqa: N803 - sklearn's naming
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):  # noqa: N803
        X = np.asarray(X)
        if (X[:, 0] == 666).any():
            raise RuntimeError("feature 0 is cursed")
        return np.ones(len(X), dtype=np.int64)


class SlowModel(FaultyModel):
    """Takes ``delay`` seconds per call, so requests stay in flight."""

    delay = 0.25

    def predict(self, X):  # noqa: N803
        time.sleep(self.delay)
        return np.ones(len(np.asarray(X)), dtype=np.int64)


class SlowToLoad(FaultyModel):
    """Sleeps while being unpickled, so the window before readiness can be observed."""

    def __setstate__(self, state):
        time.sleep(float(os.environ.get("MODELROLL_TEST_LOAD_DELAY", "2")))
        self.__dict__.update(state)


class Marker:
    """A pickle payload that creates a file when unpickled: proof that it was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Contrarian(FaultyModel):
    """predict says class 1 while predict_proba favours class 0 (like a calibrated SVC can)."""

    def predict(self, X):  # noqa: N803
        return np.ones(len(np.asarray(X)), dtype=np.int64)

    def predict_proba(self, X):  # noqa: N803
        return np.tile([0.8, 0.2], (len(np.asarray(X)), 1))


class RegionFlip(ClassifierMixin, BaseEstimator):
    """``base``'s predictions, except that rows whose first feature exceeds ``above`` get the
    next class: a retrain that went wrong on one region of the inputs."""

    def __init__(self, base=None, above=1.0):
        self.base = base
        self.above = above

    def fit(self, X, y):  # noqa: N803
        self.classes_ = self.base.classes_
        self.n_features_in_ = self.base.n_features_in_
        return self

    def predict(self, X):  # noqa: N803
        X = np.asarray(X)
        pred = self.base.predict(X)
        flip = X[:, 0] > self.above
        pred[flip] = self.classes_[(np.searchsorted(self.classes_, pred[flip]) + 1) % len(self.classes_)]
        return pred


class Offset(BaseEstimator):
    """A regressor answering ``base``'s value plus ``by``."""

    def __init__(self, base=None, by=0.5):
        self.base = base
        self.by = by

    def fit(self, X, y):  # noqa: N803
        self.n_features_in_ = self.base.n_features_in_
        return self

    def predict(self, X):  # noqa: N803
        return self.base.predict(np.asarray(X)) + self.by
