"""The CRD is the one source of spec's defaults and bounds: spec_schema.py is generated from it,
and a walk over every field of the CRD's spec proves parse_spec agrees with it on every
default, enum, pattern, minimum/maximum, length and item count (pure, no cluster)."""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelroll.spec import Analysis, Gate, SpecError, parse_spec
from modelroll.spec_schema import SPEC_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "modeldeployment.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
DIGEST = "sha256:" + "0" * 64
ANALYSIS = {
    "interval": "30s",
    "failureLimit": 2,
    "consecutiveErrorLimit": 4,
    "inconclusiveLimit": "10m",  # int-or-string: the bound tests try the integers
    "inconclusiveAction": "Abort",
    "minSamples": 100,
    "significance": 0.05,
    "prometheusUrl": "http://prometheus.monitoring:9090",
    "gates": [
        {"name": "errors", "builtin": "errorRate", "max": 0.01, "maxIncrease": 0.005, "detect": 0.05},
        {"name": "latency", "builtin": "latencyP99", "maxRatioToStable": 1.5},
        {"name": "shift", "builtin": "predictionShift", "maxPSI": 0.2, "detect": 0.5},
        {"name": "drift", "builtin": "featureDrift", "maxPSI": 0.1, "detect": 0.3, "features": ["age"]},
        {"name": "accuracy", "builtin": "liveAccuracy", "min": 0.9, "maxDrop": 0.02, "minLabels": 200},
        {"name": "mae", "builtin": "liveAccuracy", "maxMeanAbsError": 2.5},
        {"name": "custom", "prometheus": {"query": "sum(up)", "successCondition": "result < 0.05"}},
    ],
}
# The canary's analysis also judges the shadow phase (trafficRouting.shadow): the comparison gates.
SHADOW_ANALYSIS = {
    **ANALYSIS,
    "gates": [
        *ANALYSIS["gates"],
        {"name": "agree", "builtin": "predictionAgreement", "minAgreement": 0.99, "minPairs": 300},
        {"name": "difference", "builtin": "predictionAgreement", "maxMeanAbsDifference": 0.5},
    ],
}
COMMON = {
    "model": {
        "uri": "s3://models/fraud/v7/model.joblib",
        "digest": DIGEST,
        "format": "joblib",
        "version": "v7",
        "method": "predict_proba",
        "storageSecretRef": {"name": "s3-creds"},
    },
    "replicas": 4,
    "progressDeadlineSeconds": 600,
    "revisionHistoryLimit": 10,
    "server": {
        "image": "ghcr.io/example/modelroll-server:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "workers": 2,
        "batching": {"maxBatchSize": 64, "maxLatencyMs": 5},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "nodeSelector": {"pool": "ml"},
        "tolerations": [
            {"key": "ml", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60}
        ],
        "podLabels": {"team": "fraud"},
        "podAnnotations": {"owner": "fraud-team"},
        "serviceAccountName": "fraud-model",
        "imagePullSecrets": [{"name": "registry"}],
    },
    "autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetCPUUtilizationPercentage": 80},
    "monitoring": {
        "drift": {"referenceUri": "s3://models/fraud/v7/reference.json", "referenceDigest": "sha256:" + "c" * 64}
    },
}  # fmt: skip
# One full spec per strategy: every field of the CRD appears in at least one of them.
FULL = [
    {**COMMON, "strategy": {"type": "Rolling", "rolling": {"maxSurge": "25%", "maxUnavailable": 0}}},
    {
        **COMMON,
        "strategy": {
            "type": "Canary",
            "canary": {
                "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}],
                "analysis": SHADOW_ANALYSIS,
                "scaleDownDelaySeconds": 600,
                "postPromotionAnalysis": copy.deepcopy(ANALYSIS),
            },
        },
        "trafficRouting": {
            "gatewayAPI": {
                "parentRefs": [{"name": "public-gw", "namespace": "gateways", "sectionName": "https", "port": 443}],
                "hostnames": ["fraud.example.com"],
            },
            "shadow": {"percent": 20},
        },
    },
    {
        **COMMON,
        "strategy": {
            "type": "BlueGreen",
            "blueGreen": {
                "autoPromotionSeconds": 300,
                "scaleDownDelaySeconds": 30,
                "prePromotionAnalysis": copy.deepcopy(ANALYSIS),
                "postPromotionAnalysis": copy.deepcopy(ANALYSIS),  # not one object: deepcopy keeps sharing
            },
        },
    },
]
# Values that fit a pattern, for fields the full specs leave to their default or give a map.
SAMPLES = ["v1", "a", "fraud", "fraud.example.com", "30s", "25%", "500m", "1", "0"]
BOUND_WORDS = ("must be at least", "must be at most", "must be greater", "must be less")


