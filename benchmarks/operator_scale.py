"""Operator scale benchmark against the local control plane (or $KUBECONFIG).

Measures, in one run:
  1. apply -> all children created: median and p90 over N single applies (target: median < 300 ms)
  2. 100 ModelDeployments applied at once -> all Healthy (target: < 30 s)
  3. 1,000 ModelDeployments applied at once -> all Healthy (target: < 5 min)
  4. the operator's resident memory with those 1,000 objects (target: < 250 MiB)
  5. API writes per reconcile of an unchanged object over a full resync (target: 0)

Usage: .venv/bin/python benchmarks/operator_scale.py [--small N] [--large N] [--latency-samples N]
Run it with `make bench-operator`. It starts its own operator process and cleans up its namespaces.
Its Pods are kwok fakes on kwok's tainted nodes (1,000 real model Pods would not fit this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lightkube import AsyncClient, codecs
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Service

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))  # launcher imports its sibling node.py
import launcher  # noqa: E402

from tests.e2e.operator_helpers import scrape, total  # noqa: E402
from tests.helpers import free_port, on_kwok  # noqa: E402

WRITES = "modelroll_operator_api_writes_total"
MD = create_namespaced_resource("modelroll.io", "v1alpha1", "ModelDeployment", "modeldeployments")
DIGEST = "sha256:" + "7" * 64


def model_deployment(name: str, namespace: str) -> object:
    return codecs.from_dict(
        {
            "apiVersion": "modelroll.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "model": {"uri": f"https://models.example/{name}.joblib", "digest": DIGEST, "version": "v1"},
                "replicas": 1,
                "server": on_kwok(),  # a fake model: only kwok's nodes make its Pods Ready
            },
        }
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def ensure_capacity(client: AsyncClient, pods: int) -> None:
    """Extra kwok nodes so the large run's Pods fit (each fake node takes 110 Pods by default),
    labelled and tainted like the launcher's kwok nodes so the same placement reaches them."""
    for i in range(pods // 500 + 1):
        node = launcher.kwok_node(f"bench-node-{i}", {"cpu": "1000", "memory": "4Ti", "pods": "500"})
        await client.apply(codecs.from_dict(node), field_manager="bench", force=True)
    for i in range(pods // 500 + 1):
        # kwok marks a node Ready after it is created; wait for that before scheduling onto it
        for _ in range(200):
            node = await client.get(Node, f"bench-node-{i}")
            if any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])):
                break
            await asyncio.sleep(0.1)


async def namespace(client: AsyncClient, name: str) -> None:
    try:
        await client.create(Namespace(metadata={"name": name}))
    except ApiError as error:
        if error.status.code != 409:
            raise


async def children_latency(client: AsyncClient, ns: str, samples: int) -> list[float]:
    out = []
    for i in range(samples):
        name = f"lat-{i}"
        start = time.perf_counter()
        await client.create(model_deployment(name, ns))
        while True:
            try:
                await client.get(Deployment, f"{name}-stable", namespace=ns)
                await client.get(Service, name, namespace=ns)
                await client.get(Service, f"{name}-stable", namespace=ns)
                break
            except ApiError:
                await asyncio.sleep(0.005)
        out.append((time.perf_counter() - start) * 1000)
    return out


async def all_healthy(client: AsyncClient, ns: str, count: int, timeout: float) -> float:
    """Create ``count`` objects at once, then wait until every object in ``ns`` is Healthy."""
    start = time.perf_counter()
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            await client.create(model_deployment(f"md-{i}", ns))

    await asyncio.gather(*(create(i) for i in range(count)))
    while time.perf_counter() - start < timeout:
        phases = [(md.status or {}).get("phase") async for md in client.list(MD, namespace=ns)]
        if phases.count("Healthy") >= count and all(p == "Healthy" for p in phases):
            return time.perf_counter() - start
        await asyncio.sleep(0.5)
    return float("inf")


RUN = f"{int(time.time()) % 100000}"
NAMESPACES = [f"bench-{part}-{RUN}" for part in ("latency", "small", "large")]


async def run(args: argparse.Namespace, port: int, pid: int) -> list[tuple[str, str, str, str]]:
    client = AsyncClient(config=KubeConfig.from_env())
    await ensure_capacity(client, args.large)
    rows = []
    await namespace(client, NAMESPACES[0])
    lat = await children_latency(client, NAMESPACES[0], args.latency_samples)
    lat.sort()
    rows.append(
        (
            "apply -> children created, median",
            f"{statistics.median(lat):.0f} ms",
            "< 300 ms",
            "ok" if statistics.median(lat) < 300 else "MISSED",
        )
    )
    rows.append(("apply -> children created, p90", f"{lat[int(len(lat) * 0.9) - 1]:.0f} ms", "", ""))
    for count, limit, ns in ((args.small, 30.0, NAMESPACES[1]), (args.large, 300.0, NAMESPACES[2])):
        if not count:
            continue
        await namespace(client, ns)
        took = await all_healthy(client, ns, count, limit * 2)
        rows.append(
            (
                f"{count} applied at once -> all Healthy",
                f"{took:.1f} s",
                f"< {limit:.0f} s",
                "ok" if took < limit else "MISSED",
            )
        )
    rss = rss_mib(pid)
    rows.append(
        (
            f"operator RSS with {args.small + args.large + args.latency_samples} objects",
            f"{rss:.0f} MiB",
            "< 250 MiB",
            "ok" if rss < 250 else "MISSED",
        )
    )
    # One full resync of every (unchanged, Healthy) object: count writes and reconciles.
    for ns in NAMESPACES:
        await all_healthy(client, ns, 0, 120)
    before = scrape(port)
    key = 'modelroll_operator_reconciles_total{outcome="unchanged"}'
    objects = args.small + args.large + args.latency_samples
    deadline = time.time() + 120
    while scrape(port).get(key, 0) < before.get(key, 0) + objects and time.time() < deadline:
        await asyncio.sleep(1)
    after = scrape(port)
    reconciles = after.get(key, 0) - before.get(key, 0)
    w = total(after, WRITES) - total(before, WRITES)
    rows.append(
        (
            "API writes per unchanged reconcile",
            f"{w / max(reconciles, 1):.3f} ({w:.0f} in {reconciles:.0f})",
            "0",
            "ok" if w == 0 else "MISSED",
        )
    )
    for ns in NAMESPACES:
        with contextlib.suppress(ApiError):
            await client.delete(Namespace, ns)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--resync-seconds", type=float, default=30)
    args = parser.parse_args()
    if not os.environ.get("KUBECONFIG"):
        info = launcher.up()
        os.environ["KUBECONFIG"] = str(info.kubeconfig)
    subprocess.run(["kubectl", "apply", "--server-side", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run(
        ["kubectl", "wait", "--for=condition=Established", "crd/modeldeployments.modelroll.io"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = {
        **os.environ,
        "MODELROLL_METRICS_PORT": str(port),
        "MODELROLL_RESYNC_SECONDS": str(args.resync_seconds),
        "MODELROLL_NAMESPACES": ",".join(NAMESPACES),
    }
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    log = open(ROOT / "benchmarks" / "results" / "operator_scale.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "modelroll-operator")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rows = asyncio.run(run(args, port, proc.pid))
    finally:
        proc.terminate()
        proc.wait(15)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'result':>22}  {'target':>10}  verdict")
    for name, value, target, verdict in rows:
        print(f"{name.ljust(width)}  {value:>22}  {target:>10}  {verdict}")
    return 0 if all(r[3] in ("ok", "") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
