"""Labelled or reference data from a CSV file, matched to the model's inputs (reads one file).

The CSV's header names the columns. When the model was fitted on a DataFrame its
``feature_names_in_`` say which columns it takes, in which order; otherwise every column but the
target is a feature, in the file's order, and their count must be the model's
``n_features_in_``. Any mismatch is an ``InputError`` naming the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from modelroll_contract.reference import TASK_CLASSIFIER

from .errors import InputError
from .model import Model

SHOWN = 6  # column names or labels quoted in one message


def _names(items: list[Any]) -> str:
    shown = ", ".join(repr(i) for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


@dataclass(frozen=True)
class Dataset:
    path: str
    X: Any  # a DataFrame (the model has feature_names_in_) or an ndarray, as the model was fitted
    features: pd.DataFrame  # the feature columns, in the model's order
    y: np.ndarray | None  # the target column, labels aligned to the model's classes_
    feature_names: list[str]

    @property
    def rows(self) -> int:
        return len(self.features)

    def numeric_features(self) -> np.ndarray:
        """The features as the float64 matrix the server receives; InputError naming a column
        that is not numbers."""
        for name in self.features.columns:
            if not pd.api.types.is_numeric_dtype(self.features[name]):
                raise InputError(
                    f"{self.path}: feature column {name!r} is not numeric "
                    f"(first value {self.features[name].iloc[0]!r}); the server takes numbers only"
                )
        return np.asarray(self.features.to_numpy(dtype=np.float64))


def read_csv(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise InputError(f"{path}: is a directory, not a CSV file") from e
    except pd.errors.EmptyDataError as e:
        raise InputError(f"{path}: empty file, no CSV header") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV file: {str(e).strip().splitlines()[0]}") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(df) == 0:
        raise InputError(f"{path}: a header and no rows")
    return df


def _align_labels(path: str, target: str, column: pd.Series[Any], model: Model) -> np.ndarray:
    """The target's labels as the model's own values (a CSV of "yes"/"no" or of 0/1 may be read
    as other types than the labels the model was fitted with)."""
    classes = model.classes
    values = column.tolist()
    known = set(classes)
    if all(v in known for v in values):
        out = values
    else:
        by_text = {str(c): c for c in classes}
        unknown = sorted({str(v) for v in values if str(v) not in by_text})
        if unknown:
            raise InputError(
                f"{path}: column {target!r} has labels the model does not know: {_names(unknown)} "
                f"(its classes: {_names([str(c) for c in classes])})"
            )
        out = [by_text[str(v)] for v in values]
    return np.asarray(out, dtype=model.loaded.classes.dtype if model.loaded.classes is not None else None)


def match(df: pd.DataFrame, path: str, model: Model, target: str | None) -> Dataset:
    """Split ``df`` into the model's features and the target; InputError on any mismatch."""
    columns = [str(c) for c in df.columns]
    df.columns = pd.Index(columns)
    y = None
    if target is not None:
        if target not in columns:
            raise InputError(f"{path}: no column {target!r} (the --target); its columns: {_names(columns)}")
        column = df[target]
        empty = int(column.isna().sum())
        if empty:
            raise InputError(f"{path}: column {target!r} (the --target) has {empty} empty values")
        if model.task == TASK_CLASSIFIER:
            y = _align_labels(path, target, column, model)
        else:
            if not pd.api.types.is_numeric_dtype(column):
                raise InputError(f"{path}: column {target!r} (the --target) is not numeric; the model is a regressor")
            y = column.to_numpy(dtype=np.float64)
    candidates = [c for c in columns if c != target]
    hint = "" if target is not None else "; if one of them is the label, name it with --target"
    names = model.feature_names
    if names is not None:
        missing = [n for n in names if n not in candidates]
        extra = [c for c in candidates if c not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {_names(missing)}")
            if extra:
                parts.append(f"not features of the model: {_names(extra)}{hint}")
            raise InputError(f"{path}: columns do not match the model's feature_names_in_: {'; '.join(parts)}")
        features = df[names]
        return Dataset(path, features, features, y, names)
    features = df[candidates]
    n = model.n_features
    if n is not None and len(candidates) != n:
        raise InputError(f"{path}: {len(candidates)} feature columns ({_names(candidates)}), the model takes {n}{hint}")
    # Fitted on an array: give it an array, so scikit-learn sees no names it was not fitted with.
    return Dataset(path, features.to_numpy(), features, y, candidates)
