"""Which analysis is due for a ModelDeployment now, and the PromQL it runs (pure).

The controller asks ``plan_measurement`` before each reconcile; when it returns something,
the controller runs the queries (analysis/prometheus.py) and hands the raw numbers to the
planner through ``Observed.measurement``. Deciding from status alone keeps this in step with
the strategies: they record the run in ``status.analysis`` and the current step/stage.

Built-in gates compare the canary (or blue-green preview) with stable over the same window,
picked out by the labels the server puts on every metric: ``model_name`` (the object's name),
``model_version`` (each track's ``spec.model.version``) and ``track``; and by ``namespace``,
which Prometheus itself attaches to every target it discovers (the chart's PodMonitor, or the
relabelling in docs/prometheus-scrape-config.yaml). The server exports no ``namespace`` label, and
one it did would be renamed ``exported_namespace`` (``honor_labels`` is off), so two
ModelDeployments of the same name in two namespaces never read each other's series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelroll_contract import (
    DRIFT_BIN_LABEL,
    DRIFT_FEATURE_LABEL,
    METRIC_CONFIDENCE,
    METRIC_FEATURE_BINS,
    METRIC_FEATURE_REFERENCE,
    METRIC_FEEDBACK,
    METRIC_FEEDBACK_ABS_ERROR,
    METRIC_LATENCY,
    METRIC_PREDICTIONS,
    METRIC_REQUESTS,
    METRIC_SHADOW_ABS_DIFFERENCE,
    METRIC_SHADOW_ROWS,
    SHADOW_LABEL,
    TRACK_CANARY,
    TRACK_STABLE,
)

from ..children import shadow_version
from ..spec import AGREEMENT, FEATURE_DRIFT, LIVE_ACCURACY, Analysis, Gate, ModelDeploymentSpec, rollout_steps
from .gates import CANARY_SCOPE, POST_PROMOTION, PRE_PROMOTION, analysis_at
from .state import current_run, next_due_seconds, run_seconds

# Stages of status.blueGreen (strategies/bluegreen.py) and the key of a canary's post-promotion
# watch (strategies/rollout.py), repeated here so this module does not import a strategy.
PREVIEW, SWITCHED = "Preview", "Switched"
WATCH_KEY = "watch"


@dataclass(frozen=True)
class MeasurementPlan:
    scope: str
    revision: str
    analysis: Analysis
    model_name: str
    canary_version: str
    stable_version: str
    namespace: str  # the ModelDeployment's, matched against the label Prometheus attaches
    # seconds since the run began (status.analysis.startedAt); None before its first measurement
    run_seconds: float | None = None

    def selector(self, track: str, extra: str = "") -> str:
        version = self.canary_version if track == TRACK_CANARY else self.stable_version
        labels = [
            f'namespace="{escape(self.namespace)}"',
            f'model_name="{escape(self.model_name)}"',
            f'model_version="{escape(version)}"',
            f'track="{track}"',
        ]
        return "{" + ",".join(labels + ([extra] if extra else [])) + "}"

    @property
    def window(self) -> str:
        return f"{max(int(round(self.analysis.interval_seconds)), 1)}s"

    @property
    def labels_window(self) -> str:
        """liveAccuracy's window: the whole run so far, at least one interval. Labels arrive
        late, so one interval holds few, and those of predictions made any time before."""
        seconds = max(self.run_seconds or 0.0, self.analysis.interval_seconds, 1.0)
        return f"{int(round(seconds))}s"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _analysis_due(spec: ModelDeploymentSpec, status: Mapping[str, Any]) -> tuple[str, Analysis] | None:
    strategy = spec.strategy
    if strategy.type == "Canary" and strategy.canary:
        steps, step = rollout_steps(spec), int(status.get("currentStep", 0))
        if step < int(status.get("stepCount", len(steps))) and step < len(steps):
            # the shadow phase runs every gate; the steps after it all but predictionAgreement
            analysis = analysis_at(strategy.canary.analysis, steps[step].shadow_percent is not None)
            return (CANARY_SCOPE, analysis) if analysis else None
        watch = status.get(WATCH_KEY) or {}
        if watch.get("switchedAt") and not watch.get("done") and strategy.canary.post_promotion_analysis:
            return POST_PROMOTION, strategy.canary.post_promotion_analysis
        return None
    if strategy.type == "BlueGreen" and strategy.blue_green:
        bg, state = strategy.blue_green, status.get("blueGreen") or {}
        stage = state.get("stage", PREVIEW)
        if stage == PREVIEW and state.get("previewReadyAt") and bg.pre_promotion_analysis:
            return PRE_PROMOTION, bg.pre_promotion_analysis
        if stage == SWITCHED and bg.post_promotion_analysis:
            return POST_PROMOTION, bg.post_promotion_analysis
    return None


def plan_measurement(
    spec: ModelDeploymentSpec, namespace: str, name: str, status: Mapping[str, Any], now: datetime
) -> MeasurementPlan | None:
    """The measurement due now, or None (no rollout with analysis in progress, or not due yet)."""
    canary, stable = status.get("canary") or {}, status.get("stable") or {}
    revision = canary.get("revision")
    if not revision or not stable or stable.get("revision") == revision or status.get("pinned"):
        return None
    if (status.get("aborted") or {}).get("revision") == revision:
        return None
    found = _analysis_due(spec, status)
    if found is None:
        return None
    scope, analysis = found
    run = current_run(status.get("analysis"), scope, revision)
    if run.get("outcome") or next_due_seconds(run, analysis, now) > 0:
        return None
    return MeasurementPlan(
        scope=scope,
        revision=revision,
        analysis=analysis,
        model_name=name,
        canary_version=str(canary.get("version") or ""),
        stable_version=str(stable.get("version") or ""),
        namespace=namespace,
        run_seconds=run_seconds(run, now),
    )


def build_queries(plan: MeasurementPlan, gate: Gate) -> dict[str, str]:
    """The PromQL for one gate, keyed by what each query answers (see gates.GateData)."""
    w = plan.window
    canary, stable = plan.selector(TRACK_CANARY), plan.selector(TRACK_STABLE)
    if gate.builtin is None:
        text = (gate.query or "").replace("{{name}}", escape(plan.model_name)).replace("{{window}}", w)
        text = text.replace("{{namespace}}", escape(plan.namespace))
        text = text.replace("{{canaryVersion}}", escape(plan.canary_version))
        return {"result": text.replace("{{stableVersion}}", escape(plan.stable_version))}
    if gate.builtin == AGREEMENT:
        return _agreement_queries(plan, gate)
    if gate.builtin == FEATURE_DRIFT:
        return _drift_queries(plan)
    if gate.builtin == LIVE_ACCURACY:
        return _accuracy_queries(plan, gate)
    queries = {"samples": f"sum(increase({METRIC_REQUESTS}{canary}[{w}]))"}
    if gate.builtin == "errorRate":
        five_xx = plan.selector(TRACK_CANARY, 'code=~"5.."')
        queries["errors"] = f"sum(increase({METRIC_REQUESTS}{five_xx}[{w}]))"
        if gate.max_increase is not None:  # compared with stable's share over the same window
            stable_5xx = plan.selector(TRACK_STABLE, 'code=~"5.."')
            queries["stable_samples"] = f"sum(increase({METRIC_REQUESTS}{stable}[{w}]))"
            queries["stable_errors"] = f"sum(increase({METRIC_REQUESTS}{stable_5xx}[{w}]))"
    elif gate.builtin == "latencyP99":
        for side, sel in (("canary_p99", canary), ("stable_p99", stable)):
            queries[side] = f"histogram_quantile(0.99, sum by (le) (increase({METRIC_LATENCY}_bucket{sel}[{w}])))"
    else:
        for side, sel in (("canary", canary), ("stable", stable)):
            queries[f"{side}_classes"] = f"sum by (class) (increase({METRIC_PREDICTIONS}{sel}[{w}]))"
            queries[f"{side}_confidence"] = f"sum by (le) (increase({METRIC_CONFIDENCE}_bucket{sel}[{w}]))"
    return queries


def _agreement_queries(plan: MeasurementPlan, gate: Gate) -> dict[str, str]:
    """The stable's shadow series against this canary: the stable's own labels plus
    ``canary_version``, so copies compared with an earlier canary never count."""
    w, version = plan.window, escape(shadow_version(plan.canary_version, plan.revision))
    compared = f'{SHADOW_LABEL}="{version}"'
    if gate.min_agreement is not None:
        rows = {side: plan.selector(TRACK_STABLE, f'{compared},result="{side}"') for side in ("agree", "disagree")}
        return {side: f"sum(increase({METRIC_SHADOW_ROWS}{sel}[{w}]))" for side, sel in rows.items()}
    sel = plan.selector(TRACK_STABLE, compared)
    return {
        "difference_sum": f"sum(increase({METRIC_SHADOW_ABS_DIFFERENCE}_sum{sel}[{w}]))",
        "difference_count": f"sum(increase({METRIC_SHADOW_ABS_DIFFERENCE}_count{sel}[{w}]))",
        "difference_buckets": f"sum by (le) (increase({METRIC_SHADOW_ABS_DIFFERENCE}_bucket{sel}[{w}]))",
    }


def _drift_queries(plan: MeasurementPlan) -> dict[str, str]:
    """Each track's input rows per feature and bin over the window, and the reference shares
    its own Pods export (a canary and a stable of different references bin differently, so each
    track is compared with its own)."""
    w, by = plan.window, f"{DRIFT_FEATURE_LABEL}, {DRIFT_BIN_LABEL}"
    queries = {}
    for side, track in (("canary", TRACK_CANARY), ("stable", TRACK_STABLE)):
        sel = plan.selector(track)
        queries[f"{side}_bins"] = f"sum by ({by}) (increase({METRIC_FEATURE_BINS}{sel}[{w}]))"
        queries[f"{side}_reference"] = f"max by ({by}) ({METRIC_FEATURE_REFERENCE}{sel})"
    return queries


def _accuracy_queries(plan: MeasurementPlan, gate: Gate) -> dict[str, str]:
    """Each track's labels since the run began (``labels_window``), counted by the Pod that
    made the prediction: by result for classifiers, the absolute error for regressors."""
    w = plan.labels_window
    queries = {}
    for side, track in (("canary", TRACK_CANARY), ("stable", TRACK_STABLE)):
        sel = plan.selector(track)
        if gate.max_mean_abs_error is None:
            queries[f"{side}_feedback"] = f"sum by (result) (increase({METRIC_FEEDBACK}{sel}[{w}]))"
            continue
        queries[f"{side}_error_sum"] = f"sum(increase({METRIC_FEEDBACK_ABS_ERROR}_sum{sel}[{w}]))"
        queries[f"{side}_error_count"] = f"sum(increase({METRIC_FEEDBACK_ABS_ERROR}_count{sel}[{w}]))"
    if gate.max_mean_abs_error is not None:
        sel = plan.selector(TRACK_CANARY)
        queries["canary_error_buckets"] = f"sum by (le) (increase({METRIC_FEEDBACK_ABS_ERROR}_bucket{sel}[{w}]))"
    return queries
