"""The CRD in crds/modeldeployment.yaml: shape, structural-schema rules, and the examples.

Pure: no cluster. What only the API server can judge (CEL compilation and cost, the refusals
themselves) is proven in tests/e2e/test_crd_admission.py; this file catches the mistakes that
are cheap to catch early: an untyped or undescribed field, a default that its own schema
refuses, a drifting copy of the analysis block, an example that no longer fits.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "modeldeployment.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

Schema = dict[str, Any]

# Structural schemas forbid these anywhere (apiextensions.k8s.io/v1).
FORBIDDEN_KEYWORDS = {
    "$ref",
    "$schema",
    "id",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
}
# Inside anyOf/allOf/oneOf/not only value validations may appear.
FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


def load_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return load_crd()


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> Schema:
    return version["schema"]["openAPIV3Schema"]


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its field path (spec.model.uri, spec.x.steps[], spec.m{})."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def at(schema: Schema, path: str) -> Schema:
    node = schema
    for part in path.split("."):
        is_list = part.endswith("[]")
        node = node["properties"][part[:-2]]["items"] if is_list else node["properties"][part]
    return node


# --- names, subresources, printer columns ------------------------------------------------------


def test_names_and_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "modeldeployments.modelroll.io"
    spec = crd["spec"]
    assert spec["group"] == "modelroll.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ModelDeployment",
        "listKind": "ModelDeploymentList",
        "plural": "modeldeployments",
        "singular": "modeldeployment",
        "shortNames": ["mdep", "md"],
        "categories": ["all", "modelroll"],
    }
    assert version["name"] == "v1alpha1"
    assert version["served"] is True and version["storage"] is True


def test_subresources(version: dict[str, Any]) -> None:
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {
        c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0
    }
    assert columns == {
        "Phase": ("string", ".status.phase"),
        "Strategy": ("string", ".spec.strategy.type"),
        "Stable": ("string", ".status.stable.version"),
        "Canary": ("string", ".status.canary.version"),
        "Weight": ("integer", ".status.weights.canary"),
        "Ready": ("string", ".status.ready"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    # Column order is what `kubectl get mdep` shows.
    names = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert names == ["Phase", "Strategy", "Stable", "Canary", "Weight", "Ready", "Age"]


def test_printer_and_scale_paths_exist_in_schema(version: dict[str, Any], schema: Schema) -> None:
    paths = [c["jsonPath"] for c in version["additionalPrinterColumns"]]
    paths += [v for v in version["subresources"]["scale"].values()]
    for json_path in paths:
        if json_path.startswith(".metadata."):
            continue
        node = at(schema, json_path.lstrip("."))
        assert "type" in node, json_path


# --- structural schema ------------------------------------------------------------------------


def test_plain_yaml_without_anchors() -> None:
    text = CRD_PATH.read_text()
    assert not re.search(r"(^|\s)[&*][A-Za-z_]", text, re.M), "no YAML anchors or aliases"
    assert "\t" not in text


def test_every_node_is_typed(schema: Schema) -> None:
    for path, node in walk(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            f"{path or '<root>'} has no type"
        )
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{path} needs one items schema"
        if node["type"] == "object":
            assert not ("properties" in node and "additionalProperties" in node), path


def test_no_forbidden_constructs(schema: Schema) -> None:
    def check(node: Any, path: str) -> None:
        if isinstance(node, dict):
            bad = FORBIDDEN_KEYWORDS & node.keys()
            assert not bad, f"{path}: {bad}"
            assert node.get("uniqueItems") is not True, f"{path}: uniqueItems"
            for junctor in ("anyOf", "allOf", "oneOf", "not"):
                branches = node.get(junctor)
                if branches is None:
                    continue
                for branch in branches if isinstance(branches, list) else [branches]:
                    if node.get("x-kubernetes-int-or-string") and branch in (
                        {"type": "integer"},
                        {"type": "string"},
                    ):
                        continue
                    assert not (FORBIDDEN_IN_JUNCTORS & branch.keys()), f"{path}.{junctor}"
            for key, value in node.items():
                if key not in ("default", "enum", "x-kubernetes-validations"):
                    check(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                check(value, f"{path}[{i}]")

    check(schema, "<root>")


def test_metadata_is_left_to_the_api_server(schema: Schema) -> None:
    # The API server refuses a CRD that constrains metadata beyond name/generateName.
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_every_property_is_described(schema: Schema) -> None:
    missing = [
        path
        for path, node in walk(schema)
        if path and path != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []


def test_status_is_typed_and_open(schema: Schema) -> None:
    status = schema["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    props = status["properties"]
    for name in [
        "observedGeneration",
        "phase",
        "reason",
        "message",
        "currentStep",
        "stepCount",
        "replicas",
        "readyReplicas",
        "ready",
        "selector",
        "url",
        "stable",
        "canary",
        "weights",
        "conditions",
        "history",
        "analysis",
    ]:
        assert name in props, name
    assert props["phase"]["enum"] == [
        "Pending",
        "Progressing",
        "Paused",
        "Healthy",
        "Degraded",
        "Failed",
    ]
    for track in ("stable", "canary"):
        assert set(props[track]["properties"]) == {
            "revision",
            "version",
            "digest",
            "uri",
            "format",
            "method",
            "replicas",
            "readyReplicas",
            "updatedReplicas",
        }
    conditions = props["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert conditions["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert props["history"]["items"]["properties"]["promotedAt"]["format"] == "date-time"
    assert props["analysis"]["x-kubernetes-preserve-unknown-fields"] is True


def test_list_map_keys_are_required(schema: Schema) -> None:
    for path, node in walk(schema):
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"].get("required", []), f"{path}: {key}"


# --- CEL rules ---------------------------------------------------------------------------------


def all_rules(schema: Schema) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule


def test_every_rule_message_names_a_field(schema: Schema) -> None:
    rules = list(all_rules(schema))
    assert len(rules) >= 20
    for path, rule in rules:
        assert rule["rule"].strip(), path
        message = rule.get("message", "")
        assert message or rule.get("messageExpression"), f"{path}: rule without message"
        assert re.match(r"^(spec|metadata)\.[A-Za-z]", message), f"{path}: {message!r}"
        if rule.get("reason"):
            assert rule["reason"] in {
                "FieldValueInvalid",
                "FieldValueForbidden",
                "FieldValueRequired",
                "FieldValueDuplicate",
            }


def test_rule_messages_name_their_own_node(schema: Schema) -> None:
    # The message of a rule placed on spec.strategy.canary.steps[] must talk about that node
    # (or, with fieldPath, about the child it points at), not some other field.
    for path, rule in all_rules(schema):
        if not path:
            continue
        expected = path + (rule.get("fieldPath", "") if "fieldPath" in rule else "")
        message = rule["message"]
        assert message.startswith(path) or message.startswith(expected), (path, message)


def test_fieldpaths_exist(schema: Schema) -> None:
    for path, rule in all_rules(schema):
        if "fieldPath" in rule:
            node = at(schema, path) if path else schema
            for part in rule["fieldPath"].lstrip(".").split("."):
                node = node["properties"][part]


ANALYSIS_COPIES = [
    "spec.strategy.canary.analysis",
    "spec.strategy.blueGreen.prePromotionAnalysis",
    "spec.strategy.blueGreen.postPromotionAnalysis",
    "spec.strategy.canary.postPromotionAnalysis",
]


def normalised_analysis(schema: Schema, path: str) -> Schema:
    node = copy.deepcopy(at(schema, path))
    node.pop("description")
    text = yaml.safe_dump(node).replace(path, "ANALYSIS")
    return yaml.safe_load(text)


def test_analysis_copies_are_identical(schema: Schema) -> None:
    first, *rest = (normalised_analysis(schema, p) for p in ANALYSIS_COPIES)
    for other in rest:
        assert other == first
    assert "spec.strategy" not in yaml.safe_dump(first), "a message names another copy's path"


def cel_regex(rule: str) -> str:
    match = re.fullmatch(r"self\.matches\('([^']*)'\).*", rule)
    assert match, rule
    return match.group(1)


@pytest.mark.parametrize(
    "path",
    [
        "spec.model.uri",
        "spec.monitoring.drift.referenceUri",
        "spec.strategy.canary.steps[].pause.duration",
        "spec.strategy.canary.analysis.interval",
    ],
)
def test_pattern_and_cel_regex_agree(schema: Schema, path: str) -> None:
    node = at(schema, path)
    (rule,) = node["x-kubernetes-validations"]
    assert cel_regex(rule["rule"]) == node["pattern"]


def test_uri_fields_share_one_pattern(schema: Schema) -> None:
    assert at(schema, "spec.model.uri")["pattern"] == at(schema, "spec.monitoring.drift.referenceUri")["pattern"]


URIS = [
    ("file:///models/fraud/model.joblib", True),
    ("pvc://models/fraud/v7/model.joblib", True),
    ("http://models.svc:8080/fraud/model.joblib", True),
    ("https://example.com/fraud/model.skops?version=7", True),
    ("s3://models/fraud/v7/model.joblib", True),
    ("s3://models.example.com/fraud/v7/model.joblib", True),
    ("gs://models/fraud/v7/model.joblib", True),
    ("gs://models_eu.example.com/fraud/v7/model.joblib", True),
    ("az://models/fraud/v7/model.joblib", True),
    ("https://acct.blob.core.windows.net/models/fraud/v7/model.joblib", True),
    ("gs://Models/model.joblib", False),
    ("gs://models", False),
    ("az://models.eu/model.joblib", False),
    ("az://models", False),
    ("/models/fraud/model.joblib", False),
    ("models/fraud/model.joblib", False),
    ("file://relative/model.joblib", False),
    ("ftp://example.com/model.joblib", False),
    ("s3://bucket", False),
    ("https://user:secret@example.com/model.joblib", False),
    ("pvc://Claim/model.joblib", False),
    ("file:///models/my model.joblib", False),
]


@pytest.mark.parametrize(("uri", "ok"), URIS)
def test_the_parser_judges_uris_as_the_crd_does(uri: str, ok: bool) -> None:
    """spec.py validates against the CRD's own pattern (spec_schema.py, generated from it)."""
    from modelroll.spec import SpecError, parse_spec

    digest = "sha256:" + "0" * 64
    try:
        drift = {"referenceUri": uri, "referenceDigest": digest}
        parse_spec({"model": {"uri": uri, "digest": digest}, "monitoring": {"drift": drift}})
    except SpecError as e:
        assert not ok and e.path == "spec.model.uri", e
    else:
        assert ok, uri


