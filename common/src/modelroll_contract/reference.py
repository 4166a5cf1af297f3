"""The reference statistics of a model: what its inputs and outputs looked like when it was packaged.

``modelroll package`` writes one ``reference.json`` beside the artifact; the inference server
will read it to compare a window of live inputs and predictions with it (the population
stability index per feature). This module is the file's only definition: the dataclasses, the
binning rule, a writer (``dumps``) and a reader (``loads``) that refuses anything malformed with
an error naming the key. Pure Python, no numpy, no I/O: the operator image imports it too.

Every distribution over numbers is a ``Histogram`` with the bins Prometheus uses: ``edges`` are
strictly increasing upper bounds, bin ``i`` holds the values ``x`` with
``edges[i-1] < x <= edges[i]``, the first bin everything up to ``edges[0]`` and one more bin
everything above ``edges[-1]``, so there are ``len(edges) + 1`` proportions. The end bins are
open, so a live value outside the reference's range still lands in a bin. A value that is not a
number (NaN) is counted in ``missing``; the proportions and ``missing`` add up to 1. The
documentation with an example is docs/lifecycle.md.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import METHODS, MODEL_FORMATS

FORMAT_VERSION = 1
REFERENCE_FILE = "reference.json"
TASK_CLASSIFIER = "classifier"
TASK_REGRESSOR = "regressor"
TASKS = (TASK_CLASSIFIER, TASK_REGRESSOR)
SUM_TOLERANCE = 1e-6  # proportions are counts / rows in floating point


class ReferenceError(ValueError):
    """The reference statistics are malformed; the message names the key."""


@dataclass(frozen=True)
class Histogram:
    """Proportions of values per bin (see the module docstring for the bins)."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    missing: float = 0.0

    def bin_index(self, value: float) -> int | None:
        """The bin of ``value``: 0 .. len(edges); None for NaN (counted in ``missing``)."""
        return bin_index(self.edges, value)


@dataclass(frozen=True)
class Feature:
    """Input column ``i`` of the model (``features[i]`` is the i-th value of an input row)."""

    name: str
    histogram: Histogram


@dataclass(frozen=True)
class ModelInfo:
    """The artifact these statistics describe; ``artifact`` is its file name beside reference.json."""

    artifact: str
    digest: str  # sha256:<64 hex> of the artifact's bytes
    format: str  # one of modelroll_contract.MODEL_FORMATS
    version: str | None
    method: str  # predict | predict_proba: what spec.model.method should be
    estimator: str  # the estimator's class, module-qualified
    task: str  # classifier | regressor


@dataclass(frozen=True)
class Reference:
    sklearn_version: str
    model: ModelInfo
    rows: int  # rows of reference data the statistics were computed from
    features: tuple[Feature, ...]
    # Classifiers: the labels as the server names them (str of each of classes_), and the
    # share of the reference rows predicted as each, in that order. Regressors: None.
    classes: tuple[str, ...] | None
    class_proportions: tuple[float, ...] | None
    # Regressors: the predictions' histogram (quantile bins). Classifiers: None.
    prediction_histogram: Histogram | None
    # Classifiers with predict_proba: the top-class probability over the server's
    # modelroll_prediction_confidence buckets. Otherwise None.
    confidence: Histogram | None
    format_version: int = FORMAT_VERSION

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def n_features(self) -> int:
        return len(self.features)


# --- the binning rule -------------------------------------------------------------------
def bin_index(edges: Sequence[float], value: float) -> int | None:
    """The bin of ``value`` for upper bounds ``edges`` (Prometheus' ``le``); None for NaN."""
    if math.isnan(value):
        return None
    return bisect.bisect_left(edges, value)


def histogram(edges: Sequence[float], values: Iterable[float]) -> Histogram:
    """The proportions of ``values`` per bin of ``edges``, NaN counted as missing."""
    counts = [0] * (len(edges) + 1)
    missing = total = 0
    for v in values:
        total += 1
        i = bin_index(edges, v)
        if i is None:
            missing += 1
        else:
            counts[i] += 1
    if total == 0:
        raise ReferenceError("a histogram needs at least one value")
    return Histogram(tuple(float(e) for e in edges), tuple(c / total for c in counts), missing / total)


# --- writer ------------------------------------------------------------------------------
def _histogram_dict(h: Histogram, with_missing: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"edges": list(h.edges), "proportions": list(h.proportions)}
    if with_missing:
        out["missing"] = h.missing
    return out


