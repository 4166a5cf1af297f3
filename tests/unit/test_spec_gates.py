"""The CRD's CEL rules on analysis gates, as spec.py mirrors them: errorRate takes max,
maxIncrease or both; detect must lie beyond its gate's threshold and only errorRate,
predictionShift and featureDrift take it; featureDrift needs maxPSI; liveAccuracy takes min or
maxDrop (classifiers) or maxMeanAbsError (regressors); significance reaches the typed Analysis (pure). The API server's
side of the same rules is tests/e2e/test_crd_admission.py."""

from pathlib import Path

import pytest
import yaml
from modelroll.spec import Gate, SpecError, parse_spec

DIGEST = "sha256:" + "0" * 64
GATES = "spec.strategy.canary.analysis.gates"


def spec(gates, **analysis):
    return {
        "model": {"uri": "s3://models/fraud/v7/model.joblib", "digest": DIGEST},
        "strategy": {
            "type": "Canary",
            "canary": {"steps": [{"setWeight": 10}], "analysis": {"gates": gates, **analysis}},
        },
    }


@pytest.mark.parametrize(
    ("gate", "want"),
    [
        ({"builtin": "errorRate", "maxIncrease": 0.01}, Gate("errorRate", builtin="errorRate", max_increase=0.01)),
        (
            {"builtin": "errorRate", "max": 0.02, "maxIncrease": 0.01, "detect": 0.05},
            Gate("errorRate", builtin="errorRate", max=0.02, max_increase=0.01, detect=0.05),
        ),
        (  # without max, detect is the increase to catch
            {"builtin": "errorRate", "maxIncrease": 0.01, "detect": 0.03},
            Gate("errorRate", builtin="errorRate", max_increase=0.01, detect=0.03),
        ),
        (
            {"builtin": "predictionShift", "maxPSI": 0.2, "detect": 0.5},
            Gate("predictionShift", builtin="predictionShift", max_psi=0.2, detect=0.5),
        ),
        (
            {"builtin": "featureDrift", "maxPSI": 0.1, "detect": 0.3, "features": ["age", "income"]},
            Gate("featureDrift", builtin="featureDrift", max_psi=0.1, detect=0.3, features=("age", "income")),
        ),
        ({"builtin": "featureDrift", "maxPSI": 0.1}, Gate("featureDrift", builtin="featureDrift", max_psi=0.1)),
        (
            {"builtin": "liveAccuracy", "min": 0.9, "maxDrop": 0.02, "minLabels": 50},
            Gate("liveAccuracy", builtin="liveAccuracy", min=0.9, max_drop=0.02, min_labels=50),
        ),
        (
            {"name": "mae", "builtin": "liveAccuracy", "maxMeanAbsError": 3.5},
            Gate("mae", builtin="liveAccuracy", max_mean_abs_error=3.5),
        ),
    ],
)
def test_valid_gates_parse(gate, want):
    analysis = parse_spec(spec([gate])).strategy.canary.analysis
    assert analysis.gates == (want,)


@pytest.mark.parametrize(
    ("gate", "field", "words"),
    [
        ({"builtin": "errorRate"}, "max", "needs max, maxIncrease or both"),
        ({"builtin": "errorRate", "max": 0.05, "detect": 0.05}, "detect", "must be above max"),
        ({"builtin": "errorRate", "max": 0.05, "detect": 0.01}, "detect", "must be above max"),
        # with max set, detect is a share above max, even if it is below maxIncrease
        ({"builtin": "errorRate", "max": 0.05, "maxIncrease": 0.1, "detect": 0.04}, "detect", "must be above max"),
        ({"builtin": "errorRate", "maxIncrease": 0.02, "detect": 0.02}, "detect", "must be above maxIncrease"),
        ({"builtin": "errorRate", "max": 0.05, "detect": 1.5}, "detect", "must be between 0 and 1"),
        ({"builtin": "predictionShift", "maxPSI": 0.2, "detect": 0.2}, "detect", "must be above maxPSI"),
        ({"builtin": "latencyP99", "max": 200, "detect": 50}, "detect", "only allowed with builtin errorRate, predi"),
        ({"builtin": "featureDrift"}, "maxPSI", "featureDrift needs maxPSI"),
        ({"builtin": "featureDrift", "maxPSI": 0.2, "detect": 0.1}, "detect", "must be above maxPSI"),
        ({"builtin": "featureDrift", "maxPSI": 0}, "maxPSI", "must be above 0 for builtin featureDrift"),
        ({"builtin": "featureDrift", "maxPSI": 0.2, "features": []}, "features", "at least 1 item"),
        ({"builtin": "featureDrift", "maxPSI": 0.2, "features": [""]}, "features[0]", "at least 1 characters"),
        ({"builtin": "predictionShift", "maxPSI": 0.2, "features": ["a"]}, "features", "only allowed with builtin fea"),
        ({"builtin": "liveAccuracy", "min": 1.5}, "min", "must be at most 1"),
        ({"builtin": "liveAccuracy", "maxDrop": -0.1}, "maxDrop", "must be at least 0"),
        ({"builtin": "liveAccuracy", "min": 0.9, "maxMeanAbsError": 1}, "maxMeanAbsError", "cannot be combined"),
        ({"builtin": "liveAccuracy", "min": 0.9, "minLabels": 0}, "minLabels", "must be at least 1"),
        ({"builtin": "errorRate", "max": 0.1, "min": 0.9}, "min", "only allowed with builtin liveAccuracy"),
        ({"builtin": "errorRate", "max": 0.1, "minLabels": 10}, "minLabels", "only allowed with builtin liveAccuracy"),
        ({"builtin": "liveAccuracy", "min": 0.9, "maxPSI": 0.1}, "maxPSI", "predictionShift or featureDrift"),
        ({"builtin": "latencyP99", "max": 200, "maxIncrease": 0.1}, "maxIncrease", "only allowed with builtin error"),
        ({"builtin": "predictionShift", "maxPSI": 0.2, "maxIncrease": 0.1}, "maxIncrease", "only allowed with"),
        ({"builtin": "errorRate", "maxIncrease": 1.5}, "maxIncrease", "must be at most 1"),
        ({"builtin": "errorRate", "max": 0.05, "detect": 0}, "detect", "must be greater than 0"),
    ],
)
def test_invalid_gates_name_the_field(gate, field, words):
    with pytest.raises(SpecError) as info:
        parse_spec(spec([gate]))
    assert info.value.path == f"{GATES}[0].{field}"
    assert words in info.value.message


