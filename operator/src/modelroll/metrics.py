"""The operator's own Prometheus metrics, and the HTTP endpoint serving them with /healthz."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .analysis.gates import VERDICTS
from .analysis.verdict import track_samples, track_value

RECONCILES = Counter(
    "modelroll_operator_reconciles_total", "Reconciles by outcome (changed, unchanged, error).", ["outcome"]
)
RECONCILE_SECONDS = Histogram(
    "modelroll_operator_reconcile_duration_seconds",
    "Time to plan and apply one reconcile.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter(
    "modelroll_operator_api_writes_total", "Write requests sent to the Kubernetes API.", ["verb", "kind"]
)

LEADER = Gauge(
    "modelroll_operator_leader", "1 while this replica reconciles (holds the leader Lease, or election is off)."
)
PHASES = ("Pending", "Progressing", "Paused", "Healthy", "Degraded", "Failed")


class PhaseCollector(Collector):
    """ModelDeployments by phase, read from the cache at scrape time."""

    def __init__(self, phases: Callable[[], dict[str, int]]) -> None:
        self.phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("modelroll_operator_objects", "ModelDeployments by phase.", labels=["phase"])
        for phase, count in sorted(self.phases().items()):
            family.add_metric([phase], count)
        yield family


class ObjectCollector(Collector):
    """Each ModelDeployment's phase, traffic weights and canary step, from its cached status
    (what the Grafana dashboard draws next to the model servers' own metrics)."""

    def __init__(self, parents: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.parents = parents

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["model_namespace", "model_name"]
        phase = GaugeMetricFamily(
            "modelroll_modeldeployment_phase", "1 for the ModelDeployment's status.phase, 0 for the others.",
            labels=[*labels, "phase"],
        )  # fmt: skip
        weight = GaugeMetricFamily(
            "modelroll_modeldeployment_weight", "status.weights: traffic percent per track.", labels=[*labels, "track"]
        )
        step = GaugeMetricFamily("modelroll_modeldeployment_step", "status.currentStep (Canary).", labels=labels)
        gate_labels = [*labels, "scope", "gate"]
        gate_verdict = GaugeMetricFamily(
            "modelroll_modeldeployment_gate_verdict",
            "1 for each analysis gate's latest verdict (status.analysis.gates), 0 for the others.",
            labels=[*gate_labels, "verdict"],
        )  # fmt: skip
        gate_value = GaugeMetricFamily(
            "modelroll_modeldeployment_gate_value", "Each analysis gate's latest value (status.analysis.gates).",
            labels=gate_labels,
        )  # fmt: skip
        gate_samples = GaugeMetricFamily(
            "modelroll_modeldeployment_gate_samples", "The sample size behind each analysis gate's latest verdict.",
            labels=gate_labels,
        )  # fmt: skip
        track_values = GaugeMetricFamily(
            "modelroll_modeldeployment_gate_track_value",
            "Each track's own value of a quality gate (status.analysis.gates[].tracks): featureDrift's largest "
            "feature PSI, liveAccuracy's accuracy or mean absolute error.",
            labels=[*gate_labels, "track"],
        )  # fmt: skip
        track_sizes = GaugeMetricFamily(
            "modelroll_modeldeployment_gate_track_samples",
            "Each track's sample size behind a quality gate: input rows (featureDrift) or labels (liveAccuracy).",
            labels=[*gate_labels, "track"],
        )  # fmt: skip
        for obj in list(self.parents()):
            meta, status = obj["metadata"], obj.get("status") or {}
            ident = [meta["namespace"], meta["name"]]
            current = status.get("phase") or "Pending"
            for name in PHASES:
                phase.add_metric([*ident, name], 1.0 if name == current else 0.0)
            for track, value in sorted((status.get("weights") or {}).items()):
                weight.add_metric([*ident, track], float(value))
            if isinstance(status.get("currentStep"), int):
                step.add_metric(ident, float(status["currentStep"]))
            run = status.get("analysis") or {}
            for gate in run.get("gates") or []:
                key = [*ident, str(run.get("scope", "")), str(gate.get("name", ""))]
                for name in VERDICTS:
                    gate_verdict.add_metric([*key, name], 1.0 if gate.get("verdict") == name else 0.0)
                if isinstance(gate.get("value"), (int, float)):
                    gate_value.add_metric(key, float(gate["value"]))
                if isinstance(gate.get("samples"), int):
                    gate_samples.add_metric(key, float(gate["samples"]))
                for track, entry in sorted((gate.get("tracks") or {}).items()):
                    value = track_value(entry)
                    if value is not None:
                        track_values.add_metric([*key, track], float(entry[value]))
                    size = track_samples(entry)
                    if size is not None:
                        track_sizes.add_metric([*key, track], float(entry[size]))
        yield from (phase, weight, step, gate_verdict, gate_value, gate_samples, track_values, track_sizes)


async def serve(
    port: int,
    phases: Callable[[], dict[str, int]],
    healthy: Callable[[], bool],
    parents: Callable[[], Iterable[dict[str, Any]]] | None = None,
) -> web.AppRunner:
    REGISTRY.register(PhaseCollector(phases))
    if parents is not None:
        REGISTRY.register(ObjectCollector(parents))

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"healthy": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
