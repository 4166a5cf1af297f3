"""The operator's own exposition of its objects: what the Grafana dashboard's rollout and
analysis panels draw (operator/src/modelroll/metrics.py)."""

from __future__ import annotations

from modelroll.metrics import ObjectCollector


def samples_of(obj: dict) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(ObjectCollector(lambda: [obj]))
    generate_latest(registry)  # what /metrics serves must render
    out = {}
    for family in ObjectCollector(lambda: [obj]).collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_each_gate_exports_its_verdict_value_and_sample_size():
    obj = {
        "metadata": {"namespace": "ml", "name": "fraud"},
        "status": {
            "phase": "Progressing",
            "weights": {"stable": 50, "canary": 50},
            "currentStep": 1,
            "analysis": {
                "scope": "canary",
                "gates": [
                    {"name": "errorRate", "verdict": "Fail", "value": 0.31, "samples": 100, "threshold": "<= 0.01"},
                    {"name": "kpi", "verdict": "Inconclusive", "threshold": "result < 1"},
                ],
            },
        },
    }
    got = samples_of(obj)
    assert (
        got[
            (
                "modelroll_modeldeployment_weight",
                (("model_name", "fraud"), ("model_namespace", "ml"), ("track", "canary")),
            )
        ]
        == 50
    )
    key = (("gate", "errorRate"), ("model_name", "fraud"), ("model_namespace", "ml"), ("scope", "canary"))
    assert got[("modelroll_modeldeployment_gate_value", key)] == 0.31
    assert got[("modelroll_modeldeployment_gate_samples", key)] == 100
    verdicts = {
        dict(labels)["verdict"]: v
        for (name, labels), v in got.items()
        if name == "modelroll_modeldeployment_gate_verdict" and dict(labels)["gate"] == "errorRate"
    }
    assert verdicts == {"Pass": 0.0, "Fail": 1.0, "Inconclusive": 0.0, "Error": 0.0}
    kpi = (("gate", "kpi"), ("model_name", "fraud"), ("model_namespace", "ml"), ("scope", "canary"))
    assert ("modelroll_modeldeployment_gate_value", kpi) not in got  # no value, no series
    inconclusive = (*kpi, ("verdict", "Inconclusive"))
    assert got[("modelroll_modeldeployment_gate_verdict", inconclusive)] == 1.0


def test_an_object_without_analysis_exports_no_gate_series():
    got = samples_of({"metadata": {"namespace": "ml", "name": "fraud"}, "status": {"phase": "Healthy"}})
    assert not [name for name, _ in got if "_gate_" in name]
