"""Reference statistics of a model on its reference data (pure computation with numpy).

The file's format and its binning rule are the shared contract's
(``modelroll_contract.reference``); this module only computes the numbers, vectorised, with the
same rule: ``np.searchsorted(edges, x, side="left")`` is the contract's ``bisect_left``.

Quantile edges are values of the data (``method="inverted_cdf"``), deduplicated, and none at or
above the largest value, so no reference bin is empty: a continuous feature gets ``bins`` bins of
about equal share, a feature with a few distinct values one bin per value (at most ``bins``).
"""

from __future__ import annotations

import numpy as np
from modelroll_contract import METHOD_PREDICT_PROBA
from modelroll_contract.reference import TASK_CLASSIFIER, Feature, Histogram, ModelInfo, Reference
from modelroll_server.metrics import CONFIDENCE_BUCKETS

from .data import Dataset
from .errors import InputError
from .model import Model, call

DEFAULT_BINS = 10  # deciles


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Upper bounds of ``bins`` quantile bins of the finite values (fewer when values repeat)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    cuts = np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")
    edges = np.unique(cuts)
    return [float(e) for e in edges[edges < finite.max()]]


def histogram(values: np.ndarray, edges: list[float]) -> Histogram:
    """The contract's Histogram of ``values`` over ``edges`` (NaN counted as missing)."""
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    counts = np.bincount(np.searchsorted(np.asarray(edges), values[~nan], side="left"), minlength=len(edges) + 1)
    n = len(values)
    return Histogram(tuple(edges), tuple(float(c) / n for c in counts), float(nan.sum()) / n)


def build(model: Model, data: Dataset, info: ModelInfo, bins: int = DEFAULT_BINS) -> Reference:
    """Statistics of the data's features (as the float matrix the server receives) and of the
    model's predictions on them."""
    import sklearn

    X = data.numeric_features()
    features = tuple(
        Feature(name, histogram(X[:, i], quantile_edges(X[:, i], bins))) for i, name in enumerate(data.feature_names)
    )
    predicted = call(model, "predict", data.X, data.path)
    classes = class_props = pred_hist = confidence = None
    if model.task == TASK_CLASSIFIER:
        assert model.loaded.classes is not None
        counts = [int(np.sum(predicted == c)) for c in model.loaded.classes]
        if sum(counts) != len(predicted):
            raise InputError(f"{model.path} predicted labels that are not among its classes_")
        classes = tuple(model.class_labels)
        class_props = tuple(c / len(predicted) for c in counts)
        if model.loaded.has_proba:
            top = call(model, "predict_proba", data.X, data.path).astype(np.float64).max(axis=1)
            if np.isnan(top).any():
                raise InputError(f"{model.path} returned NaN probabilities on the reference data")
            confidence = histogram(top, [float(b) for b in CONFIDENCE_BUCKETS])
    else:
        values = predicted.astype(np.float64)
        if np.isnan(values).any():
            raise InputError(f"{model.path} predicted NaN for {int(np.isnan(values).sum())} reference rows")
        pred_hist = histogram(values, quantile_edges(values, bins))
    if info.method == METHOD_PREDICT_PROBA and confidence is None:
        raise InputError(f"{model.path} has no predict_proba; its method can only be predict")
    return Reference(
        sklearn_version=sklearn.__version__,
        model=info,
        rows=int(X.shape[0]),
        features=features,
        classes=classes,
        class_proportions=class_props,
        prediction_histogram=pred_hist,
        confidence=confidence,
    )
