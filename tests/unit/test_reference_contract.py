"""The reference statistics' format (modelroll_contract.reference): the bins, the writer, and a
reader that refuses a malformed file with the key named."""

from __future__ import annotations

import copy
import json
import math

import pytest
from modelroll_contract import reference as contract

DIGEST = "sha256:" + "ab" * 32


def _classifier() -> contract.Reference:
    return contract.Reference(
        sklearn_version="1.9.1",
        model=contract.ModelInfo(
            "model.skops", DIGEST, "skops", "v7", "predict_proba", "x.LogisticRegression", "classifier"
        ),
        rows=4,
        features=(
            contract.Feature("age", contract.histogram([30.0, 40.0], [25.0, 30.0, 41.0, math.nan])),
            contract.Feature("smoker", contract.histogram([0.0], [0.0, 1.0, 1.0, 1.0])),
        ),
        classes=("no", "yes"),
        class_proportions=(0.25, 0.75),
        prediction_histogram=None,
        confidence=contract.histogram([0.5, 0.9, 1.0], [0.6, 0.95, 0.7, 0.99]),
    )


def _regressor() -> contract.Reference:
    return contract.Reference(
        sklearn_version="1.9.1",
        model=contract.ModelInfo("model.joblib", DIGEST, "joblib", None, "predict", "x.Ridge", "regressor"),
        rows=2,
        features=(contract.Feature("x0", contract.histogram([1.5], [1.0, 2.0])),),
        classes=None,
        class_proportions=None,
        prediction_histogram=contract.histogram([10.0], [5.0, 20.0]),
        confidence=None,
    )


def test_bins_are_prometheus_le_buckets():
    edges = [1.0, 2.0]
    assert [contract.bin_index(edges, v) for v in (-1e300, 1.0, 1.5, 2.0, 2.0001, math.inf)] == [0, 0, 1, 1, 2, 2]
    assert contract.bin_index(edges, math.nan) is None
    h = contract.histogram(edges, [0.5, 1.0, 3.0, math.nan])
    assert h.proportions == (0.5, 0.0, 0.25) and h.missing == 0.25
    assert h.bin_index(1.5) == 1


@pytest.mark.parametrize("ref", [_classifier(), _regressor()], ids=["classifier", "regressor"])
def test_written_bytes_read_back_equal(ref):
    raw = contract.dumps(ref)
    assert contract.loads(raw) == ref
    assert contract.dumps(contract.loads(raw)) == raw and raw.endswith(b"\n")
    assert json.loads(raw)["format_version"] == contract.FORMAT_VERSION == 1


def _broken(change) -> str:
    doc = copy.deepcopy(contract.to_dict(_classifier()))
    change(doc)
    with pytest.raises(contract.ReferenceError) as e:
        contract.loads(json.dumps(doc))
    return str(e.value)


def _pop(key):
    return lambda d: d.pop(key)


def _set(path, value):
    def change(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        d[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_pop("format_version"), "format_version: missing"),
        (_set(["format_version"], 2), "format_version: this reader knows 1, got 2"),
        (_pop("rows"), "rows: missing"),
        (_set(["rows"], 0), "rows: expected an integer >= 1, got 0"),
        (_set(["model", "digest"], "sha256:abc"), "model.digest: expected sha256:<64 lower-case hex digits>"),
        (_set(["model", "format"], "onnx"), "model.format: expected one of joblib, pickle, skops, got 'onnx'"),
        (_set(["model", "task"], "clustering"), "model.task: expected one of classifier, regressor"),
        (lambda d: d["model"].pop("artifact"), "model.artifact: missing"),
        (_set(["n_features"], 3), "feature_names: expected a list of n_features (3) names"),
        (_set(["feature_names"], ["age", "smokes"]), "features[1].name: 'smoker' is not feature_names[1] ('smokes')"),
        (_set(["features", 0, "edges"], [40.0, 30.0]), "features[0].edges[1]: edges must be strictly increasing"),
        (_set(["features", 0, "edges"], [30.0]), "features[0].proportions: expected 2 proportions, got 3"),
        (
            _set(["features", 0, "proportions"], [0.5, 0.5, 0.5]),
            "features[0].proportions and features[0].missing: must add up to 1",
        ),
        (
            _set(["features", 1, "proportions"], [1.5, -0.5]),
            "features[1].proportions[0]: a proportion must be within [0, 1]",
        ),
        (lambda d: d["features"][0].pop("missing"), "features[0].missing: missing"),
        (_set(["features", 0, "edges"], [30.0, "40"]), "features[0].edges[1]: expected a finite number, got '40'"),
        (_set(["classes"], ["yes"]), "classes: a classifier needs a list of at least 2 labels"),
        (_set(["classes"], ["yes", "yes"]), "classes: labels must be distinct"),
        (_set(["predictions", "proportions"], [1.0]), "predictions.proportions: expected 2 proportions, got 1"),
        (
            _set(["predictions", "edges"], [0.5]),
            "predictions.edges: a classifier's predictions are proportions per class",
        ),
        (_set(["confidence"], None), "confidence: a predict_proba model needs its confidence histogram"),
        (_set(["model", "task"], "regressor"), "classes: a regressor has no classes (null)"),
    ],
)
def test_the_reader_names_the_bad_key(change, message):
    assert message in _broken(change)


def test_not_json_and_non_finite_numbers_are_refused():
    with pytest.raises(contract.ReferenceError, match="not JSON"):
        contract.loads(b"{")
    raw = contract.dumps(_classifier()).replace(b"[30.0, 40.0]", b"[30.0, NaN]")
    with pytest.raises(contract.ReferenceError, match="NaN is not JSON"):
        contract.loads(raw)
    with pytest.raises(contract.ReferenceError, match="reference: expected an object, got list"):
        contract.loads(b"[]")


def test_the_writer_refuses_what_the_reader_would():
    ref = _classifier()
    bad = contract.Reference(**{**ref.__dict__, "class_proportions": (0.5, 0.6)})
    with pytest.raises(contract.ReferenceError, match="predictions.proportions: must add up to 1"):
        contract.dumps(bad)


def test_the_contract_needs_no_numpy():
    """The operator image imports the contract: the module must not import numpy (or anything
    outside the standard library)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(contract))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level
    }
    import sys

    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
