"""The Helm chart's static files: the CRD copy, values against values.schema.json (pure, no helm)."""

from __future__ import annotations

import json
import re
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
        "modelroll_modeldeployment_gate_verdict",
        "modelroll_modeldeployment_gate_value",
        "modelroll_shadow_rows_total",
        "modelroll_shadow_requests_total",
        "modelroll_feedback_total",
        "modelroll_feature_psi",
        "modelroll_modeldeployment_gate_track_value",
    ):
        assert metric in exprs
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs
    assert 'code=~"5.."' in exprs


def test_dashboard_never_mixes_two_namespaces_models_of_one_name() -> None:
    """Every aggregation keeps the namespace (the server's series carry the one Prometheus
    attaches at discovery, the operator's model_namespace), every series is filtered by the
    Namespace variable, and every legend names the namespace: with "All" namespaces selected,
    fraud in ml and fraud in ml-b stay two lines."""
    dash = json.loads((CHART / "dashboards" / "modelroll.json").read_text())
    targets = [t for p in dash["panels"] for t in p.get("targets", [])]
    assert targets
    for target in targets:
        expr, legend = target["expr"], target["legendFormat"]
        label = "model_namespace" if "modelroll_modeldeployment_" in expr else "namespace"
        groupings = re.findall(r"by \(([^)]*)\)", expr)
        assert groupings and all(label in [g.strip() for g in by.split(",")] for by in groupings), expr
        selectors = re.findall(r"\{[^{}]*\}", expr)
        assert selectors and all(f'{label}=~"$namespace"' in sel for sel in selectors), expr
        assert f"{{{{{label}}}}}/{{{{model_name}}}}" in legend, legend


def test_the_namespace_label_the_gates_select_is_the_one_prometheus_attaches() -> None:
    """The analysis selects namespace="<the object's>" (analysis/schedule.py). That label must come
    from discovery, never from the Pod: the documented scrape job relabels it from
    __meta_kubernetes_namespace (the Prometheus Operator does the same for the PodMonitor),
    neither honours the target's own labels, and the server exports no namespace label at all."""
    from modelroll_contract import METRIC_LABELS
    from modelroll_server.metrics import Metrics

    (job,) = yaml.safe_load((ROOT / "docs" / "prometheus-scrape-config.yaml").read_text())["scrape_configs"]
    assert {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"} in job["relabel_configs"]
    assert not job.get("honor_labels") and "honorLabels" not in (CHART / "templates" / "podmonitor.yaml").read_text()
    metrics = Metrics("fraud", "v1", "canary")
    metrics.request_done(0, 500, 0.01)
    exposition = metrics.render().decode()
    labels = set(re.findall(r'[{,]([a-z_]+)="', exposition))
    assert labels >= set(METRIC_LABELS) and "namespace" not in labels, labels


# Each numeric operator value and the variable the chart's Deployment passes it in. The operator
# (settings.py) owns the bounds; the schema repeats them so that helm refuses before installing.
NUMERIC_ENV = {
    ("operator", "resyncSeconds"): "MODELROLL_RESYNC_SECONDS",
    ("operator", "discoverySeconds"): "MODELROLL_DISCOVERY_SECONDS",
    ("operator", "workers"): "MODELROLL_WORKERS",
}


@pytest.mark.parametrize(("path", "var"), sorted(NUMERIC_ENV.items()))
def test_the_schema_bounds_are_the_operators_own(path: tuple[str, str], var: str) -> None:
    from modelroll.settings import SettingsError, load_settings

    schema = json.loads((CHART / "values.schema.json").read_text())
    bounds = schema["properties"][path[0]]["properties"][path[1]]
    template = (CHART / "templates" / "deployment.yaml").read_text()
    assert re.search(rf"name: {var}\n\s+value: {{{{ \.Values\.{'.'.join(path)} \| quote }}}}", template)
    for edge in (bounds["minimum"], bounds["maximum"]):
        load_settings({var: str(edge)})  # accepted by both
    step = 1 if bounds["type"] == "integer" else 0.01
    for outside in (bounds["minimum"] - step, bounds["maximum"] + step):
        with pytest.raises(SettingsError, match=var):
            load_settings({var: str(outside)})
