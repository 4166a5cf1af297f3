"""The metrics move by exactly what the test sent: requests, latency, batches, predictions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import running_server

pytestmark = pytest.mark.server

LABELS = 'model_name="rf",model_version="v2",track="canary"'


def test_metrics_move_by_exactly_what_was_sent(models, tmp_path):
    with running_server(tmp_path, models.paths["rf"], "rf", ["--version", "v2", "--track", "canary"]) as s:
        before = s.metrics()
        assert before[f"modelroll_inflight_requests{{{LABELS}}}"] == 0
        assert before[f"modelroll_model_load_seconds{{{LABELS}}}"] > 0
        rows = models.X[:30]
        sent = [rows[:1], rows[1:11], rows[11:30]]
        for chunk in sent:
            assert s.infer(chunk).status_code == 200
        assert s.post("/v1/models/rf:predict", json={"instances": rows[:5].tolist()}).status_code == 200
        assert s.post("/v2/models/rf/infer", json={"inputs": []}).status_code == 400
        after = s.metrics()

        def delta(key: str) -> float:
            return after.get(key, 0.0) - before.get(key, 0.0)

        req = 'modelroll_requests_total{%s,protocol="%s",code="%s"}'
        assert delta(req % (LABELS, "v2", 200)) == 3
        assert delta(req % (LABELS, "v1", 200)) == 1
        assert delta(req % (LABELS, "v2", 400)) == 1
        lat = 'modelroll_request_duration_seconds_count{%s,protocol="%s"}'
        assert delta(lat % (LABELS, "v2")) == 4 and delta(lat % (LABELS, "v1")) == 1
        assert delta(f'modelroll_request_duration_seconds_bucket{{{LABELS},protocol="v2",le="+Inf"}}') == 4
        assert delta(f'modelroll_request_duration_seconds_sum{{{LABELS},protocol="v2"}}') > 0
        # requests were sent one at a time, so each was its own batch
        assert delta(f"modelroll_batch_size_count{{{LABELS}}}") == 4
        assert delta(f"modelroll_batch_size_sum{{{LABELS}}}") == 35
        assert delta(f'modelroll_batch_size_bucket{{{LABELS},le="1"}}') == 1
        assert delta(f'modelroll_batch_size_bucket{{{LABELS},le="16"}}') == 3  # 1, 5, 10 rows
        # the prediction distribution, per class, equals the model's own predictions
        predicted = np.concatenate([models.rf.predict(rows), models.rf.predict(rows[:5])])
        for cls in (0, 1, 2):
            key = f'modelroll_predictions_total{{{LABELS},class="{cls}"}}'
            assert delta(key) == int((predicted == cls).sum()), key
        top = np.concatenate([models.rf.predict_proba(rows), models.rf.predict_proba(rows[:5])]).max(axis=1)
        assert delta(f"modelroll_prediction_confidence_count{{{LABELS}}}") == 35
        assert delta(f"modelroll_prediction_confidence_sum{{{LABELS}}}") == pytest.approx(top.sum())
        assert delta(f'modelroll_prediction_confidence_bucket{{{LABELS},le="0.5"}}') == int((top <= 0.5).sum())
        assert after[f"modelroll_inflight_requests{{{LABELS}}}"] == 0


def test_every_series_carries_the_three_labels(lr_server):
    text = lr_server.get("/metrics").text
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert series
    for line in series:
        assert line.startswith("modelroll_")
        assert 'model_name="lr",model_version="v7",track="stable"' in line, line
    for name in ("modelroll_requests_total", "modelroll_request_duration_seconds",
                 "modelroll_batch_size", "modelroll_inflight_requests",
                 "modelroll_model_load_seconds", "modelroll_predictions_total",
                 "modelroll_prediction_confidence"):  # fmt: skip
        assert f"# TYPE {name} " in text


def test_class_counts_follow_predict_not_the_probabilities(models, tmp_path):
    with running_server(tmp_path, models.paths["contrarian"], "c") as s:
        assert s.infer(models.X[:4]).json()["outputs"][0]["data"] == [1, 1, 1, 1]
        m = s.metrics()
        labels = 'model_name="c",model_version="1",track="stable"'
        assert m[f'modelroll_predictions_total{{{labels},class="1"}}'] == 4
        assert m[f'modelroll_predictions_total{{{labels},class="0"}}'] == 0
        assert m[f"modelroll_prediction_confidence_sum{{{labels}}}"] == pytest.approx(3.2)