def fields(node: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every field under ``node``; ``name[]`` for array items, ``name{}``
    for the values of a map."""
    for key, sub in (node.get("properties") or {}).items():
        yield f"{path}.{key}", sub
        yield from fields(sub, f"{path}.{key}")
        if "items" in sub:
            yield f"{path}.{key}[]", sub["items"]
            yield from fields(sub["items"], f"{path}.{key}[]")
        if isinstance(sub.get("additionalProperties"), dict):
            yield f"{path}.{key}{{}}", sub["additionalProperties"]


def locate(spec: dict[str, Any], path: str) -> tuple[Any, Any, str] | None:
    """(container, key, concrete path) of the field at ``path`` in ``spec``, the container
    existing; None if the spec has no such place. Array items and map values: the first one
    that holds the rest of the path, the field itself included if one does."""
    parts = path.split(".")[1:]

    def go(node: Any, i: int, concrete: str) -> tuple[Any, Any, str] | None:
        part = parts[i]
        name, suffix = part.rstrip("[]{}"), part[len(part.rstrip("[]{}")) :]
        if not isinstance(node, dict) or (name not in node and (suffix or i < len(parts) - 1)):
            return None
        if not suffix:
            return (
                (node, name, f"{concrete}.{name}")
                if i == len(parts) - 1
                else go(node[name], i + 1, f"{concrete}.{name}")
            )
        children = list(enumerate(node[name])) if suffix == "[]" else list(node[name].items())
        first = None
        for key, child in children:
            where = f"{concrete}.{name}[{key}]" if suffix == "[]" else f"{concrete}.{name}.{key}"
            found = (node[name], key, where) if i == len(parts) - 1 else go(child, i + 1, where)
            if found and (not isinstance(found[0], dict) or found[1] in found[0]):
                return found
            first = first or found
        return first

    return go(spec, 0, "spec")


def placed(path: str) -> Iterator[tuple[dict[str, Any], Any, Any, str]]:
    """(spec, container, key, concrete path) for each full spec that has a place for ``path``."""
    for full in FULL:
        spec = copy.deepcopy(full)
        found = locate(spec, path)
        if found:
            yield spec, *found


def outcome(spec: dict[str, Any]) -> SpecError | None:
    try:
        parse_spec(spec)
    except SpecError as e:
        return e
    return None


def refused_at(spec: dict[str, Any], where: str) -> bool:
    error = outcome(spec)
    return error is not None and error.path == where


def not_refused_by_the_bound(spec: dict[str, Any], where: str) -> bool:
    error = outcome(spec)
    return error is None or error.path != where or not error.message.startswith(BOUND_WORDS + ("must be one of",))


ALL = list(fields(SCHEMA))


def _id(value: Any) -> str:
    return value if isinstance(value, str) else ""


def with_(key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(path, node) for path, node in ALL if key in node]


def test_the_generated_schema_is_the_crds() -> None:
    loader = importlib.util.spec_from_file_location("generate", ROOT / "scripts" / "generate_spec_schema.py")
    assert loader and loader.loader
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    assert module.spec_schema(CRD) == SPEC_SCHEMA, (
        "operator/src/modelroll/spec_schema.py is stale: run `make chart-crds`"
    )


def test_the_full_specs_parse_and_hold_every_field() -> None:
    for spec in FULL:
        assert outcome(spec) is None, outcome(spec)
    missing = [path for path, _ in ALL if not path.endswith("{}") and not any(True for _ in placed(path))]
    assert missing == [], "the full specs of this test must hold every field of the CRD"


@pytest.mark.parametrize(("path", "node"), with_("default"), ids=_id)
def test_every_default_is_the_crds(path: str, node: dict[str, Any]) -> None:
    """Absent and set to the CRD's default parse the same; set to another value, differently
    (so the field is read, and what fills its absence is the CRD's default)."""
    tried = 0
    for spec, container, key, where in placed(path):
        absent = copy.deepcopy(spec)
        del locate(absent, path)[0][key]  # type: ignore[index]
        container[key] = copy.deepcopy(node["default"])
        if outcome(absent) is not None:  # e.g. no strategy beside a canary's shadow traffic
            continue
        tried += 1
        assert parse_spec(absent) == parse_spec(spec), where
        other = _another(node)
        if other is not None:
            container[key] = other
            assert outcome(spec) is not None or parse_spec(spec) != parse_spec(absent), where
    assert tried, path


def _another(node: dict[str, Any]) -> Any:
    default = node["default"]
    if "enum" in node:
        return next(v for v in node["enum"] if v != default)
    if isinstance(default, int) and not isinstance(default, bool):
        return default + 1 if default + 1 <= node.get("maximum", default + 1) else default - 1
    if isinstance(default, str) and default.endswith("%"):
        return f"{int(default[:-1]) + 1}%"
    if isinstance(default, str) and default.endswith("s"):
        return f"{int(default[:-1]) + 1}s"
    return None  # an object: its own fields are checked one by one


def test_the_analysis_dataclass_defaults_are_the_crds() -> None:
    gate = {"builtin": "errorRate", "max": 0.01}
    raw = {
        **COMMON,
        "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 5}], "analysis": {"gates": [gate]}}},
    }
    parsed = parse_spec(raw).strategy.canary
    assert parsed is not None
    assert parsed.analysis == Analysis(gates=(Gate("errorRate", builtin="errorRate", max=0.01),))


@pytest.mark.parametrize(("path", "node"), with_("enum"), ids=_id)
def test_every_enum_is_the_crds(path: str, node: dict[str, Any]) -> None:
    for spec, container, key, where in placed(path):
        for value in node["enum"]:
            container[key] = value
            assert not_refused_by_the_bound(spec, where), (where, value, outcome(spec))
        container[key] = "NotInTheEnum"
        assert refused_at(spec, where), (where, outcome(spec))


@pytest.mark.parametrize(("path", "node"), with_("pattern"), ids=_id)
def test_every_pattern_is_the_crds(path: str, node: dict[str, Any]) -> None:
    pattern = re.compile(node["pattern"])
    for spec, container, key, where in placed(path):
        value = container[key]
        if not isinstance(value, str):
            value = next(s for s in SAMPLES if pattern.search(s) and len(s) <= node.get("maxLength", 99))
        assert pattern.search(value), (where, value)
        container[key] = value
        assert outcome(spec) is None or outcome(spec).path != where, (where, outcome(spec))  # type: ignore[union-attr]
        for bad in ("has a space", value + "\n", "-" + value, value + " "):
            if not pattern.search(bad) or bad.endswith("\n"):  # Go's $ does not match before a final newline
                container[key] = bad
                assert refused_at(spec, where), (where, bad, outcome(spec))


@pytest.mark.parametrize(("path", "node"), with_("minimum") + with_("maximum"), ids=_id)
def test_every_bound_is_the_crds(path: str, node: dict[str, Any]) -> None:
    step = 1 if node.get("type") == "integer" or node.get("x-kubernetes-int-or-string") else 0.5
    for spec, container, key, where in placed(path):
        if "minimum" in node:
            lo = node["minimum"]
            container[key] = lo if not node.get("exclusiveMinimum") else lo + step
            assert not_refused_by_the_bound(spec, where), (where, container[key], outcome(spec))
            container[key] = lo if node.get("exclusiveMinimum") else lo - step
            assert refused_at(spec, where), (where, container[key], outcome(spec))
        if "maximum" in node:
            hi = node["maximum"]
            container[key] = hi
            assert not_refused_by_the_bound(spec, where), (where, hi, outcome(spec))
            container[key] = hi + step
            assert refused_at(spec, where), (where, hi + step, outcome(spec))


SIZED = with_("maxLength") + with_("maxItems") + with_("minItems") + with_("maxProperties")


@pytest.mark.parametrize(("path", "node"), SIZED, ids=_id)
def test_every_size_is_the_crds(path: str, node: dict[str, Any]) -> None:
    for spec, container, key, where in placed(path):
        value = container[key]
        if "maxLength" in node and isinstance(value, str):
            container[key] = value + value[-1] * (node["maxLength"] + 1 - len(value))
            assert refused_at(spec, where), (where, outcome(spec))
        if isinstance(value, list) and "maxItems" in node:
            container[key] = [copy.deepcopy(value[0]) for _ in range(node["maxItems"] + 1)]
            assert refused_at(spec, where), (where, outcome(spec))
        if isinstance(value, list) and node.get("minItems"):
            container[key] = value[: node["minItems"] - 1]
            assert refused_at(spec, where), (where, outcome(spec))
        if isinstance(value, dict) and "maxProperties" in node:
            sample = next(iter(value.values()))
            container[key] = {f"k{i}": sample for i in range(node["maxProperties"] + 1)}
            assert refused_at(spec, where), (where, outcome(spec))