def to_dict(ref: Reference) -> dict[str, Any]:
    """The JSON object of ``ref`` (validated: a Reference that ``loads`` would refuse raises)."""
    m = ref.model
    predictions: dict[str, Any]
    if ref.class_proportions is not None:
        predictions = {"proportions": list(ref.class_proportions)}
    elif ref.prediction_histogram is not None:
        predictions = _histogram_dict(ref.prediction_histogram, with_missing=False)
    else:
        raise ReferenceError("predictions: a reference needs class_proportions or prediction_histogram")
    doc = {
        "format_version": ref.format_version,
        "sklearn_version": ref.sklearn_version,
        "model": {
            "artifact": m.artifact,
            "digest": m.digest,
            "format": m.format,
            "version": m.version,
            "method": m.method,
            "estimator": m.estimator,
            "task": m.task,
        },
        "rows": ref.rows,
        "n_features": ref.n_features,
        "feature_names": list(ref.feature_names),
        "classes": None if ref.classes is None else list(ref.classes),
        "features": [{"name": f.name, **_histogram_dict(f.histogram)} for f in ref.features],
        "predictions": predictions,
        "confidence": None if ref.confidence is None else _histogram_dict(ref.confidence, with_missing=False),
    }
    from_dict(doc)  # the writer never writes what the reader refuses
    return doc


