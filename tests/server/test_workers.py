"""Several workers: a crashed worker is replaced, readiness waits for it, counters never drop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests
from conftest import running_server, wait_until

pytestmark = pytest.mark.server

KEY = 'modelroll_requests_total{model_name="lr",model_version="1",track="stable",protocol="v2",code="200"}'


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def test_a_crashed_worker_is_replaced(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as s:
        body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.1] * 20}]}
        for _ in range(10):
            assert requests.post(f"{s.url}/v2/models/lr/infer", json=body, timeout=10).status_code == 200
        before = s.metrics()[KEY]
        assert before == 10
        workers = _children(s.proc.pid)
        assert len(workers) == 2
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_children(s.proc.pid) - {victim}) == 2, what="a replacement worker")

        def ready() -> bool:
            try:
                return requests.get(f"{s.url}/v2/health/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, what="readiness after the restart")
        assert s.metrics()[KEY] == before  # the replacement keeps its predecessor's counts
        assert s.proc.poll() is None


def test_a_worker_that_keeps_dying_at_once_is_reforked_with_backoff(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as s:
        workers = _children(s.proc.pid)
        victim = min(workers)
        for _ in range(3):  # the same slot's worker dies, each time within its first seconds
            os.kill(victim, signal.SIGKILL)
            survivors = workers - {victim}

            def replaced(survivors: set[int] = survivors, victim: int = victim) -> bool:
                now = _children(s.proc.pid)
                return len(now - survivors) == 1 and victim not in now

            wait_until(replaced, timeout=30, what="a replacement worker")
            workers = _children(s.proc.pid)
            victim = (workers - survivors).pop()
        lines = [line for line in s.output().splitlines() if "starting a new one in" in line]
        waits = [float(line.rsplit(" in ", 1)[1].rstrip("s")) for line in lines]
        assert waits == [1.0, 2.0, 4.0], waits
        assert s.proc.poll() is None


def test_sigterm_while_a_worker_is_replaced_leaves_no_process_behind(models, tmp_path):
    """The supervisor stops whether the stop comes during the backoff or at the fork itself."""
    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as s:
        workers = _children(s.proc.pid)
        os.kill(min(workers), signal.SIGKILL)  # replaced after a backoff: the stop lands in it
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=15) == 0
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=10,
                   what="every worker to exit")  # fmt: skip
