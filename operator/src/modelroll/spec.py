"""Parse a ModelDeployment's raw ``spec`` into frozen, typed values (pure, no I/O).

The CRD (crds/modeldeployment.yaml) is the one source of every default, enum, pattern and
bound: ``parse_spec`` first validates and defaults the raw spec against the CRD's own schema
(spec_schema.py, generated from it) as the API server does at admission, then checks what the
CRD says in CEL rules, and builds the typed values. Admission refuses bad objects first; this is
the second line, for objects written before a schema change or through an API server that
skipped validation. Every error names the field path, e.g. ``spec.strategy.canary.steps[2].setWeight``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .analysis.condition import ConditionError, parse_condition
from .spec_schema import SPEC_SCHEMA
from .structural import SpecError, check, default_of, schema_at

__all__ = ["SpecError", "parse_spec", "parse_duration", "rollout_steps", "ModelDeploymentSpec"]

DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _enum(path: str) -> tuple[str, ...]:
    return tuple(schema_at(SPEC_SCHEMA, path)["enum"])


FORMATS = _enum("spec.model.format")
METHODS = _enum("spec.model.method")
STRATEGIES = _enum("spec.strategy.type")
BUILTIN_GATES = _enum("spec.strategy.canary.analysis.gates[].builtin")
# Which threshold each builtin gate takes (the CRD's CEL rules on gates[]).
GATE_THRESHOLDS = {
    "max": ("errorRate", "latencyP99"),
    "maxIncrease": ("errorRate",),
    "maxRatioToStable": ("latencyP99",),
    "maxPSI": ("predictionShift", "featureDrift"),
    "detect": ("errorRate", "predictionShift", "featureDrift"),
    "minAgreement": ("predictionAgreement",),
    "maxMeanAbsDifference": ("predictionAgreement",),
    "minPairs": ("predictionAgreement",),
    "features": ("featureDrift",),
    "min": ("liveAccuracy",),
    "maxDrop": ("liveAccuracy",),
    "maxMeanAbsError": ("liveAccuracy",),
    "minLabels": ("liveAccuracy",),
}
AGREEMENT = "predictionAgreement"  # the gate of the shadow phase (spec.trafficRouting.shadow)
FEATURE_DRIFT = "featureDrift"  # live inputs against the new revision's reference (spec.monitoring.drift)
LIVE_ACCURACY = "liveAccuracy"  # late labels (the server's feedback endpoint) over the whole run


def parse_duration(text: str, path: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``2m`` or ``1h30m``."""
    if not isinstance(text, str) or not DURATION_RE.match(text):
        raise SpecError(path, f"must be a duration like 30s, 2m or 1h30m, got {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in DURATION_PART_RE.findall(text))


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    digest: str
    format: str
    version: str
    method: str
    storage_secret: str | None = None


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_latency_ms: int


@dataclass(frozen=True)
class ServerSpec:
    workers: int
    batching: Batching
    image: str | None = None
    image_pull_policy: str | None = None
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
    max_increase: float | None = None  # errorRate: the canary's 5xx share over stable's
    detect: float | None = None  # errorRate / predictionShift: the effect to catch; derives minSamples
    min_agreement: float | None = None  # predictionAgreement, classifiers: least share of identical labels
    max_mean_abs_difference: float | None = None  # predictionAgreement, regressors
    min_pairs: int | None = None  # predictionAgreement: compared rows needed (None: the analysis' minSamples)
    features: tuple[str, ...] = ()  # featureDrift: the features judged (empty: all)
    min: float | None = None  # liveAccuracy, classifiers: least accuracy
    max_drop: float | None = None  # liveAccuracy, classifiers: accuracy below stable's
    max_mean_abs_error: float | None = None  # liveAccuracy, regressors
    min_labels: int | None = None  # liveAccuracy: labels needed (None: the analysis' minSamples)
    query: str | None = None
    success_condition: str | None = None


_ANALYSIS = default_of(SPEC_SCHEMA, "spec.strategy.canary.analysis")


def parse_inconclusive_limit(raw: int | str, path: str) -> tuple[int | None, float | None]:
    """(count, seconds) of an ``inconclusiveLimit``: an integer counts Inconclusive measurements
    in a row, a duration is the time they span; exactly one of the two is set."""
    if isinstance(raw, int):
        return raw, None  # the schema's minimum (1) already holds
    seconds = parse_duration(raw, path)
    if seconds < 1:
        raise SpecError(path, f"must be a count of at least 1 or a duration of at least 1s, got {raw!r}")
    return None, seconds


_INCONCLUSIVE = parse_inconclusive_limit(_ANALYSIS["inconclusiveLimit"], "inconclusiveLimit")


@dataclass(frozen=True)
class Analysis:
    """The defaults (the CRD's) serve code and tests that build one directly."""

    interval_seconds: float = parse_duration(_ANALYSIS["interval"], "interval")
    failure_limit: int = _ANALYSIS["failureLimit"]
    consecutive_error_limit: int = _ANALYSIS["consecutiveErrorLimit"]
    min_samples: int = _ANALYSIS["minSamples"]
    significance: float = _ANALYSIS["significance"]
    prometheus_url: str | None = None
    gates: tuple[Gate, ...] = ()
    # inconclusiveLimit: Inconclusive measurements in a row (a count), or the time they span
    inconclusive_limit: int | None = _INCONCLUSIVE[0]
    inconclusive_seconds: float | None = _INCONCLUSIVE[1]
    inconclusive_action: str = _ANALYSIS["inconclusiveAction"]  # Pause | Abort


@dataclass(frozen=True)
class Step:
    """One canary step: exactly one of ``set_weight``, a pause (``pause`` True), or the shadow
    phase (``shadow_percent``), which ``rollout_steps`` puts before the spec's steps."""

    set_weight: int | None = None
    pause: bool = False
    pause_seconds: float | None = None  # None with pause=True: wait for a manual promote
    shadow_percent: int | None = None  # the shadow phase: stable copies this share to the canary


@dataclass(frozen=True)
class RollingSpec:
    max_surge: int | str
    max_unavailable: int | str


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[Step, ...]
    analysis: Analysis | None = None
    # the post-promotion watch (strategies/canary.py): 0 and no analysis = none
    scale_down_delay_seconds: int = 0
    post_promotion_analysis: Analysis | None = None


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promotion_seconds: int | None
    scale_down_delay_seconds: int
    pre_promotion_analysis: Analysis | None = None
    post_promotion_analysis: Analysis | None = None


@dataclass(frozen=True)
class Strategy:
    type: str
    rolling: RollingSpec
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
    target_cpu_utilization: int


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelSpec
    replicas: int
    progress_deadline_seconds: int
    revision_history_limit: int
    server: ServerSpec
    strategy: Strategy
    traffic: TrafficRouting = field(default_factory=TrafficRouting)
    autoscaling: Autoscaling | None = None
    drift_reference_uri: str | None = None  # spec.monitoring.drift: fetched beside the model
    drift_reference_digest: str | None = None


# --- the sections, from a spec the schema already checked and defaulted -------------------------


def _parse_model(m: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(
        uri=m["uri"],
        digest=m["digest"],
        format=m["format"],
        version=m.get("version", ""),
        method=m["method"],
        storage_secret=(m.get("storageSecretRef") or {}).get("name"),
    )


def _parse_server(s: Mapping[str, Any]) -> ServerSpec:
    return ServerSpec(
        workers=s["workers"],
        batching=Batching(s["batching"]["maxBatchSize"], s["batching"]["maxLatencyMs"]),
        image=s.get("image"),
        image_pull_policy=s.get("imagePullPolicy"),
        resources=dict(s.get("resources") or {}),
        env=tuple((e["name"], str(e.get("value", ""))) for e in s.get("env") or ()),
        node_selector=dict(s.get("nodeSelector") or {}),
        tolerations=tuple(s.get("tolerations") or ()),
        service_account_name=s.get("serviceAccountName"),
        image_pull_secrets=tuple(ref["name"] for ref in s.get("imagePullSecrets") or ()),
        pod_labels=dict(s.get("podLabels") or {}),
        pod_annotations=dict(s.get("podAnnotations") or {}),
    )


def _parse_gate(g: Mapping[str, Any], path: str) -> Gate:
    prom, builtin = g.get("prometheus"), g.get("builtin")
    if (prom is None) == (builtin is None):
        raise SpecError(path, "must set exactly one of builtin or prometheus")
    for key, kinds in GATE_THRESHOLDS.items():
        if key in g and builtin not in kinds:
            raise SpecError(f"{path}.{key}", f"is only allowed with builtin {_either(kinds)}")
    if prom is not None:
        try:
            parse_condition(prom["successCondition"])  # refuse a condition that could never be evaluated, up front
        except ConditionError as e:
            raise SpecError(f"{path}.prometheus.successCondition", str(e)) from None
        return Gate(name=g.get("name") or "prometheus", query=prom["query"], success_condition=prom["successCondition"])
    gate = Gate(
        name=g.get("name") or str(builtin),
        builtin=builtin,
        max=g.get("max"),
        max_ratio_to_stable=g.get("maxRatioToStable"),
        max_psi=g.get("maxPSI"),
        max_increase=g.get("maxIncrease"),
        detect=g.get("detect"),
        min_agreement=g.get("minAgreement"),
        max_mean_abs_difference=g.get("maxMeanAbsDifference"),
        min_pairs=g.get("minPairs"),
        features=tuple(g.get("features") or ()),
        min=g.get("min"),
        max_drop=g.get("maxDrop"),
        max_mean_abs_error=g.get("maxMeanAbsError"),
        min_labels=g.get("minLabels"),
    )
    if builtin == LIVE_ACCURACY:
        _check_live_accuracy(gate, path)
    if builtin == AGREEMENT and (gate.min_agreement is None) == (gate.max_mean_abs_difference is None):
        raise SpecError(path, "predictionAgreement needs exactly one of minAgreement or maxMeanAbsDifference")
    if builtin == "errorRate":
        _check_error_rate(gate, path)
    if builtin == "latencyP99" and (gate.max is None) == (gate.max_ratio_to_stable is None):
        raise SpecError(path, "latencyP99 needs exactly one of max (ms) or maxRatioToStable")
    if builtin in ("predictionShift", FEATURE_DRIFT) and gate.max_psi is None:
        raise SpecError(f"{path}.maxPSI", f"{builtin} needs maxPSI")
    if builtin == FEATURE_DRIFT and not (gate.max_psi or 0) > 0:
        raise SpecError(f"{path}.maxPSI", "must be above 0 for builtin featureDrift")
    if builtin in ("predictionShift", FEATURE_DRIFT) and gate.detect is not None and gate.detect <= (gate.max_psi or 0):
        raise SpecError(f"{path}.detect", "must be above maxPSI (the shift to catch lies beyond the threshold)")
    return gate


def _either(kinds: tuple[str, ...]) -> str:
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def _check_live_accuracy(gate: Gate, path: str) -> None:
    """The CRD's CEL rules on a liveAccuracy gate: a classifier's thresholds or a regressor's."""
    if gate.min is None and gate.max_drop is None and gate.max_mean_abs_error is None:
        raise SpecError(path, "liveAccuracy needs min or maxDrop (classifiers), or maxMeanAbsError (regressors)")
    if gate.max_mean_abs_error is not None and (gate.min is not None or gate.max_drop is not None):
        raise SpecError(f"{path}.maxMeanAbsError", "(regressors) cannot be combined with min or maxDrop (classifiers)")


def _check_error_rate(gate: Gate, path: str) -> None:
    """The CRD's CEL rules on an errorRate gate."""
    if gate.max is None and gate.max_increase is None:
        raise SpecError(f"{path}.max", "errorRate needs max, maxIncrease or both")
    if gate.max is not None and gate.max > 1:
        raise SpecError(f"{path}.max", "errorRate needs max, a share between 0 and 1")
    if gate.detect is not None:
        if gate.detect > 1:
            raise SpecError(f"{path}.detect", "is a share for builtin errorRate and must be between 0 and 1")
        bound, name = (gate.max, "max") if gate.max is not None else (gate.max_increase, "maxIncrease")
        if gate.detect <= (bound or 0.0):
            raise SpecError(f"{path}.detect", f"must be above {name} (the effect to catch lies beyond the threshold)")


def _parse_analysis(a: Mapping[str, Any] | None, path: str) -> Analysis | None:
    if a is None:
        return None
    gates = tuple(_parse_gate(g, f"{path}.gates[{i}]") for i, g in enumerate(a["gates"]))
    names = [g["name"] for g in a["gates"] if g.get("name")]
    if len(names) != len(set(names)):
        raise SpecError(f"{path}.gates", "gate names must be unique")
    interval = parse_duration(a["interval"], f"{path}.interval")
    if interval < 1:
        raise SpecError(f"{path}.interval", f"must be at least 1s, got {a['interval']!r}")
    count, seconds = parse_inconclusive_limit(a["inconclusiveLimit"], f"{path}.inconclusiveLimit")
    return Analysis(
        interval_seconds=interval,
        failure_limit=a["failureLimit"],
        consecutive_error_limit=a["consecutiveErrorLimit"],
        min_samples=a["minSamples"],
        significance=a["significance"],
        prometheus_url=a.get("prometheusUrl"),
        gates=gates,
        inconclusive_limit=count,
        inconclusive_seconds=seconds,
        inconclusive_action=a["inconclusiveAction"],
    )


def _parse_steps(raw: list[Mapping[str, Any]], path: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    last_weight = 0
    for i, s in enumerate(raw):
        p = f"{path}[{i}]"
        if ("setWeight" in s) == ("pause" in s):
            raise SpecError(p, "must set exactly one of setWeight or pause")
        if "setWeight" in s:
            if s["setWeight"] < last_weight:
                raise SpecError(f"{p}.setWeight", f"must not decrease (previous step set {last_weight})")
            last_weight = s["setWeight"]
            steps.append(Step(set_weight=last_weight))
            continue
        duration = s["pause"].get("duration")
        seconds = None if duration is None else parse_duration(duration, f"{p}.pause.duration")
        if seconds is not None and seconds <= 0:
            raise SpecError(f"{p}.pause.duration", "must be positive (omit it to wait for a manual promote)")
        steps.append(Step(pause=True, pause_seconds=seconds))
    return tuple(steps)


def _parse_strategy(s: Mapping[str, Any]) -> Strategy:
    path, kind = "spec.strategy", s["type"]
    for block, owner in (("rolling", "Rolling"), ("canary", "Canary"), ("blueGreen", "BlueGreen")):
        if s.get(block) is not None and kind != owner:
            raise SpecError(f"{path}.{block}", f"is only allowed when {path}.type is {owner}")
    r = s.get("rolling") or default_of(SPEC_SCHEMA, f"{path}.rolling")
    if str(r["maxSurge"]) in ("0", "0%") and str(r["maxUnavailable"]) in ("0", "0%"):
        raise SpecError(f"{path}.rolling", "maxSurge and maxUnavailable must not both be zero")
    canary = None
    if kind == "Canary":
        c = s.get("canary")
        if c is None:
            raise SpecError(f"{path}.canary.steps", "is required when spec.strategy.type is Canary")
        steps = _parse_steps(c["steps"], f"{path}.canary.steps")
        canary = CanarySpec(
            steps=steps,
            analysis=_parse_analysis(c.get("analysis"), f"{path}.canary.analysis"),
            scale_down_delay_seconds=c.get("scaleDownDelaySeconds", 0),
            post_promotion_analysis=_parse_analysis(
                c.get("postPromotionAnalysis"), f"{path}.canary.postPromotionAnalysis"
            ),
        )
    blue_green = None
    if kind == "BlueGreen":
        p, b = f"{path}.blueGreen", s.get("blueGreen") or default_of(SPEC_SCHEMA, f"{path}.blueGreen")
        blue_green = BlueGreenSpec(
            auto_promotion_seconds=b.get("autoPromotionSeconds"),
            scale_down_delay_seconds=b["scaleDownDelaySeconds"],
            pre_promotion_analysis=_parse_analysis(b.get("prePromotionAnalysis"), f"{p}.prePromotionAnalysis"),
            post_promotion_analysis=_parse_analysis(b.get("postPromotionAnalysis"), f"{p}.postPromotionAnalysis"),
        )
    for analysis, where in (
        (blue_green and blue_green.pre_promotion_analysis, "blueGreen.prePromotionAnalysis"),
        (blue_green and blue_green.post_promotion_analysis, "blueGreen.postPromotionAnalysis"),
        (canary and canary.post_promotion_analysis, "canary.postPromotionAnalysis"),
    ):
        if analysis and any(g.builtin == AGREEMENT for g in analysis.gates):
            raise SpecError(
                f"{path}.{where}.gates", f"cannot use builtin {AGREEMENT} (shadowing happens before any user traffic)"
            )
    rolling = RollingSpec(max_surge=r["maxSurge"], max_unavailable=r["maxUnavailable"])
    return Strategy(type=kind, rolling=rolling, canary=canary, blue_green=blue_green)


def _parse_traffic(t: Mapping[str, Any], strategy: Strategy) -> TrafficRouting:
    path = "spec.trafficRouting"
    gw = t.get("gatewayAPI") or {}
    refs = tuple(
        GatewayRef(name=r["name"], namespace=r.get("namespace"), section_name=r.get("sectionName"), port=r.get("port"))
        for r in gw.get("parentRefs") or ()
    )
    shadow = t.get("shadow")
    if shadow is not None and strategy.type != "Canary":
        raise SpecError(f"{path}.shadow", "is only allowed when spec.strategy.type is Canary")
    analysis = strategy.canary.analysis if strategy.canary else None
    if shadow is not None and analysis is None:
        raise SpecError(
            f"{path}.shadow", "requires spec.strategy.canary.analysis (the shadow phase ends on a passing measurement)"
        )
    if shadow is None and analysis is not None and any(g.builtin == AGREEMENT for g in analysis.gates):
        raise SpecError("spec.strategy.canary.analysis.gates", f"builtin {AGREEMENT} requires {path}.shadow")
    percent = shadow["percent"] if shadow is not None else 0
    return TrafficRouting(gateway_parent_refs=refs, hostnames=tuple(gw.get("hostnames") or ()), shadow_percent=percent)


def rollout_steps(spec: ModelDeploymentSpec) -> tuple[Step, ...]:
    """A canary's steps as it runs them: the shadow phase first when spec.trafficRouting.shadow
    is set (so ``currentStep`` 0 is that phase and ``stepCount`` counts it), then the spec's."""
    steps = spec.strategy.canary.steps if spec.strategy.canary else ()
    if spec.traffic.shadow_percent:
        return (Step(shadow_percent=spec.traffic.shadow_percent), *steps)
    return steps


def _parse_autoscaling(a: Mapping[str, Any] | None) -> Autoscaling | None:
    if a is None:
        return None
    lo, hi = a["minReplicas"], a["maxReplicas"]
    if lo > hi:
        raise SpecError("spec.autoscaling.minReplicas", f"must not exceed spec.autoscaling.maxReplicas ({lo} > {hi})")
    return Autoscaling(lo, hi, a["targetCPUUtilizationPercentage"])


def parse_spec(raw: Any) -> ModelDeploymentSpec:
    """The typed spec, or SpecError naming the first bad field."""
    spec = check({} if raw is None else raw, SPEC_SCHEMA, "spec")
    strategy = _parse_strategy(spec["strategy"])
    drift = (spec.get("monitoring") or {}).get("drift") or {}
    return ModelDeploymentSpec(
        model=_parse_model(spec["model"]),
        replicas=spec["replicas"],
        progress_deadline_seconds=spec["progressDeadlineSeconds"],
        revision_history_limit=spec["revisionHistoryLimit"],
        server=_parse_server(spec["server"]),
        strategy=strategy,
        traffic=_parse_traffic(spec.get("trafficRouting") or {}, strategy),
        autoscaling=_parse_autoscaling(spec.get("autoscaling")),
        drift_reference_uri=drift.get("referenceUri"),
        drift_reference_digest=drift.get("referenceDigest"),
    )