def _emit(value: Any, indent: str) -> str:
    """JSON, objects one key a line, lists of scalars on one line (a histogram is one line)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_emit(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + _emit(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))


def dumps(ref: Reference) -> bytes:
    """The bytes of reference.json: strict JSON (no NaN), newline-terminated, the same bytes for
    the same statistics (no timestamp), so re-packaging the same model gives the same digest."""
    return (_emit(to_dict(ref), "") + "\n").encode()


# --- reader ------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ReferenceError(f"{name} is not JSON: reference values must be finite numbers")


def loads(data: bytes | str) -> Reference:
    """Parse and validate reference.json; ReferenceError names the first bad key."""
    try:
        doc = json.loads(data, parse_constant=_refuse_constant)
    except ReferenceError:
        raise
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ReferenceError(f"not JSON: {e}") from e
    return from_dict(doc)


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise ReferenceError(f"{where}{key}: missing")
    return obj[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ReferenceError(f"{where or 'reference'}: expected an object, got {type(value).__name__}")
    return value


def _str(value: Any, where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ReferenceError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ReferenceError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReferenceError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ReferenceError(f"{where}: expected a list of numbers, got {type(value).__name__}")
    return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))


def _proportions(value: Any, where: str, n: int, missing: float, missing_key: str) -> tuple[float, ...]:
    props = _numbers(value, where)
    if len(props) != n:
        raise ReferenceError(f"{where}: expected {n} proportions, got {len(props)}")
    for i, p in enumerate(props):
        if not 0.0 <= p <= 1.0:
            raise ReferenceError(f"{where}[{i}]: a proportion must be within [0, 1], got {p!r}")
    total = math.fsum(props) + missing
    if abs(total - 1.0) > SUM_TOLERANCE:
        also = f" and {missing_key}" if missing_key else ""
        raise ReferenceError(f"{where}{also}: must add up to 1, add up to {total!r}")
    return props


def _histogram(value: Any, where: str, with_missing: bool) -> Histogram:
    obj = _object(value, where)
    edges = _numbers(_get(obj, "edges", f"{where}."), f"{where}.edges")
    for i in range(1, len(edges)):
        if not edges[i - 1] < edges[i]:
            raise ReferenceError(
                f"{where}.edges[{i}]: edges must be strictly increasing, {edges[i - 1]!r} >= {edges[i]!r}"
            )
    missing = 0.0
    if with_missing:
        missing = _number(_get(obj, "missing", f"{where}."), f"{where}.missing")
        if not 0.0 <= missing <= 1.0:
            raise ReferenceError(f"{where}.missing: a proportion must be within [0, 1], got {missing!r}")
    props = _proportions(
        _get(obj, "proportions", f"{where}."),
        f"{where}.proportions",
        len(edges) + 1,
        missing,
        f"{where}.missing" if with_missing else "",
    )
    return Histogram(edges, props, missing)


def from_dict(value: Any) -> Reference:
    """Validate a parsed reference.json object (see ``loads``)."""
    doc = _object(value, "")
    version = _get(doc, "format_version", "")
    if version != FORMAT_VERSION:
        raise ReferenceError(f"format_version: this reader knows {FORMAT_VERSION}, got {version!r}")
    m = _object(_get(doc, "model", ""), "model")
    fmt = _str(_get(m, "format", "model."), "model.format")
    if fmt not in MODEL_FORMATS:
        raise ReferenceError(f"model.format: expected one of {', '.join(MODEL_FORMATS)}, got {fmt!r}")
    method = _str(_get(m, "method", "model."), "model.method")
    if method not in METHODS:
        raise ReferenceError(f"model.method: expected one of {', '.join(METHODS)}, got {method!r}")
    task = _str(_get(m, "task", "model."), "model.task")
    if task not in TASKS:
        raise ReferenceError(f"model.task: expected one of {', '.join(TASKS)}, got {task!r}")
    digest = _str(_get(m, "digest", "model."), "model.digest")
    hexpart = digest.removeprefix("sha256:")
    if not digest.startswith("sha256:") or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ReferenceError(f"model.digest: expected sha256:<64 lower-case hex digits>, got {digest!r}")
    model = ModelInfo(
        artifact=_str(_get(m, "artifact", "model."), "model.artifact"),
        digest=digest,
        format=fmt,
        version=_str(_get(m, "version", "model."), "model.version", optional=True),
        method=method,
        estimator=_str(_get(m, "estimator", "model."), "model.estimator"),
        task=task,
    )

    rows = _int(_get(doc, "rows", ""), "rows", 1)
    n_features = _int(_get(doc, "n_features", ""), "n_features", 1)
    names = _get(doc, "feature_names", "")
    if not isinstance(names, list) or len(names) != n_features:
        raise ReferenceError(f"feature_names: expected a list of n_features ({n_features}) names, got {names!r}")
    names = [_str(n, f"feature_names[{i}]") for i, n in enumerate(names)]
    raw_features = _get(doc, "features", "")
    if not isinstance(raw_features, list) or len(raw_features) != n_features:
        got = len(raw_features) if isinstance(raw_features, list) else type(raw_features).__name__
        raise ReferenceError(f"features: expected a list of n_features ({n_features}) entries, got {got}")
    features = []
    for i, raw in enumerate(raw_features):
        where = f"features[{i}]"
        name = _str(_get(_object(raw, where), "name", f"{where}."), f"{where}.name")
        if name != names[i]:
            raise ReferenceError(f"{where}.name: {name!r} is not feature_names[{i}] ({names[i]!r})")
        features.append(Feature(name, _histogram(raw, where, with_missing=True)))

    raw_classes = _get(doc, "classes", "")
    predictions = _object(_get(doc, "predictions", ""), "predictions")
    raw_confidence = _get(doc, "confidence", "")
    classes: tuple[str, ...] | None = None
    class_props: tuple[float, ...] | None = None
    pred_hist: Histogram | None = None
    confidence: Histogram | None = None
    if task == TASK_CLASSIFIER:
        if not isinstance(raw_classes, list) or len(raw_classes) < 2:
            raise ReferenceError(f"classes: a classifier needs a list of at least 2 labels, got {raw_classes!r}")
        classes = tuple(_str(c, f"classes[{i}]") for i, c in enumerate(raw_classes))
        if len(set(classes)) != len(classes):
            raise ReferenceError(f"classes: labels must be distinct, got {list(classes)!r}")
        if "edges" in predictions:
            raise ReferenceError("predictions.edges: a classifier's predictions are proportions per class")
        class_props = _proportions(
            _get(predictions, "proportions", "predictions."), "predictions.proportions", len(classes), 0.0, ""
        )
        if raw_confidence is not None:
            confidence = _histogram(raw_confidence, "confidence", with_missing=False)
    else:
        if raw_classes is not None:
            raise ReferenceError(f"classes: a regressor has no classes (null), got {raw_classes!r}")
        if raw_confidence is not None:
            raise ReferenceError("confidence: a regressor has no confidence (null)")
        pred_hist = _histogram(predictions, "predictions", with_missing=False)
    if method == "predict_proba" and confidence is None:
        raise ReferenceError("confidence: a predict_proba model needs its confidence histogram")

    return Reference(
        sklearn_version=_str(_get(doc, "sklearn_version", ""), "sklearn_version"),
        model=model,
        rows=rows,
        features=tuple(features),
        classes=classes,
        class_proportions=class_props,
        prediction_histogram=pred_hist,
        confidence=confidence,
        format_version=FORMAT_VERSION,
    )
