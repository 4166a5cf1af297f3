"""The operator's own Prometheus metrics, and the HTTP endpoint serving them with /healthz."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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


class PhaseCollector(Collector):
    """ModelDeployments by phase, read from the cache at scrape time."""

    def __init__(self, phases: Callable[[], dict[str, int]]) -> None:
        self.phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("modelroll_operator_objects", "ModelDeployments by phase.", labels=["phase"])
        for phase, count in sorted(self.phases().items()):
            family.add_metric([phase], count)
        yield family


async def serve(port: int, phases: Callable[[], dict[str, int]], healthy: Callable[[], bool]) -> web.AppRunner:
    REGISTRY.register(PhaseCollector(phases))

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
