"""The helpers of the benchmark's ``quality`` part (benchmarks/server_vs_peers/quality_cost.py):
reading the server's /metrics, the size of its shared segments, and how full its windows are."""

import mmap
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks/server_vs_peers"))
from quality_cost import baselines, least_fill, metric_samples, render_quality, shared_kib  # noqa: E402

EXPOSITION = """\
# HELP modelroll_predictions_total Predicted rows by predicted class.
# TYPE modelroll_predictions_total counter
modelroll_predictions_total{model_name="model",model_version="1",track="stable",class="0"} 12
modelroll_predictions_total{model_name="model",model_version="1",track="stable",class="1"} 2514580
# HELP modelroll_feedback_total Labelled rows (POST .../feedback) by result.
# TYPE modelroll_feedback_total counter
modelroll_feedback_total{model_name="model",model_version="1",track="stable",result="correct"} 57
modelroll_feedback_total{model_name="model",model_version="1",track="stable",result="incorrect"} 56
modelroll_feedback_total{model_name="model",model_version="1",track="stable",result="unmatched"} 3
# HELP modelroll_inflight_requests Requests in flight.
# TYPE modelroll_inflight_requests gauge
modelroll_inflight_requests{model_name="model",model_version="1",track="stable"} 1
"""


def test_metric_samples_by_last_label():
    assert metric_samples(EXPOSITION, "modelroll_feedback_total") == {"correct": 57, "incorrect": 56, "unmatched": 3}
    assert sum(metric_samples(EXPOSITION, "modelroll_predictions_total").values()) == 2514592
    assert metric_samples(EXPOSITION, "modelroll_inflight_requests") == {"stable": 1}
    assert metric_samples(EXPOSITION, "modelroll_shadow_requests_total") == {}


def test_shared_kib_counts_anonymous_shared_mappings_only():
    smaps = Path("/proc/self/smaps")
    before = shared_kib(smaps.read_text())
    shared = mmap.mmap(-1, 1 << 20)  # as the server's window: anonymous, shared with forked children
    private = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)
    try:
        assert shared_kib(smaps.read_text()) == before + 1024
    finally:
        shared.close()
        private.close()
    assert shared_kib(smaps.read_text()) == before


@pytest.mark.parametrize(
    ("rows", "cpu0", "cpu1", "window", "expected"),
    [
        (400.0, {1: 0.0, 2: 0.0}, {1: 1.0, 2: 1.0}, 100, 2.0),  # even: 200 rows each
        (400.0, {1: 5.0, 2: 5.0}, {1: 8.0, 2: 6.0}, 100, 1.0),  # the second did a quarter: 100 rows
        (400.0, {1: 0.0}, {1: 1.0, 2: 1.0}, 100, 2.0),  # a worker that started later counts from 0
        (400.0, {1: 0.0, 2: 0.0}, {1: 0.0, 2: 0.0}, 100, 0.0),  # no work yet
        (400.0, {1: 0.0}, {1: 1.0}, 0, 0.0),  # no window
    ],
)
def test_least_fill(rows, cpu0, cpu1, window, expected):
    assert least_fill(rows, cpu0, cpu1, window) == pytest.approx(expected)


def cell(setting, rps, cpu_us, conns=64):
    return {"model": "LR", "setting": setting, "conns": conns, "rps": rps, "p50": 1.0, "p99": 4.0,
            "cpu_us": cpu_us, "errors": 0, "other_cpu": 0.0}  # fmt: skip


def test_cost_is_against_the_mean_of_both_neither_servers():
    cost = [cell("neither", 1000.0, 40.0), cell("feedback", 900.0, 45.0), cell("neither", 1200.0, 44.0),
            cell("neither", 50.0, 1.0, conns=16)]  # fmt: skip
    assert baselines(cost)[("LR", 64)] == {"rps": 1100.0, "p50": 1.0, "p99": 4.0, "cpu_us": 42.0}
    table = "\n".join(render_quality({"cost": cost}))
    assert "| LR | feedback | 64 | 900 | 1.00 | 4.00 | 0.82x | 1.00x | 1.00x | 45.0 (+3.0) | 0 | 0.00 |" in table
    assert "| LR | neither | 64 | 1000 | 1.00 | 4.00 | 0.91x |" in table  # the machine's drift, shown
