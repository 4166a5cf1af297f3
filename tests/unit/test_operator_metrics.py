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


def test_quality_gates_export_each_tracks_value_and_sample_size():
    gates = [
        {
            "name": "accuracy",
            "verdict": "Pass",
            "value": 0.92,
            "samples": 500,
            "threshold": "accuracy >= 0.9",
            "tracks": {"canary": {"accuracy": 0.92, "labels": 500}, "stable": {"labels": 0}},
        },
        {
            "name": "drift",
            "verdict": "Fail",
            "value": 0.6,
            "samples": 400,
            "threshold": "PSI <= 0.1 per feature",
            "tracks": {
                "canary": {"feature": "age", "psi": 0.6, "rows": 400},
                "stable": {"feature": "x", "psi": 0.02, "rows": 9000},
            },
        },
    ]
    obj = {
        "metadata": {"namespace": "ml", "name": "fraud"},
        "status": {"analysis": {"scope": "canary", "gates": gates}},
    }
    got = samples_of(obj)

    def key(gate, track):
        return (
            ("gate", gate),
            ("model_name", "fraud"),
            ("model_namespace", "ml"),
            ("scope", "canary"),
            ("track", track),
        )

    assert got[("modelroll_modeldeployment_gate_track_value", key("accuracy", "canary"))] == 0.92
    assert got[("modelroll_modeldeployment_gate_track_samples", key("accuracy", "canary"))] == 500
    assert ("modelroll_modeldeployment_gate_track_value", key("accuracy", "stable")) not in got  # no labels, no value
    assert got[("modelroll_modeldeployment_gate_track_samples", key("accuracy", "stable"))] == 0
    assert got[("modelroll_modeldeployment_gate_track_value", key("drift", "stable"))] == 0.02
    assert got[("modelroll_modeldeployment_gate_track_samples", key("drift", "stable"))] == 9000
