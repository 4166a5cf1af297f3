"""SIGTERM: the listener closes, requests already in flight are all answered, then exit 0."""

from __future__ import annotations

import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import running_server, wait_until

pytestmark = pytest.mark.server

IN_FLIGHT = 12


def test_sigterm_loses_no_request_in_flight(models, tmp_path):
    # SlowModel takes 0.25 s per call and batches of 3 rows: 12 requests need about 1 s.
    with running_server(tmp_path, models.paths["slow"], "slow", ["--max-batch-size", "3"]) as s:
        body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}]}
        labels = 'model_name="slow",model_version="1",track="stable"'
        gauge = f"modelroll_inflight_requests{{{labels}}}"
        answered = f'modelroll_requests_total{{{labels},protocol="v2",code="200"}}'

        def all_received_some_unanswered() -> bool:
            m = s.metrics()
            return m[gauge] >= 1 and m[gauge] + m[answered] == IN_FLIGHT

        # open every connection first: SIGTERM closes the listener, and a connection still
        # waiting in its backlog is not yet a request the server has taken on
        sessions = [requests.Session() for _ in range(IN_FLIGHT)]
        for http in sessions:
            assert http.get(f"{s.url}/v2/health/live", timeout=10).status_code == 200

        def call(i: int) -> int:
            r = sessions[i].post(f"{s.url}/v2/models/slow/infer", json=body, timeout=30)
            return r.status_code

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(call, i) for i in range(IN_FLIGHT)]
            wait_until(all_received_some_unanswered, interval=0.01, what="requests in flight")
            s.proc.send_signal(signal.SIGTERM)
            codes = [f.result(timeout=30) for f in futures]
        assert codes == [200] * IN_FLIGHT
        for http in sessions:
            http.close()
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", s.port), timeout=2):
            pass