@pytest.mark.parametrize(("uri", "ok"), URIS)
def test_uri_pattern(schema: Schema, uri: str, ok: bool) -> None:
    assert bool(re.search(at(schema, "spec.model.uri")["pattern"], uri)) is ok


@pytest.mark.parametrize(
    ("duration", "ok"),
    [("30s", True), ("2m", True), ("1h30m", True), ("1.5h", True), ("500ms", True),
     ("2 minutes", False), ("10", False), ("-1m", False), ("", False), ("1d", False)],
)  # fmt: skip
def test_duration_pattern(schema: Schema, duration: str, ok: bool) -> None:
    pattern = at(schema, "spec.strategy.canary.steps[].pause.duration")["pattern"]
    assert bool(re.search(pattern, duration)) is ok


# --- defaults and the examples ---------------------------------------------------------------


def apply_defaults(node: Schema, value: Any) -> Any:
    """Structural defaulting as the API server does it: parent default first, then children."""
    if isinstance(value, dict) and node.get("type") == "object":
        for name, child in node.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [apply_defaults(node["items"], item) for item in value]
    return value


def to_json_schema(node: Any) -> Any:
    """The OpenAPI schema as Draft 4 JSON Schema, strict about unknown fields like kubectl."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: (v if k in ("default", "enum") else to_json_schema(v))
        for k, v in node.items()
        if not k.startswith("x-kubernetes-")
    }
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and node is not None
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validator(schema: Schema) -> jsonschema.Draft4Validator:
    json_schema = to_json_schema(schema)
    json_schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.Draft4Validator.check_schema(json_schema)
    return jsonschema.Draft4Validator(json_schema)


def errors(validator: jsonschema.Draft4Validator, obj: Any) -> list[str]:
    return [".".join(str(p) for p in e.absolute_path) + ": " + e.message for e in validator.iter_errors(obj)]


def test_every_default_fits_its_own_schema(schema: Schema) -> None:
    for path, node in walk(schema):
        if "default" in node:
            sub = jsonschema.Draft4Validator(to_json_schema(node))
            default = apply_defaults(node, copy.deepcopy(node["default"]))
            assert errors(sub, default) == [], path


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"fraud-rolling.yaml", "fraud-canary.yaml", "fraud-bluegreen.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(schema: Schema, validator: jsonschema.Draft4Validator, path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        assert doc["apiVersion"] == "modelroll.io/v1alpha1"
        assert doc["kind"] == "ModelDeployment"
        assert errors(validator, doc) == []
        assert errors(validator, apply_defaults(schema, copy.deepcopy(doc))) == []


def test_examples_cover_every_strategy() -> None:
    types = {
        doc["spec"].get("strategy", {}).get("type", "Rolling")
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    assert types == {"Rolling", "Canary", "BlueGreen"}


MINIMAL = {
    "apiVersion": "modelroll.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud"},
    "spec": {"model": {"uri": "file:///models/m.joblib", "digest": "sha256:" + "0" * 64}},
}


def test_defaults_of_a_minimal_object(schema: Schema) -> None:
    spec = apply_defaults(schema, copy.deepcopy(MINIMAL))["spec"]
    assert spec == {
        "model": {
            "uri": "file:///models/m.joblib",
            "digest": "sha256:" + "0" * 64,
            "format": "joblib",
            "method": "predict",
        },
        "replicas": 1,
        "progressDeadlineSeconds": 600,
        "revisionHistoryLimit": 10,
        "server": {"workers": 1, "batching": {"maxBatchSize": 64, "maxLatencyMs": 0}},
        "strategy": {"type": "Rolling"},
    }


def test_analysis_defaults(schema: Schema) -> None:
    analysis = apply_defaults(
        at(schema, "spec.strategy.canary.analysis"),
        {"gates": [{"builtin": "errorRate", "max": 0.01}]},
    )
    assert analysis == {
        "interval": "30s",
        "failureLimit": 2,
        "consecutiveErrorLimit": 4,
        "inconclusiveLimit": 10,
        "inconclusiveAction": "Pause",
        "minSamples": 100,
        "significance": 0.01,
        "gates": [{"builtin": "errorRate", "max": 0.01}],
    }


# Refusals that plain OpenAPI validation already makes (CEL ones are proven in e2e).
OPENAPI_INVALID = {
    "bad digest": ({"model": {"uri": "file:///m/x", "digest": "sha256:abc"}}, "spec.model.digest"),
    "bare path uri": (
        {"model": {"uri": "/models/m.joblib", "digest": "sha256:" + "0" * 64}},
        "spec.model.uri",
    ),
    "unknown format": (
        {"model": {"uri": "file:///m/x", "digest": "sha256:" + "0" * 64, "format": "onnx"}},
        "spec.model.format",
    ),
    "negative replicas": ({"replicas": -1}, "spec.replicas"),
    "weight 150": (
        {"strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 150}]}}},
        "spec.strategy.canary.steps.0.setWeight",
    ),
    "unknown field": ({"replicaz": 2}, "spec"),
    "inconclusiveLimit 0": (
        {
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [{"setWeight": 5}],
                    "analysis": {"inconclusiveLimit": 0, "gates": [{"builtin": "errorRate", "max": 0.01}]},
                },
            }
        },
        "spec.strategy.canary.analysis.inconclusiveLimit",
    ),
    "inconclusiveLimit not a duration": (
        {
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [{"setWeight": 5}],
                    "analysis": {"inconclusiveLimit": "ten", "gates": [{"builtin": "errorRate", "max": 0.01}]},
                },
            }
        },
        "spec.strategy.canary.analysis.inconclusiveLimit",
    ),
    "maxSurge without %": (
        {"strategy": {"type": "Rolling", "rolling": {"maxSurge": "25"}}},
        "spec.strategy.rolling.maxSurge",
    ),
}


@pytest.mark.parametrize("case", sorted(OPENAPI_INVALID))
def test_openapi_refusals(validator: jsonschema.Draft4Validator, case: str) -> None:
    patch, field = OPENAPI_INVALID[case]
    obj = copy.deepcopy(MINIMAL)
    obj["spec"].update(patch)
    found = errors(validator, obj)
    assert any(e.startswith(field + ":") for e in found), found
