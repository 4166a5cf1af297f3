"""Concurrent clients are batched, and every response carries exactly its own rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import running_server

pytestmark = pytest.mark.server

CLIENTS = 64


def _hammer(srv, models, rounds: int) -> list[tuple[int, list[int], list[int]]]:
    barrier = threading.Barrier(CLIENTS)
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 5, size=CLIENTS)

    def client(i: int) -> list[tuple[int, list[int], list[int]]]:
        out = []
        with requests.Session() as http:
            barrier.wait(timeout=30)
            for k in range(rounds):
                start = (i * 7 + k * 3) % (len(models.X) - 5)
                rows = models.X[start : start + sizes[i]]
                body = {"id": f"{i}-{k}", "inputs": [{"name": "x", "shape": list(rows.shape),
                        "datatype": "FP64", "data": rows.ravel().tolist()}]}  # fmt: skip
                r = http.post(f"{srv.url}/v2/models/{srv.name}/infer", json=body, timeout=30)
                assert r.status_code == 200, r.text
                assert r.json()["id"] == f"{i}-{k}"
                out.append((start, rows.shape[0], r.json()["outputs"][0]["data"]))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [x for chunk in pool.map(client, range(CLIENTS)) for x in chunk]
    return results


@pytest.mark.parametrize("wait_ms", ["0", "20"])
def test_64_concurrent_clients_each_get_their_own_rows(models, tmp_path, wait_ms):
    with running_server(tmp_path, models.paths["rf"], "rf",
                        ["--max-batch-size", "32", "--max-batch-wait-ms", wait_ms]) as srv:  # fmt: skip
        results = _hammer(srv, models, rounds=4)
        assert len(results) == CLIENTS * 4
        for start, n, got in results:
            assert got == models.rf.predict(models.X[start : start + n]).tolist()
        m = srv.metrics()
        labels = 'model_name="rf",model_version="1",track="stable"'
        batches = m[f"modelroll_batch_size_count{{{labels}}}"]
        rows = m[f"modelroll_batch_size_sum{{{labels}}}"]
        assert rows == sum(n for _, n, _ in results)
        if wait_ms != "0":
            # with a wait the batch deterministically gathers requests; without one it only
            # batches what arrives while the model runs, which depends on the machine
            assert batches < len(results), "concurrent requests were never batched together"
        # no batch is larger than the limit allows (whole requests of at most 4 rows)
        assert m[f'modelroll_batch_size_bucket{{{labels},le="32"}}'] == batches
