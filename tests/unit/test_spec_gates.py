"""The CRD's CEL rules on analysis gates, as spec.py mirrors them: errorRate takes max,
maxIncrease or both; detect must lie beyond its gate's threshold and only errorRate and
predictionShift take it; significance reaches the typed Analysis (pure). The API server's
side of the same rules is tests/e2e/test_crd_admission.py."""

import pytest
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
        ({"builtin": "latencyP99", "max": 200, "detect": 50}, "detect", "only allowed with builtin errorRate or"),
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
