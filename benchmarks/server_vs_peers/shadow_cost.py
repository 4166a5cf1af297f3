"""Part ``shadow``: what paired shadow comparison costs the stable server's own clients.

One canary and one stable modelroll-server on the LogisticRegression; the stable's shadow
file is switched between off, 10 % and 100 % while it runs (the way the operator switches it),
and each setting gets the same wrk load. The canary is pinned to one core and the stable to
the other, so the canary's own work (in a cluster, on other Pods) does not show up as the
stable's latency; what remains is the stable's cost of copying, sending and comparing.
Imported by bench.py (which it imports back for the servers and the load).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

from bench import LR, MODELROLL_ON, Bench, Row, quiet, serving, wait_port, wrk

SETTINGS = (0, 10, 100)  # percent of requests copied; 0 = the file is empty (no shadowing)
CONNECTIONS = (16, 64)


def _pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def _shadow_counts(port: int, version: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'modelroll_shadow_(?:requests_total|rows_total)\{.*canary_version="([^"]+)".*'
                     r'(?:outcome|result)="(\w+)"\} (\S+)', line)  # fmt: skip
        if m and m[1] == version:
            out[m[2]] = float(m[3])
    return out


def measure_shadow(b: Bench, model: Path) -> list[Row]:
    config = b.work / "shadow.json"
    config.write_text("")
    rows: list[Row] = []
    print(f"bench: shadow, modelroll on {LR}: stable copying 0 / 10 / 100 % to a canary", flush=True)
    with serving(b, MODELROLL_ON, model) as canary, \
            serving(b, MODELROLL_ON, model, env={"MODELROLL_SERVER_SHADOW_CONFIG": str(config)}) as stable:  # fmt: skip
        wait_port(canary.grpc_port)
        _pin(canary.proc.pid, 1)
        _pin(stable.proc.pid, 0)
        for percent in SETTINGS:
            version = f"shadow-{percent}"
            text = json.dumps({"target": f"127.0.0.1:{canary.grpc_port}", "percent": percent, "version": version})
            config.write_text(text if percent else "")
            deadline = time.monotonic() + 10
            while percent and not _shadow_counts(stable.port, version):  # the stable has read the file
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the stable server did not start shadowing {percent} %")
                time.sleep(0.1)
            wrk(stable.port, 16, min(2.0, b.seconds))  # warm-up, not recorded
            for c in CONNECTIONS:
                r = quiet(lambda c=c: wrk(stable.port, c, b.seconds), stable.proc.pid)
                counts = _shadow_counts(stable.port, version) if percent else {}
                rows.append({"percent": percent, "conns": c, **r, **counts})
                print(f"  {percent:>3} % {c:>3} conns: {r['rps']:>9.1f} req/s  p50 {r['p50']:.2f} ms  "
                      f"p99 {r['p99']:.2f} ms  errors {r['errors']}  copies {counts}", flush=True)  # fmt: skip
    return rows


def render_shadow(rows: list[Row]) -> list[str]:
    """The report's lines: each setting beside no shadowing, at each connection count."""
    if not rows:
        return []
    lines = ["", f"Shadowing ({LR}; canary and stable pinned to one core each; copies: compared / dropped / "
             "failed, and rows agreed, counted at the end of each cell):", "",  # fmt: skip
             "| copied | conns | req/s | p50 ms | p99 ms | p50 vs off | p99 vs off | errors | copies | agree |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]  # fmt: skip
    off = {r["conns"]: r for r in rows if r["percent"] == 0}
    for r in rows:
        base = off.get(r["conns"])
        rel50 = f"{r['p50'] / base['p50']:.2f}x" if base and r["percent"] else ""
        rel99 = f"{r['p99'] / base['p99']:.2f}x" if base and r["percent"] else ""
        copies = (f"{r.get('compared', 0):.0f} / {r.get('dropped', 0):.0f} / {r.get('failed', 0):.0f}"
                  if r["percent"] else "")  # fmt: skip
        agree = f"{r.get('agree', 0):.0f}" if r["percent"] else ""
        lines.append(f"| {r['percent']} % | {r['conns']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                     f"{rel50} | {rel99} | {r['errors']} | {copies} | {agree} |")  # fmt: skip
    return lines
