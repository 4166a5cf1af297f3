"""Live accuracy from late labels: POST .../feedback matches ground truth to earlier answers by
their id, across workers, within a bounded window, and counts exactly what it matched."""

from __future__ import annotations

import re
import time

import grpc
import joblib
import numpy as np
import pytest
import requests
from conftest import Server, running_server
from modelroll_server.proto import inference_pb2 as pb
from modelroll_server.proto import inference_pb2_grpc as pb_grpc

from tests.helpers import free_port

pytestmark = pytest.mark.server


def labels_of(name: str, version: str = "1") -> str:
    return f'model_name="{name}",model_version="{version}",track="stable"'


def feedback_counts(s: Server) -> dict[str, float]:
    """modelroll_feedback_total by result (the server's one model, whatever its version)."""
    m = s.metrics()
    found = (re.fullmatch(r'modelroll_feedback_total\{.*,result="(\w+)"\}', k) for k in m)
    return {f[1]: m[f[0]] for f in found if f}


def requests_counted(s: Server) -> float:
    """Every inference request the server counted, whatever its protocol and code."""
    return sum(v for k, v in s.metrics().items() if k.startswith("modelroll_requests_total{"))


def infer(s: Server, X: np.ndarray, rid: str | None = None, fresh: bool = False) -> dict:
    body: dict = {"inputs": [{"name": "x", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}]}
    if rid is not None:
        body["id"] = rid
    post = requests.post if fresh else s.http.post  # fresh: a new connection, whichever worker takes it
    r = post(f"{s.url}/v2/models/{s.name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def feedback(s: Server, body: object, fresh: bool = False) -> requests.Response:
    post = requests.post if fresh else s.http.post
    return post(f"{s.url}/v2/models/{s.name}/feedback", json=body, timeout=30)


def test_labels_count_exactly_the_rows_predicted_right_and_wrong(models, tmp_path):
    lr, X = models.lr, models.X
    y = (lr.predict(X) + np.arange(len(X)) % 2) % 3  # "truth": half the rows disagree with the model
    with running_server(tmp_path, models.paths["lr"], "lr") as s:
        sent = [(0, 1, "client-id-1"), (1, 5, None), (5, 17, None), (17, 40, "client-id-2")]
        ids = []
        for a, b, rid in sent:
            answer = infer(s, X[a:b], rid)
            assert answer["id"] == rid if rid else answer["id"]
            ids.append(answer["id"])
        v1 = s.post("/v1/models/lr:predict", json={"instances": X[40:43].tolist()})
        assert v1.status_code == 200 and "id" not in v1.json()
        ids.append(v1.headers["x-request-id"])
        sent.append((40, 43, None))
        before_requests = requests_counted(s)

        one = feedback(s, {"id": ids[0], "labels": y[0:1].tolist()})
        assert one.status_code == 200 and one.json() == {"matched": 1, "unmatched": 0}
        many = feedback(
            s, [{"id": rid, "labels": y[a:b].tolist()} for rid, (a, b, _) in zip(ids[1:], sent[1:], strict=True)]
        )
        assert many.status_code == 200 and many.json() == {"matched": 4, "unmatched": 0}

        right = int((lr.predict(X[:43]) == y[:43]).sum())  # independently: scikit-learn's own predictions
        assert 0 < right < 43
        assert feedback_counts(s) == {"correct": right, "incorrect": 43 - right, "unmatched": 0}
        # feedback is no inference: modelroll_requests_total did not move
        assert requests_counted(s) == before_requests
        # a second label for the same request is unmatched, not counted twice
        again = feedback(s, {"id": ids[0], "labels": y[0:1].tolist()})
        assert again.status_code == 404 and "already labelled" in again.json()["error"]
        assert feedback_counts(s) == {"correct": right, "incorrect": 43 - right, "unmatched": 1}


def test_string_classes_and_a_label_the_model_does_not_know(models, tmp_path):
    from sklearn.linear_model import LogisticRegression

    names = np.array(["ant", "bee", "cat"])
    y = names[models.lr.predict(models.X)]
    path = tmp_path / "named.joblib"
    joblib.dump(LogisticRegression(max_iter=300).fit(models.X, y), path)
    with running_server(tmp_path, path, "named") as s:
        rid = infer(s, models.X[:3])["id"]
        assert feedback(s, {"id": rid, "labels": [0, 1, 2]}).status_code == 400  # numbers for string classes
        r = feedback(s, {"id": rid, "labels": [y[0], "dog", y[2]]})
        assert r.status_code == 200
        assert feedback_counts(s) == {"correct": 2, "incorrect": 1, "unmatched": 0}


def test_predictions_on_one_worker_labelled_on_another(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as s:
        ids: list[str] = []
        workers: set[str] = set()
        deadline = time.monotonic() + 30
        # fresh connections until both workers answered several (the kernel picks the worker)
        while (len(workers) < 2 or len(ids) < 100) and time.monotonic() < deadline:
            rid = infer(s, models.X[len(ids) % 50 : len(ids) % 50 + 1], fresh=True)["id"]
            ids.append(rid)
            workers.add(rid.split("-")[1])
        assert workers == {"0", "1"}, "both workers answered"
        assert len(set(ids)) == len(ids), "generated ids are unique across workers"
        by_worker = {w: sum(1 for i in ids if i.split("-")[1] == w) for w in workers}
        # every label over ONE keep-alive connection, so to one worker: the other worker's
        # predictions can only match through the shared window
        y = models.lr.predict(models.X[:50])
        r = feedback(s, [{"id": rid, "labels": [int(y[n % 50])]} for n, rid in enumerate(ids)])
        assert r.status_code == 200 and r.json() == {"matched": len(ids), "unmatched": 0}, by_worker
        assert feedback_counts(s) == {"correct": len(ids), "incorrect": 0, "unmatched": 0}


def test_unknown_id_is_a_404_counted_as_unmatched_and_never_a_5xx(lr_server, models):
    s = lr_server
    before, counted = feedback_counts(s), requests_counted(s)
    r = feedback(s, {"id": "never-sent", "labels": [1, 2]})
    assert r.status_code == 404 and "'never-sent'" in r.json()["error"]
    r = feedback(s, [{"id": "never-1", "labels": [1]}, {"id": "never-2", "labels": [0]}])
    assert r.status_code == 404 and "'never-1'" in r.json()["error"]
    after = feedback_counts(s)
    assert after["unmatched"] - before["unmatched"] == 4  # rows
    assert after["correct"] == before["correct"] and after["incorrect"] == before["incorrect"]
    assert requests_counted(s) == counted  # neither the 404s nor anything else entered the error rate
    assert not any('code="5' in k and v for k, v in s.metrics().items())
    # a partly known batch: 200, naming what did not match
    rid = infer(s, models.X[:1])["id"]
    label = int(models.lr.predict(models.X[:1])[0])
    r = feedback(s, [{"id": rid, "labels": [label]}, {"id": "never-3", "labels": [0]}])
    assert r.status_code == 200 and r.json() == {"matched": 1, "unmatched": 1, "unmatched_ids": ["never-3"]}


def test_the_window_keeps_only_the_most_recent_rows(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--feedback-window-rows", "10"]) as s:
        X = models.X
        y = models.lr.predict(X)
        ids = [infer(s, X[i : i + 1])["id"] for i in range(12)]  # 12 rows into a window of 10
        for i in (0, 1):
            assert feedback(s, {"id": ids[i], "labels": [int(y[i])]}).status_code == 404, i
        r = feedback(s, [{"id": ids[i], "labels": [int(y[i])]} for i in range(2, 12)])
        assert r.status_code == 200 and r.json() == {"matched": 10, "unmatched": 0}
        # requests of several rows: in while their first row is at most 10 rows back
        big = infer(s, X[20:24])["id"]
        infer(s, X[24:30])  # 6 more rows: big's first row is 10 back
        assert feedback(s, {"id": big, "labels": y[20:24].tolist()}).status_code == 200
        gone = infer(s, X[30:34])["id"]
        infer(s, X[34:41])  # 7 more rows: gone's first row is 11 back, overwritten
        assert feedback(s, {"id": gone, "labels": y[30:34].tolist()}).status_code == 404
        assert feedback_counts(s) == {"correct": 10 + 4, "incorrect": 0, "unmatched": 2 + 4}


def test_a_request_longer_than_the_window_and_one_too_old(models, tmp_path):
    args = ["--feedback-window-rows", "10", "--feedback-max-age-seconds", "0.5"]
    with running_server(tmp_path, models.paths["lr"], "lr", args) as s:
        y = models.lr.predict(models.X)
        too_long = infer(s, models.X[:11])["id"]
        assert feedback(s, {"id": too_long, "labels": y[:11].tolist()}).status_code == 404
        old = infer(s, models.X[:1])["id"]
        fresh = infer(s, models.X[1:2])["id"]
        assert feedback(s, {"id": fresh, "labels": [int(y[1])]}).status_code == 200
        time.sleep(0.6)  # the behaviour under test: the prediction ages past --feedback-max-age-seconds
        r = feedback(s, {"id": old, "labels": [int(y[0])]})
        assert r.status_code == 404 and "expired" in r.json()["error"]


def test_regressor_absolute_errors(tmp_path):
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    X, y = make_regression(n_samples=60, n_features=5, noise=10.0, random_state=1)
    model = Ridge().fit(X, y)
    path = tmp_path / "ridge.joblib"
    joblib.dump(model, path)
    with running_server(tmp_path, path, "ridge", ["--workers", "2"]) as s:
        ids = [infer(s, X[a:b], fresh=True)["id"] for a, b in ((0, 1), (1, 20), (20, 60))]
        r = feedback(
            s,
            [
                {"id": rid, "labels": y[a:b].tolist()}
                for rid, (a, b) in zip(ids, ((0, 1), (1, 20), (20, 60)), strict=True)
            ],
        )
        assert r.status_code == 200 and r.json() == {"matched": 3, "unmatched": 0}
        errors = np.abs(model.predict(X) - y)
        m = s.metrics()
        base = labels_of("ridge")
        assert m[f"modelroll_feedback_abs_error_count{{{base}}}"] == 60
        assert m[f"modelroll_feedback_abs_error_sum{{{base}}}"] == pytest.approx(errors.sum(), rel=1e-9)
        assert m[f'modelroll_feedback_abs_error_bucket{{{base},le="10.0"}}'] == int((errors <= 10).sum())
        assert feedback_counts(s) == {"matched": 60, "unmatched": 0}
        for bad in ([True], ["1.5"], [None], [[1.0]]):
            assert feedback(s, {"id": ids[0], "labels": bad}).status_code == 400, bad


def test_malformed_and_hostile_bodies_are_4xx(models, tmp_path):
    limit = 1024 * 1024
    with running_server(tmp_path, models.paths["lr"], "lr", ["--max-body-bytes", str(limit)]) as s:
        y = models.lr.predict(models.X)
        rid = infer(s, models.X[:2])["id"]
        url = f"{s.url}/v2/models/lr/feedback"
        cases: list[tuple[bytes, int]] = [
            (b"", 400), (b"{", 400), (b"null", 400), (b"5", 400), (b"[]", 400), (b"[5]", 400),
            (b'{"labels": [1]}', 400), (b'{"id": 5, "labels": [1]}', 400), (b'{"id": "", "labels": [1]}', 400),
            (b'{"id": "x"}', 400), (b'{"id": "x", "labels": []}', 400), (b'{"id": "x", "labels": 1}', 400),
            (b'{"id": "x", "labels": [{"a": 1}]}', 400), (b'{"id": "x", "labels": [[1, 2]]}', 400),
            (b'{"id": "x", "labels": ["cat"]}', 400), (b'{"id": "x", "labels": [NaN]}', 400),
            (b'{"id": "x", "labels": [1e999]}', 400), (b'{"id": "x", "labels": [null]}', 400),
            (b"[" * 100_000 + b"]" * 100_000, 400),  # nested too deeply
            (b'{"id": "x", "labels": [' + b"1," * 600_000 + b"1]}", 413),  # over --max-body-bytes
            (b"[" + b",".join([b'{"id": "x", "labels": [1]}'] * 10_001) + b"]", 400),  # too many ids
        ]  # fmt: skip
        for body, status in cases:
            r = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code == status, (body[:60], r.status_code, r.text[:200])
            assert "error" in r.json()
        # a huge array of labels within the limit: one id with far too many labels for its request
        many = b'{"id": "' + rid.encode() + b'", "labels": [' + b"1," * 400_000 + b"1]}"
        r = requests.post(url, data=many, timeout=30)
        assert r.status_code == 400 and "the request had 2 rows, got 400001 labels" in r.json()["error"]
        # the refused label count consumed nothing: the right labels still match
        assert feedback(s, {"id": rid, "labels": y[:2].tolist()}).json() == {"matched": 1, "unmatched": 0}
        assert requests.get(url, timeout=10).status_code == 405
        assert s.post("/v2/models/other/feedback", json={"id": rid, "labels": [1]}).status_code == 404
        assert feedback_counts(s) == {"correct": 2, "incorrect": 0, "unmatched": 0}  # 4xx count nothing
        assert not any('code="5' in k and v for k, v in s.metrics().items())
        assert s.get("/v2/health/ready").status_code == 200


def test_grpc_answers_carry_an_id_that_feedback_matches(models, tmp_path):
    port = free_port()
    with running_server(tmp_path, models.paths["lr"], "lr", ["--grpc-port", str(port)]) as s:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            X = models.X[:3]
            req = pb.ModelInferRequest(model_name="lr")
            tensor = req.inputs.add(name="x", datatype="FP64", shape=list(X.shape))
            tensor.contents.fp64_contents.extend(X.ravel().tolist())
            first = stub.ModelInfer(req, timeout=10).id
            second = stub.ModelInfer(req, timeout=10).id
            assert first and second and first != second
            labels = models.lr.predict(X).tolist()
            r = feedback(s, [{"id": first, "labels": labels}, {"id": second, "labels": labels}])
            assert r.status_code == 200 and r.json() == {"matched": 2, "unmatched": 0}
        finally:
            channel.close()
