"""The author's model, loaded by the inference server's own loader (reads one file).

Loading through ``modelroll_server.loading`` means the formats, the skops trust check and the
warm-up prediction are exactly the server's: a model ``modelroll`` accepts is one the server
will load, and the format rules live in one place.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from modelroll_contract import MODEL_FORMATS
from modelroll_contract.reference import TASK_CLASSIFIER, TASK_REGRESSOR
from modelroll_server.errors import LoadError
from modelroll_server.loading import LoadedModel, detect_format, load_model

from .errors import InputError


@dataclass(frozen=True)
class Model:
    path: str
    loaded: LoadedModel
    task: str  # classifier | regressor

    @property
    def estimator(self) -> Any:
        return self.loaded.estimator

    @property
    def classes(self) -> list[Any]:
        """The classifier's labels in scikit-learn's order (classes_), as Python values."""
        return [] if self.loaded.classes is None else list(self.loaded.classes.tolist())

    @property
    def class_labels(self) -> list[str]:
        """The labels as the server names them in its metrics and the reference file."""
        return self.loaded.class_labels

    @property
    def estimator_name(self) -> str:
        t = type(self.estimator)
        return f"{t.__module__}.{t.__qualname__}"

    @property
    def feature_names(self) -> list[str] | None:
        names = getattr(self.estimator, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    @property
    def n_features(self) -> int | None:
        return self.loaded.n_features


def call(model: Model, method: str, X: Any, data_path: str) -> np.ndarray:
    """``model.estimator.METHOD(X)`` as an array; what the estimator raises (NaN in the input, a
    value it cannot convert) becomes an InputError naming the data."""
    try:
        return np.asarray(getattr(model.estimator, method)(X))
    except Exception as e:
        raise InputError(f"{model.path} cannot {method} on {data_path}: {type(e).__name__}: {e}") from e


def task_of(estimator: Any) -> str | None:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return TASK_CLASSIFIER
    if is_regressor(estimator):
        return TASK_REGRESSOR
    return None


def load_artifact(path: str, fmt: str, digest: str | None, trusted: list[str] | None) -> LoadedModel:
    """The server's ``load_model``; raises its LoadError."""
    with warnings.catch_warnings():
        # The loader's warm-up predicts on an array, as the server does; a model fitted on a
        # DataFrame warns about the missing column names, which modelroll itself does pass.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return load_model(path, fmt, digest, trusted)


def load(path: str, fmt: str | None = None, trusted: list[str] | None = None) -> Model:
    """Load MODEL as the server would (no digest to check: the author's own file)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such model file")
    try:
        fmt = detect_format(path, fmt)
    except LoadError as e:
        raise InputError(
            f"cannot tell the format of {path} from its name; give --model-format ({', '.join(MODEL_FORMATS)})"
        ) from e
    try:
        loaded = load_artifact(path, fmt, None, trusted)
    except LoadError as e:
        raise InputError(str(e)) from e
    task = task_of(loaded.estimator)
    if task is None:
        raise InputError(
            f"{path} holds a {type(loaded.estimator).__name__}, which scikit-learn calls neither a classifier "
            "nor a regressor"
        )
    if task == TASK_CLASSIFIER and (loaded.classes is None or len(loaded.classes) < 2):
        raise InputError(f"{path}: the classifier has fewer than two classes_")
    return Model(path, loaded, task)
