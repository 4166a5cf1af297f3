"""Load a scikit-learn artifact safely and wrap it for batched prediction (reads one file).

The file is read once into memory, its sha256 compared with the expected digest, and only
then deserialized from those same bytes, so nothing unverified is ever unpickled and the
file cannot change between the check and the load.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from modelroll_contract import MODEL_FORMATS

from .errors import LoadError

log = logging.getLogger("modelroll_server.loading")

_EXTENSIONS = {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".skops": "skops"}

# Estimators whose predict() is exactly classes_[argmax(predict_proba())]: for these one
# predict_proba call yields both outputs (and the confidence metric) at the cost of one.
_PREDICT_IS_ARGMAX_PROBA = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "LogisticRegression",
        "LogisticRegressionCV",
        "GaussianNB",
        "MultinomialNB",
        "BernoulliNB",
        "ComplementNB",
        "CategoricalNB",
        "KNeighborsClassifier",
        "MLPClassifier",
    }
)


def parse_digest(digest: str | None) -> str | None:
    """Return the lowercase hex of ``sha256:HEX`` (or bare HEX); raise ValueError otherwise."""
    if not digest:
        return None
    algo, _, hexpart = digest.partition(":")
    if not hexpart:
        algo, hexpart = "sha256", algo
    hexpart = hexpart.strip().lower()
    if algo.lower() != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"digest must look like sha256:<64 hex digits>, got {digest!r}")
    return hexpart


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in MODEL_FORMATS:
            raise LoadError(f"unknown model format {fmt!r}; expected one of {', '.join(MODEL_FORMATS)}")
        return fmt
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise LoadError(
            f"cannot tell the format of {path!r} from its extension; set --format ({', '.join(MODEL_FORMATS)})"
        )
    return found


def _final_step(est: Any) -> Any:
    steps = getattr(est, "steps", None)
    if isinstance(steps, list) and steps:
        return _final_step(steps[-1][1])
    return est


# Estimators that cast X to float32 before predicting (a value beyond its range becomes
# infinity there). Only the estimator itself: a pipeline's first steps change the values.
_FLOAT32_MODULES = ("sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "sklearn.ensemble._iforest")


def _allow_nan(est: Any) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(est).input_tags.allow_nan)
    except Exception:  # older scikit-learn or a non-sklearn object
        try:
            return bool(est._get_tags().get("allow_nan", False))
        except Exception:
            return False


@dataclass
class LoadedModel:
    estimator: Any
    format: str
    sha256: str
    n_features: int | None
    classes: np.ndarray | None
    has_proba: bool
    derive_predict: bool
    allow_nan: bool
    float32_input: bool  # the estimator casts its input to float32 (scikit-learn's trees)
    trained_sklearn_version: str | None
    runtime_sklearn_version: str
    warnings: list[str] = field(default_factory=list)
    load_seconds: float = 0.0

    @property
    def class_labels(self) -> list[str]:
        return [] if self.classes is None else [str(c) for c in self.classes.tolist()]

    fast_proba: Any = None  # a verified faster predict_proba (see forest_proba)

    def run(self, X: np.ndarray, want_predict: bool, want_proba: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Predict on X; returns (predict, predict_proba), each None when not computed.

        predict_proba is computed whenever the model has it (the confidence metric needs it),
        and predict is derived from it where that is exact.
        """
        est = self.estimator
        proba = None
        if self.has_proba and (want_proba or want_predict):
            proba = self.fast_proba(X) if self.fast_proba is not None else est.predict_proba(X)
        pred = None
        if want_predict:
            if proba is not None and self.derive_predict:
                pred = self.classes.take(proba.argmax(axis=1))  # type: ignore[union-attr]
            else:
                pred = est.predict(X)
        return pred, proba


def forest_proba(est: Any) -> Any:
    """predict_proba for a single-output random forest without joblib's per-call machinery.

    RandomForestClassifier.predict_proba dispatches one joblib task per tree, which costs
    ten times the trees' own work for a few rows. This does the same arithmetic in the same
    order (tree leaf values, normalized per tree, summed, divided by the tree count), so the
    result is bit-identical; ``load_model`` checks that on sample rows before using it.
    """
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    if type(est) not in (RandomForestClassifier, ExtraTreesClassifier):
        return None
    if getattr(est, "n_outputs_", 2) != 1 or not est.estimators_:
        return None
    trees = []
    for e in est.estimators_:
        if type(e) not in (DecisionTreeClassifier, ExtraTreeClassifier):
            return None
        trees.append(e.tree_)
    n_classes = int(est.n_classes_)
    n_trees = float(len(trees))

    def proba(X: np.ndarray) -> np.ndarray:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        total = np.zeros((X32.shape[0], n_classes), dtype=np.float64)
        for tree in trees:
            p = tree.predict(X32)[:, :n_classes]
            normalizer = p.sum(axis=1)[:, np.newaxis]
            normalizer[normalizer == 0.0] = 1.0
            total += p / normalizer
        total /= n_trees
        return total

    return proba


