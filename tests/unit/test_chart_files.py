"""The Helm chart's static files: the CRD copy, values against values.schema.json (pure, no helm)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelroll"


def test_chart_crds_are_byte_identical_copies_of_the_repo_crds() -> None:
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert copies == source, "charts/modelroll/crds/ must hold exactly crds/*.yaml: run `make chart-crds`"
    for name in source:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/modelroll/crds/{name} differs from crds/{name}: run `make chart-crds` (crds/ is the source)"
        )


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_default_values_satisfy_the_schema(validator: jsonschema.Draft7Validator) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(validator.iter_errors(values)) == []


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"replicaCont": 2}, ""),  # a typo at the top level
        ({"image": {"repository": "x", "tagg": "1"}}, "image"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces.0"),
        ({"monitoring": {"serviceMonitor": {"enabled": "yes"}}}, "monitoring.serviceMonitor.enabled"),
        ({"operator": {"logLevel": "TRACE"}}, "operator.logLevel"),
        ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": "half"}}, "podDisruptionBudget.maxUnavailable"),
        ({"leaderElection": {"leaseDurationSeconds": 1}}, "leaderElection.leaseDurationSeconds"),
    ],
)
def test_the_schema_refuses_typos_and_wrong_types(
    validator: jsonschema.Draft7Validator, override: dict[str, object], path: str
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values.update(override)
    errors = list(validator.iter_errors(values))
    assert errors, f"{override} was accepted"
    assert path in {".".join(str(p) for p in e.absolute_path) for e in errors}


def test_dashboard_is_json_with_the_promised_panels() -> None:
    dash = json.loads((CHART / "dashboards" / "modelroll.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in (
        "modelroll_requests_total",
        "modelroll_request_duration_seconds_bucket",
        "modelroll_predictions_total",
        "modelroll_modeldeployment_phase",
        "modelroll_modeldeployment_weight",
    ):
        assert metric in exprs
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs
    assert 'code=~"5.."' in exprs