def test_significance_is_read_and_bounded():
    gate = {"builtin": "errorRate", "max": 0.01}
    assert parse_spec(spec([gate])).strategy.canary.analysis.significance == 0.01  # the CRD's default
    assert parse_spec(spec([gate], significance=0.05)).strategy.canary.analysis.significance == 0.05
    for bad, words in ((0.5, "must be at most 0.2"), (0.0001, "must be at least 0.001")):
        with pytest.raises(SpecError) as info:
            parse_spec(spec([gate], significance=bad))
        assert info.value.path == "spec.strategy.canary.analysis.significance" and words in info.value.message


def test_live_accuracy_needs_a_threshold_named_on_the_gate():
    with pytest.raises(SpecError) as info:
        parse_spec(spec([{"builtin": "liveAccuracy", "minLabels": 10}]))
    assert info.value.path == f"{GATES}[0]"
    assert "needs min or maxDrop (classifiers), or maxMeanAbsError (regressors)" in info.value.message


# The CRD's own CEL rules for the new gates, each on the gate and naming its field (the API
# server's verdicts on them are tests/e2e/test_crd_admission.py).
CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "modeldeployment.yaml").read_text())


def gate_rules(analysis_path):
    node = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in analysis_path.split(".")[:-1]:
        node = node["properties"][part]
    node = node["properties"][analysis_path.split(".")[-1]]["properties"]["gates"]["items"]
    return node, {r["rule"]: r for r in node["x-kubernetes-validations"]}


@pytest.mark.parametrize(
    "where",
    [
        "spec.strategy.canary.analysis",
        "spec.strategy.blueGreen.prePromotionAnalysis",
        "spec.strategy.blueGreen.postPromotionAnalysis",
        "spec.strategy.canary.postPromotionAnalysis",
    ],
)
@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("!has(self.builtin) || self.builtin != 'featureDrift' || has(self.maxPSI)", ".maxPSI", "maxPSI is required"),
        (
            "!has(self.builtin) || self.builtin != 'featureDrift' || !has(self.maxPSI) || self.maxPSI > 0.0",
            ".maxPSI",
            "maxPSI for builtin featureDrift must be above 0",
        ),
        (
            "!has(self.builtin) || self.builtin != 'liveAccuracy' || has(self.min) || has(self.maxDrop) || "
            "has(self.maxMeanAbsError)",
            None,
            "with builtin liveAccuracy must set min or maxDrop (classifiers), or maxMeanAbsError (regressors)",
        ),
        ("!has(self.maxMeanAbsError) || (!has(self.min) && !has(self.maxDrop))", ".maxMeanAbsError", "cannot be comb"),
        ("!has(self.features) || (has(self.builtin) && self.builtin == 'featureDrift')", ".features", "only allowed"),
        ("!has(self.min) || (has(self.builtin) && self.builtin == 'liveAccuracy')", ".min", "only allowed"),
        ("!has(self.maxDrop) || (has(self.builtin) && self.builtin == 'liveAccuracy')", ".maxDrop", "only allowed"),
        ("!has(self.minLabels) || (has(self.builtin) && self.builtin == 'liveAccuracy')", ".minLabels", "only allowed"),
        (
            "!has(self.detect) || !has(self.builtin) || self.builtin != 'featureDrift' || !has(self.maxPSI) || "
            "self.detect > self.maxPSI",
            ".detect",
            "detect for builtin featureDrift must be above maxPSI",
        ),
    ],
)
def test_the_crd_rules_of_the_new_gates(where, rule, field, message):
    _, rules = gate_rules(where)
    got = rules[rule]
    assert got.get("fieldPath") == field
    assert got["message"].startswith(f"{where}.gates[]{field or ''}") and message in got["message"]


def test_the_crd_bounds_of_the_new_gates():
    node, _ = gate_rules("spec.strategy.canary.analysis")
    props = node["properties"]
    for share in ("min", "maxDrop"):
        assert (props[share]["minimum"], props[share]["maximum"]) == (0, 1)
    assert props["maxPSI"]["minimum"] == 0  # predictionShift takes 0; featureDrift's CEL rule wants more
    assert {"featureDrift", "liveAccuracy"} <= set(props["builtin"]["enum"])