def linear_proba(est: Any) -> Any:
    """predict_proba for LogisticRegression without scikit-learn's per-call input checks.

    The checks (dtype, shape, namespace, dataframe detection) cost several times the
    arithmetic for one row, and the server has already made X a finite float64 matrix of
    the right width. The arithmetic is scikit-learn's own, in its order; ``load_model``
    checks the result is bit-identical on sample rows before using it.
    """
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.utils.extmath import softmax

    if type(est) not in (LogisticRegression, LogisticRegressionCV):
        return None
    coef = getattr(est, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 2:
        return None
    coef_t = coef.T
    intercept = est.intercept_
    binary = len(est.classes_) <= 2

    def proba(X: np.ndarray) -> np.ndarray:
        scores = X @ coef_t + intercept
        if binary:
            p = expit(scores.reshape(-1))
            return np.stack([1 - p, p], axis=1)
        return softmax(scores, copy=False)  # type: ignore[no-any-return]

    return proba


def _verified_fast_path(model: LoadedModel) -> None:
    fast = forest_proba(model.estimator) or linear_proba(model.estimator)
    if fast is None or model.n_features is None:
        return
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, model.n_features))
    try:
        ok = np.array_equal(fast(X), model.estimator.predict_proba(X))
    except Exception:
        ok = False
    if ok:
        model.fast_proba = fast
    else:
        log.info("fast path disagrees with predict_proba; using predict_proba")


def read_verified(path: str, digest: str | None) -> tuple[bytes, str]:
    """Read the artifact and check its sha256 before anything deserializes it."""
    expected = parse_digest(digest)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LoadError(f"cannot read model file {path}: {e.strerror or e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual != expected:
        raise LoadError(
            f"digest mismatch for {path}: expected sha256:{expected}, got sha256:{actual}; refusing to load",
            integrity=True,
        )
    return data, actual


def _deserialize(data: bytes, fmt: str, trusted: list[str]) -> Any:
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    if fmt == "pickle":
        return pickle.loads(data)
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
    if untrusted:
        raise LoadError(
            "skops file contains types that are not trusted: "
            + ", ".join(untrusted)
            + " (review them, then list them in MODELROLL_SERVER_TRUSTED_TYPES)"
        )
    return sio.loads(data, trusted=trusted or None)


def load_model(
    path: str, fmt: str | None = None, digest: str | None = None, trusted: list[str] | None = None
) -> LoadedModel:
    """Verify, deserialize, inspect and warm up the model; raises LoadError with one line."""
    import sklearn

    start = time.perf_counter()
    fmt = detect_format(path, fmt)
    try:
        data, sha = read_verified(path, digest)
    except ValueError as e:
        raise LoadError(str(e)) from e
    notes: list[str] = []
    trained_version: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est = _deserialize(data, fmt, trusted or [])
        except LoadError:
            raise
        except Exception as e:
            raise LoadError(f"cannot load {fmt} model {path}: {type(e).__name__}: {e}") from e
    del data
    for w in caught:
        original = getattr(w.message, "original_sklearn_version", None)
        if original is not None:
            trained_version = str(original)
    if trained_version is not None and trained_version != sklearn.__version__:
        msg = (
            f"model was trained with scikit-learn {trained_version} but the server runs "
            f"{sklearn.__version__}; predictions may differ"
        )
        notes.append(msg)
        log.warning(msg)
    if not hasattr(est, "predict"):
        raise LoadError(f"object in {path} ({type(est).__name__}) has no predict method")
    final = _final_step(est)
    classes = getattr(est, "classes_", None)
    classes_arr = np.asarray(classes) if classes is not None else None
    has_proba = hasattr(est, "predict_proba") and classes_arr is not None
    if has_proba:
        try:
            getattr(est, "predict_proba")  # noqa: B009 - some estimators raise on access
        except AttributeError:
            has_proba = False
    n_features = getattr(est, "n_features_in_", None)
    model = LoadedModel(
        estimator=est,
        format=fmt,
        sha256=sha,
        n_features=int(n_features) if n_features is not None else None,
        classes=classes_arr,
        has_proba=has_proba,
        derive_predict=(
            has_proba
            and type(final).__module__.startswith("sklearn.")
            and type(final).__name__ in _PREDICT_IS_ARGMAX_PROBA
        ),
        allow_nan=_allow_nan(est),
        float32_input=type(est).__module__.startswith(_FLOAT32_MODULES),
        trained_sklearn_version=trained_version or sklearn.__version__,
        runtime_sklearn_version=sklearn.__version__,
        warnings=notes,
    )
    _verified_fast_path(model)
    warm_up(model)
    model.load_seconds = time.perf_counter() - start
    return model


def warm_up(model: LoadedModel) -> None:
    """One real prediction: readiness must mean the model can answer."""
    if model.n_features is None:
        note = "model does not record n_features_in_; skipped the warm-up prediction"
        model.warnings.append(note)
        log.warning(note)
        return
    X = np.zeros((1, model.n_features), dtype=np.float64)
    try:
        pred, proba = model.run(X, True, model.has_proba)
    except Exception as e:
        raise LoadError(f"warm-up prediction failed: {type(e).__name__}: {e}") from e
    if pred is None or len(pred) != 1:
        raise LoadError("warm-up prediction did not return one row")
