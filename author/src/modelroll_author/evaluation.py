"""A model's metrics on labelled data, and the ``--min`` / ``--max`` checks (no I/O).

The numbers are scikit-learn's own (``sklearn.metrics``), computed with the arguments written
here once: for a binary classifier precision, recall and f1 are those of the positive class, the
greater of the two labels (``classes_[1]``), and roc_auc ranks by ``predict_proba[:, 1]`` or, for
a model without it, ``decision_function``; for more classes they are macro averages over
``classes_`` (roc_auc is not computed). A class that is never predicted scores 0
(``zero_division=0``) rather than warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from modelroll_contract.reference import TASK_CLASSIFIER, TASK_REGRESSOR

from .data import Dataset
from .errors import InputError
from .model import Model, call

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
METRICS = CLASSIFIER_METRICS + REGRESSOR_METRICS
LOWER_IS_BETTER = frozenset({"mae", "rmse"})  # errors: bounded with --max, never --min
METRICS_OF_TASK = {TASK_CLASSIFIER: CLASSIFIER_METRICS, TASK_REGRESSOR: REGRESSOR_METRICS}


@dataclass(frozen=True)
class Threshold:
    metric: str
    bound: str  # "min" (the value must be at least this) or "max" (at most)
    value: float

    def __str__(self) -> str:
        return f"--{self.bound} {self.metric}={self.value:g}"


def parse_threshold(text: str, bound: str) -> Threshold:
    """``METRIC=VALUE`` of ``--min`` or ``--max``; InputError naming what is wrong."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    example = "rmse=0.5" if bound == "max" else "accuracy=0.9"
    if not sep or not name:
        raise InputError(f"--{bound} {text!r}: expected METRIC=VALUE, for example --{bound} {example}")
    if name not in METRICS:
        raise InputError(f"--{bound} {name}: unknown metric; known: {', '.join(METRICS)}")
    if bound == "min" and name in LOWER_IS_BETTER:
        raise InputError(f"--min {name}: {name} is an error, lower is better; bound it with --max {name}=VALUE")
    if bound == "max" and name not in LOWER_IS_BETTER:
        raise InputError(f"--max {name}: higher {name} is better; bound it with --min {name}=VALUE")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"--{bound} {name}={raw}: the bound must be a finite number")
    return Threshold(name, bound, value)


def check_applicable(thresholds: list[Threshold], task: str) -> None:
    for t in thresholds:
        if t.metric not in METRICS_OF_TASK[task]:
            raise InputError(f"{t}: the model is a {task}; its metrics are {', '.join(METRICS_OF_TASK[task])}")


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python values, keys to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON; scikit-learn returns NaN for e.g. r2 of a single row
    return value


@dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]  # what --json prints
    predicted: np.ndarray  # the model's predict() on the data


def evaluate(model: Model, data: Dataset) -> Evaluation:
    """The report: ``task``, ``n_rows`` and the task's metrics (see the module docstring)."""
    if data.y is None:
        raise InputError("evaluation needs the target column (--target)")
    predicted = call(model, "predict", data.X, data.path)
    if predicted.ndim != 1:
        raise InputError(f"{model.path} predicts {predicted.ndim}-dimensional outputs; modelroll evaluates one target")
    report: dict[str, Any] = {"task": model.task, "n_rows": data.rows, "model": model.path, "data": data.path}
    if model.task == TASK_CLASSIFIER:
        report.update(_classifier_metrics(model, data, predicted))
    else:
        report.update(_regressor_metrics(data.y, predicted))
    return Evaluation(dict(_plain(report)), predicted)


def _classifier_metrics(model: Model, data: Dataset, predicted: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics

    y = data.y
    classes = model.loaded.classes
    assert y is not None and classes is not None
    labels = model.class_labels
    binary = len(classes) == 2
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro", "labels": classes}
    )
    out: dict[str, Any] = {
        "classes": labels,
        "positive_class": labels[1] if binary else None,
        "average": averaging["average"],
        "accuracy": metrics.accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted, zero_division=0, **averaging),
        "recall": metrics.recall_score(y, predicted, zero_division=0, **averaging),
        "f1": metrics.f1_score(y, predicted, zero_division=0, **averaging),
        "roc_auc": None,
    }
    notes: list[str] = []
    if not binary:
        notes.append("roc_auc is computed for binary classifiers only")
    elif len(np.unique(y)) < 2:
        notes.append("roc_auc is undefined: the target column holds one class only")
    else:
        if model.loaded.has_proba:
            scores = call(model, "predict_proba", data.X, data.path)[:, 1]
        else:
            scores = call(model, "decision_function", data.X, data.path)
        out["roc_auc"] = metrics.roc_auc_score(y == classes[1], scores)
    out["confusion_matrix"] = metrics.confusion_matrix(y, predicted, labels=classes)
    out["classification_report"] = metrics.classification_report(
        y, predicted, labels=classes, target_names=labels, output_dict=True, zero_division=0
    )
    out["notes"] = notes
    return out


def _regressor_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics

    return {
        "mae": metrics.mean_absolute_error(y, predicted),
        "rmse": metrics.root_mean_squared_error(y, predicted),
        "r2": metrics.r2_score(y, predicted),
        "notes": [],
    }


def check(report: dict[str, Any], thresholds: list[Threshold]) -> list[str]:
    """One line per threshold not met (empty when all pass); records them in report["checks"]."""
    failures = []
    checks = []
    for t in thresholds:
        value = report.get(t.metric)
        if value is None:
            passed = False
            why = f" ({'; '.join(report['notes'])})" if report["notes"] else ""
            failures.append(f"{t.metric} could not be computed, so {t} is not met{why}")
        else:
            passed = value >= t.value if t.bound == "min" else value <= t.value
            if not passed:
                relation = "below its minimum" if t.bound == "min" else "above its maximum"
                failures.append(f"{t.metric} {value:.6g} is {relation} {t.value:g}")
        checks.append({"metric": t.metric, t.bound: t.value, "value": value, "passed": passed})
    report["checks"] = checks
    return failures


def text_report(model: Model, data: Dataset, evaluation: Evaluation) -> str:
    """The report for a terminal: metrics, then (classifiers) the confusion matrix and
    scikit-learn's classification report."""
    report = evaluation.report
    lines = [
        f"model     {model.path} ({type(model.estimator).__name__}, {model.task})",
        f"data      {data.path}: {data.rows} rows",
    ]
    for name in METRICS_OF_TASK[model.task]:
        value = report[name]
        shown = "n/a" if value is None else f"{value:.4f}"
        if name == "precision" and report.get("positive_class") is not None:
            shown += f"   (positive class {report['positive_class']})"
        elif name == "precision":
            shown += "   (macro average)"
        lines.append(f"{name:<9} {shown}")
    for note in report["notes"]:
        lines.append(f"note      {note}")
    if model.task == TASK_CLASSIFIER:
        from sklearn.metrics import classification_report

        labels = report["classes"]
        cells = [str(n) for row in report["confusion_matrix"] for n in row]
        width = 1 + max(5, *(len(c) for c in labels + cells))
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines.append(" " * width + "".join(f"{label:>{width}}" for label in labels))
        for label, row in zip(labels, report["confusion_matrix"], strict=True):
            lines.append(f"{label:>{width}}" + "".join(f"{n:>{width}}" for n in row))
        text = classification_report(
            data.y, evaluation.predicted, labels=model.loaded.classes, target_names=labels, zero_division=0, digits=4
        )
        lines += ["", text.rstrip()]
    return "\n".join(lines)
