"""Parse a ModelDeployment's raw ``spec`` into frozen, typed values (pure, no I/O).

The CRD schema and its CEL rules refuse bad objects at admission; this parser is the
second line, for objects written before a schema change or against a cluster whose
API server skipped validation. Every error names the field path, e.g.
``spec.strategy.canary.steps[2].setWeight``, so status can say exactly what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .analysis.condition import ConditionError, parse_condition

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# The schemes the CRD's uri pattern allows (a unit test proves the two lists equal); the
# pattern itself checks the rest at admission.
URI_SCHEMES = ("file", "pvc", "http", "https", "s3", "gs", "az")
URI_RE = re.compile(r"^(file://|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/|https?://|s3://|gs://|az://)\S+$")
DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

FORMATS = ("joblib", "pickle", "skops")
METHODS = ("predict", "predict_proba")
STRATEGIES = ("Rolling", "BlueGreen", "Canary")
BUILTIN_GATES = ("errorRate", "latencyP99", "predictionShift")


class SpecError(ValueError):
    """A spec value the operator cannot honour; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    digest: str
    format: str = "joblib"
    version: str = ""
    method: str = "predict"
    storage_secret: str | None = None


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 64
    max_latency_ms: int = 0


@dataclass(frozen=True)
class ServerSpec:
    image: str | None = None
    image_pull_policy: str | None = None
    workers: int = 1
    batching: Batching = field(default_factory=Batching)
    resources: Mapping[str, Any] = field(default_factory=dict)
    env: tuple[tuple[str, str], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate:
    name: str
    builtin: str | None = None
    max: float | None = None
    max_ratio_to_stable: float | None = None
    max_psi: float | None = None
    query: str | None = None
    success_condition: str | None = None


@dataclass(frozen=True)
class Analysis:
    interval_seconds: float = 30.0
    failure_limit: int = 2
    consecutive_error_limit: int = 4
    min_samples: int = 100
    prometheus_url: str | None = None
    gates: tuple[Gate, ...] = ()


@dataclass(frozen=True)
class Step:
    """One canary step: exactly one of ``set_weight`` or a pause (``pause`` True)."""

    set_weight: int | None = None
    pause: bool = False
    pause_seconds: float | None = None  # None with pause=True: wait for a manual promote


@dataclass(frozen=True)
class RollingSpec:
    max_surge: int | str = "25%"
    max_unavailable: int | str = 0


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[Step, ...]
    analysis: Analysis | None = None


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promotion_seconds: int | None = None
    scale_down_delay_seconds: int = 30
    pre_promotion_analysis: Analysis | None = None
    post_promotion_analysis: Analysis | None = None


@dataclass(frozen=True)
class Strategy:
    type: str = "Rolling"
    rolling: RollingSpec = field(default_factory=RollingSpec)
    canary: CanarySpec | None = None
    blue_green: BlueGreenSpec | None = None


@dataclass(frozen=True)
class GatewayRef:
    name: str
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class TrafficRouting:
    gateway_parent_refs: tuple[GatewayRef, ...] = ()
    hostnames: tuple[str, ...] = ()
    shadow_percent: int = 0

    @property
    def gateway_api(self) -> bool:
        return bool(self.gateway_parent_refs)


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int = 80


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelSpec
    replicas: int = 1
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 10
    server: ServerSpec = field(default_factory=ServerSpec)
    strategy: Strategy = field(default_factory=Strategy)
    traffic: TrafficRouting = field(default_factory=TrafficRouting)
    autoscaling: Autoscaling | None = None
    drift_reference_uri: str | None = None


# --- small typed readers; each names its path in the error ---------------------------------


def _obj(raw: Any, path: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(path, "must be an object")
    return raw


def _str(raw: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{path}.{key}", "must be a string")
    return value


def _req_str(raw: Mapping[str, Any], key: str, path: str) -> str:
    value = _str(raw, key, path)
    if not value:
        raise SpecError(f"{path}.{key}", "is required")
    return value


def _int(
    raw: Mapping[str, Any],
    key: str,
    path: str,
    default: int | None,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}", f"must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise SpecError(f"{path}.{key}", f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise SpecError(f"{path}.{key}", f"must be at most {hi}, got {value}")
    return value


def _req_int(
    raw: Mapping[str, Any],
    key: str,
    path: str,
    default: int,
    lo: int | None = None,
    hi: int | None = None,
) -> int:
    value = _int(raw, key, path, default, lo, hi)
    assert value is not None
    return value


def _num(raw: Mapping[str, Any], key: str, path: str, lo: float = 0.0) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key}", f"must be a number, got {value!r}")
    if value < lo:
        raise SpecError(f"{path}.{key}", f"must be at least {lo:g}, got {value}")
    return float(value)


def _enum(raw: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise SpecError(f"{path}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _list(raw: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{path}.{key}", "must be a list")
    return value


def parse_duration(text: str, path: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``2m`` or ``1h30m``."""
    if not isinstance(text, str) or not DURATION_RE.match(text):
        raise SpecError(path, f"must be a duration like 30s, 2m or 1h30m, got {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in DURATION_PART_RE.findall(text))


def _int_or_percent(raw: Mapping[str, Any], key: str, path: str, default: int | str) -> int | str:
    value = raw.get(key, default)
    if isinstance(value, bool):
        raise SpecError(f"{path}.{key}", "must be an integer or a percentage")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value) and int(value[:-1]) <= 100:
        return value
    raise SpecError(f"{path}.{key}", f"must be an integer >= 0 or a percentage, got {value!r}")


# --- the sections -----------------------------------------------------------------------------


def _parse_model(raw: Any) -> ModelSpec:
    path = "spec.model"
    m = _obj(raw, path)
    uri = _req_str(m, "uri", path)
    if not URI_RE.match(uri):
        raise SpecError(
            f"{path}.uri", f"must start with file://, pvc://CLAIM/, http(s)://, s3://, gs:// or az://, got {uri!r}"
        )
    digest = _req_str(m, "digest", path)
    if not DIGEST_RE.match(digest):
        raise SpecError(f"{path}.digest", "must be sha256: followed by 64 lowercase hex digits")
    secret = _obj(m.get("storageSecretRef"), f"{path}.storageSecretRef")
    return ModelSpec(
        uri=uri,
        digest=digest,
        format=_enum(m, "format", path, FORMATS, "joblib"),
        version=_str(m, "version", path) or "",
        method=_enum(m, "method", path, METHODS, "predict"),
        storage_secret=_req_str(secret, "name", f"{path}.storageSecretRef") if secret else None,
    )


def _parse_server(raw: Any) -> ServerSpec:
    path = "spec.server"
    s = _obj(raw, path)
    b = _obj(s.get("batching"), f"{path}.batching")
    env = []
    for i, item in enumerate(_list(s, "env", path)):
        e = _obj(item, f"{path}.env[{i}]")
        env.append((_req_str(e, "name", f"{path}.env[{i}]"), str(e.get("value", ""))))
    secrets = []
    for i, item in enumerate(_list(s, "imagePullSecrets", path)):
        secrets.append(_req_str(_obj(item, f"{path}.imagePullSecrets[{i}]"), "name", f"{path}.imagePullSecrets[{i}]"))
    return ServerSpec(
        image=_str(s, "image", path),
        image_pull_policy=_str(s, "imagePullPolicy", path),
        workers=_req_int(s, "workers", path, 1, 1, 64),
        batching=Batching(
            max_batch_size=_req_int(b, "maxBatchSize", f"{path}.batching", 64, 1, 4096),
            max_latency_ms=_req_int(b, "maxLatencyMs", f"{path}.batching", 0, 0, 1000),
        ),
        resources=dict(_obj(s.get("resources"), f"{path}.resources")),
        env=tuple(env),
        node_selector=dict(_obj(s.get("nodeSelector"), f"{path}.nodeSelector")),
        tolerations=tuple(_obj(t, f"{path}.tolerations[{i}]") for i, t in enumerate(_list(s, "tolerations", path))),
        service_account_name=_str(s, "serviceAccountName", path),
        image_pull_secrets=tuple(secrets),
        pod_labels=dict(_obj(s.get("podLabels"), f"{path}.podLabels")),
        pod_annotations=dict(_obj(s.get("podAnnotations"), f"{path}.podAnnotations")),
    )


def _parse_gate(raw: Any, path: str) -> Gate:
    g = _obj(raw, path)
    name = _str(g, "name", path)
    prom = g.get("prometheus")
    builtin = g.get("builtin")
    if (prom is None) == (builtin is None):
        raise SpecError(path, "must set exactly one of builtin or prometheus")
    if prom is not None:
        p = _obj(prom, f"{path}.prometheus")
        condition = _req_str(p, "successCondition", f"{path}.prometheus")
        try:
            parse_condition(condition)  # refuse a condition that could never be evaluated, up front
        except ConditionError as e:
            raise SpecError(f"{path}.prometheus.successCondition", str(e)) from None
        return Gate(
            name=name or "prometheus",
            query=_req_str(p, "query", f"{path}.prometheus"),
            success_condition=condition,
        )
    kind = _enum(g, "builtin", path, BUILTIN_GATES, "")
    gate = Gate(
        name=name or kind,
        builtin=kind,
        max=_num(g, "max", path),
        max_ratio_to_stable=_num(g, "maxRatioToStable", path),
        max_psi=_num(g, "maxPSI", path),
    )
    if kind == "errorRate" and (gate.max is None or gate.max > 1):
        raise SpecError(f"{path}.max", "errorRate needs max, a share between 0 and 1")
    if kind == "latencyP99" and (gate.max is None) == (gate.max_ratio_to_stable is None):
        raise SpecError(path, "latencyP99 needs exactly one of max (ms) or maxRatioToStable")
    if kind == "predictionShift" and gate.max_psi is None:
        raise SpecError(f"{path}.maxPSI", "predictionShift needs maxPSI")
    return gate


def _parse_analysis(raw: Any, path: str) -> Analysis | None:
    if raw is None:
        return None
    a = _obj(raw, path)
    gates = tuple(_parse_gate(g, f"{path}.gates[{i}]") for i, g in enumerate(_list(a, "gates", path)))
    if not gates:
        raise SpecError(f"{path}.gates", "needs at least one gate")
    return Analysis(
        interval_seconds=parse_duration(a.get("interval", "30s"), f"{path}.interval"),
        failure_limit=_req_int(a, "failureLimit", path, 2, 0),
        consecutive_error_limit=_req_int(a, "consecutiveErrorLimit", path, 4, 0),
        min_samples=_req_int(a, "minSamples", path, 100, 0),
        prometheus_url=_str(a, "prometheusUrl", path),
        gates=gates,
    )


def _parse_steps(raw: list[Any], path: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    last_weight = 0
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        s = _obj(item, p)
        if ("setWeight" in s) == ("pause" in s):
            raise SpecError(p, "must set exactly one of setWeight or pause")
        if "setWeight" in s:
            weight = _req_int(s, "setWeight", p, 0, 0, 100)
            if weight < last_weight:
                raise SpecError(f"{p}.setWeight", f"must not decrease (previous step set {last_weight})")
            last_weight = weight
            steps.append(Step(set_weight=weight))
        else:
            pause = _obj(s["pause"], f"{p}.pause")
            duration = pause.get("duration")
            seconds = None if duration is None else parse_duration(duration, f"{p}.pause.duration")
            steps.append(Step(pause=True, pause_seconds=seconds))
    return tuple(steps)


def _parse_strategy(raw: Any) -> Strategy:
    path = "spec.strategy"
    s = _obj(raw, path)
    kind = _enum(s, "type", path, STRATEGIES, "Rolling")
    for block, owner in (("rolling", "Rolling"), ("canary", "Canary"), ("blueGreen", "BlueGreen")):
        if s.get(block) is not None and kind != owner:
            raise SpecError(f"{path}.{block}", f"is only allowed when {path}.type is {owner}")
    r = _obj(s.get("rolling"), f"{path}.rolling")
    rolling = RollingSpec(
        max_surge=_int_or_percent(r, "maxSurge", f"{path}.rolling", "25%"),
        max_unavailable=_int_or_percent(r, "maxUnavailable", f"{path}.rolling", 0),
    )
    canary = None
    if kind == "Canary":
        c = _obj(s.get("canary"), f"{path}.canary")
        steps = _parse_steps(_list(c, "steps", f"{path}.canary"), f"{path}.canary.steps")
        if not steps:
            raise SpecError(f"{path}.canary.steps", "needs at least one step when type is Canary")
        canary = CanarySpec(steps=steps, analysis=_parse_analysis(c.get("analysis"), f"{path}.canary.analysis"))
    blue_green = None
    if kind == "BlueGreen":
        p = f"{path}.blueGreen"
        b = _obj(s.get("blueGreen"), p)
        blue_green = BlueGreenSpec(
            auto_promotion_seconds=_int(b, "autoPromotionSeconds", p, None, 0),
            scale_down_delay_seconds=_req_int(b, "scaleDownDelaySeconds", p, 30, 0),
            pre_promotion_analysis=_parse_analysis(b.get("prePromotionAnalysis"), f"{p}.prePromotionAnalysis"),
            post_promotion_analysis=_parse_analysis(b.get("postPromotionAnalysis"), f"{p}.postPromotionAnalysis"),
        )
    return Strategy(type=kind, rolling=rolling, canary=canary, blue_green=blue_green)


def _parse_traffic(raw: Any, strategy: Strategy) -> TrafficRouting:
    path = "spec.trafficRouting"
    t = _obj(raw, path)
    gw = _obj(t.get("gatewayAPI"), f"{path}.gatewayAPI")
    refs = []
    for i, item in enumerate(_list(gw, "parentRefs", f"{path}.gatewayAPI")):
        p = f"{path}.gatewayAPI.parentRefs[{i}]"
        r = _obj(item, p)
        refs.append(
            GatewayRef(
                name=_req_str(r, "name", p),
                namespace=_str(r, "namespace", p),
                section_name=_str(r, "sectionName", p),
                port=_int(r, "port", p, None, 1, 65535),
            )
        )
    if gw and not refs:
        raise SpecError(f"{path}.gatewayAPI.parentRefs", "needs at least one parent Gateway")
    hostnames = tuple(str(h) for h in _list(gw, "hostnames", f"{path}.gatewayAPI"))
    shadow = _obj(t.get("shadow"), f"{path}.shadow")
    percent = _req_int(shadow, "percent", f"{path}.shadow", 0, 0, 100)
    if shadow and not refs:
        raise SpecError(f"{path}.shadow", f"requires {path}.gatewayAPI (mirroring needs a Gateway)")
    if shadow and strategy.type != "Canary":
        raise SpecError(f"{path}.shadow", "is only allowed when spec.strategy.type is Canary")
    return TrafficRouting(gateway_parent_refs=tuple(refs), hostnames=hostnames, shadow_percent=percent)


def _parse_autoscaling(raw: Any) -> Autoscaling | None:
    if raw is None:
        return None
    path = "spec.autoscaling"
    a = _obj(raw, path)
    lo = _req_int(a, "minReplicas", path, 1, 1)
    hi = _req_int(a, "maxReplicas", path, lo, 1)
    if lo > hi:
        raise SpecError(f"{path}.minReplicas", f"must not exceed {path}.maxReplicas ({lo} > {hi})")
    return Autoscaling(lo, hi, _req_int(a, "targetCPUUtilizationPercentage", path, 80, 1, 100))


def parse_spec(raw: Any) -> ModelDeploymentSpec:
    """The typed spec, or SpecError naming the first bad field."""
    spec = _obj(raw, "spec")
    if "model" not in spec:
        raise SpecError("spec.model", "is required")
    strategy = _parse_strategy(spec.get("strategy"))
    drift = _obj(_obj(spec.get("monitoring"), "spec.monitoring").get("drift"), "spec.monitoring.drift")
    return ModelDeploymentSpec(
        model=_parse_model(spec["model"]),
        replicas=_req_int(spec, "replicas", "spec", 1, 0, 1000),
        progress_deadline_seconds=_req_int(spec, "progressDeadlineSeconds", "spec", 600, 1),
        revision_history_limit=_req_int(spec, "revisionHistoryLimit", "spec", 10, 0, 50),
        server=_parse_server(spec.get("server")),
        strategy=strategy,
        traffic=_parse_traffic(spec.get("trafficRouting"), strategy),
        autoscaling=_parse_autoscaling(spec.get("autoscaling")),
        drift_reference_uri=_str(drift, "referenceUri", "spec.monitoring.drift"),
    )
