"""Steady prediction traffic for the demo, so a canary's analysis has requests to judge (I/O).

Calls one Service of the demo through its ClusterIP, each request on a fresh connection (so
kube-proxy spreads them over the ready Pods of every track), about ``--rate`` a second, and
stops by itself after ``--seconds``: it never outlives the demo by much.

    python scripts/demo_traffic.py ADDRESS NAME --features 8 [--rate 40] [--seconds 1800]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="the Service's ClusterIP (port 80)")
    parser.add_argument("name", help="the ModelDeployment's name")
    parser.add_argument("--features", type=int, required=True)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=1800.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    url = f"http://{args.address}/v2/models/{args.name}/infer"
    deadline = time.monotonic() + args.seconds
    period = 1.0 / args.rate
    sent = failed = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        row = rng.normal(size=args.features).tolist()
        body = {"inputs": [{"name": "x", "shape": [1, args.features], "datatype": "FP64", "data": row}]}
        try:
            ok = requests.post(url, json=body, headers={"Connection": "close"}, timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        sent += 1
        failed += not ok
        if sent % 1000 == 0:
            print(f"demo-traffic: {sent} sent, {failed} failed", flush=True)
        time.sleep(max(period - (time.monotonic() - started), 0.0))  # pacing
    return 0


if __name__ == "__main__":
    sys.exit(main())
