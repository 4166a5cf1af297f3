"""A replica-ratio canary at 90 % on the real node, with no Gateway API: the stable track
shrinks as the canary's Pods become Ready and grows back first on abort. Proven on the
Service's EndpointSlices, watched (every change, not samples), under continuous traffic."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.operator_helpers import apply, phase_is, plugin, stable_version_is, status_of, weights_are
from tests.e2e.real_node import ServiceLoad, cluster_ip, real_manifest, wait_until_proxied
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

N = 10
TIMEOUT = 300  # ten Pods starting at once on a two-core machine
STRATEGY = {"type": "Canary", "canary": {"steps": [{"setWeight": 90}, {"pause": {}}]}}


class EndpointWatch:
    """Every state of a Service's EndpointSlices, from a `kubectl get -w` stream: the ready
    endpoints of each track (from the Pod's name, NAME-TRACK-…) after each change."""

    def __init__(self, kubeconfig: Path, namespace: str, service: str) -> None:
        self.service = service
        self.slices: dict[str, list[dict]] = {}
        self.seen: list[tuple[float, int, int]] = []  # (time, stable ready, canary ready)
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "endpointslices", "-n", namespace, "-l",
             f"kubernetes.io/service-name={service}", "-w", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _events(self) -> Iterator[dict]:
        decoder, buffer = json.JSONDecoder(), ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break  # an event split over lines: read on
                buffer = buffer.lstrip()[end:]
                yield event

    def _read(self) -> None:
        for event in self._events():
            obj = event["object"]
            with self._lock:
                if event["type"] == "DELETED":
                    self.slices.pop(obj["metadata"]["name"], None)
                else:
                    self.slices[obj["metadata"]["name"]] = obj.get("endpoints") or []
                self.seen.append((time.monotonic(), *self._count()))

    def _count(self) -> tuple[int, int]:
        counts = {"stable": 0, "canary": 0}
        for endpoints in self.slices.values():
            for ep in endpoints:
                pod = (ep.get("targetRef") or {}).get("name", "")
                track = pod[len(self.service) + 1 :].split("-", 1)[0]
                if (ep.get("conditions") or {}).get("ready") and track in counts:
                    counts[track] += 1
        return counts["stable"], counts["canary"]

    def now(self) -> tuple[int, int]:
        with self._lock:
            return self._count()

    def since(self, start: float) -> list[tuple[int, int]]:
        with self._lock:
            return [(s, c) for t, s, c in self.seen if t >= start]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_canary_at_90_percent_by_replica_ratio_keeps_every_ready_endpoint_and_aborts_stable_first(
    kubectl, kubeconfig, namespace, real_operator, model_store, trained
):
    rows, models = trained
    manifests = {}
    for version in ("v1", "v2"):
        uri, digest = model_store.put(f"{namespace}-ninety-{version}.joblib", models[version].data)
        manifests[version] = real_manifest("ninety", uri, digest, version, N, strategy=STRATEGY)
    apply(kubectl, namespace, manifests["v1"])
    wait_for(
        stable_version_is(kubectl, namespace, "ninety", "v1"),
        timeout=TIMEOUT,
        message=lambda: f"v1 Healthy; status {status_of(kubectl, namespace, 'ninety')}",
    )
    wait_until_proxied(kubectl, namespace, "ninety")
    watch = EndpointWatch(kubeconfig, namespace, "ninety")
    traffic = ServiceLoad(cluster_ip(kubectl, namespace, "ninety"), "ninety", rows, rate=20.0, threads=2).start()
    try:
        wait_for(lambda: watch.now() == (N, 0) and traffic.ok >= 20, timeout=60, message="traffic on v1's endpoints")
        start = time.monotonic()

        # setWeight 90: 9 of 10 ready endpoints are the canary's; never fewer than 10 meanwhile
        apply(kubectl, namespace, manifests["v2"])
        status = wait_for(
            weights_are(kubectl, namespace, "ninety", 10, 90),
            timeout=TIMEOUT,
            message=lambda: f"weights 10/90; status {status_of(kubectl, namespace, 'ninety')}",
        )
        assert (status["phase"], status["currentStep"]) == ("Paused", 1), status
        # a stable Pod just scaled away leaves the slices a moment after the status counts it gone
        wait_for(lambda: watch.now() == (1, 9), timeout=30, message=lambda: f"1 stable, 9 canary: {watch.now()}")
        wait_until_proxied(kubectl, namespace, "ninety")
        at_ninety = traffic.versions["v2"]
        wait_for(lambda: traffic.versions["v2"] >= at_ninety + 30, timeout=60, message="traffic at 90 %")

        # Abort: stable grows back to 10 first; canary Pods leave only as stable ones are Ready
        abort_start = time.monotonic()
        plugin(kubeconfig, "abort", "ninety", "-n", namespace)
        wait_for(
            lambda: watch.now() == (N, 0) and "at full weight" in status_of(kubectl, namespace, "ninety")["message"],
            timeout=TIMEOUT,
            message=lambda: f"v1 back at 10, canary gone: {watch.now()}; {status_of(kubectl, namespace, 'ninety')}",
        )
        aborted = watch.since(abort_start)
        assert all(s + c >= N for s, c in aborted), aborted
        assert all(c >= N - s for s, c in aborted)  # each canary endpoint left after a stable one was ready

        # Retry, then promote from 90 %: v2 takes over with no gap
        plugin(kubeconfig, "retry", "ninety", "-n", namespace)
        wait_for(
            weights_are(kubectl, namespace, "ninety", 10, 90),
            timeout=TIMEOUT,
            message=lambda: f"weights 10/90 again; status {status_of(kubectl, namespace, 'ninety')}",
        )
        plugin(kubeconfig, "promote", "ninety", "-n", namespace)
        wait_for(
            stable_version_is(kubectl, namespace, "ninety", "v2"),
            timeout=TIMEOUT,
            message=lambda: f"v2 promoted; status {status_of(kubectl, namespace, 'ninety')}",
        )
        wait_for(lambda: watch.now() == (N, 0), timeout=TIMEOUT, message=lambda: f"v2 on 10 endpoints: {watch.now()}")
        served = traffic.ok
        wait_for(lambda: traffic.ok >= served + 20, timeout=60, message="traffic after promotion")
    finally:
        traffic.stop()
        watch.stop()

    states = watch.since(start)
    assert min(s + c for s, c in states) >= N, [s + c for s, c in states]
    assert traffic.failures == [], f"{len(traffic.failures)} of {traffic.ok + len(traffic.failures)} failed: " + (
        "; ".join(traffic.failures[:5])
    )
    assert traffic.versions["v1"] > 0 and traffic.versions["v2"] > 0, traffic.versions
    assert phase_is(kubectl, namespace, "ninety", "Healthy")()
