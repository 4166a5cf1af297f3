"""Each class of bad request gets a 4xx naming the problem; a model failure is a counted 500."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import requests
from conftest import running_server
from modelroll_server.config import Settings

pytestmark = pytest.mark.server

CODE = 'modelroll_requests_total{{model_name="{n}",model_version="{v}",track="stable",protocol="{p}",code="{c}"}}'


def v2(data, shape, datatype="FP64", **extra):
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}], **extra}


def assert_error(r: requests.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    for w in words:
        assert w.lower() in message.lower(), message


def test_malformed_json(lr_server):
    r = lr_server.post("/v2/models/lr/infer", data=b'{"inputs": [', headers={"content-type": "application/json"})
    assert_error(r, 400, "malformed JSON")
    r = lr_server.post("/v1/models/lr:predict", data=b"not json")
    assert_error(r, 400, "malformed JSON")


def test_body_is_not_an_object(lr_server):
    assert_error(lr_server.post("/v2/models/lr/infer", json=[1, 2]), 400, "JSON object")
    assert_error(lr_server.post("/v2/models/lr/infer", json={"x": 1}), 400, "inputs")


def test_wrong_shape(lr_server, models):
    r = lr_server.post("/v2/models/lr/infer", json=v2(models.X[0].tolist(), [2, 20]))
    assert_error(r, 400, "shape [2, 20] needs 40 values", "has 20")
    r = lr_server.post("/v2/models/lr/infer", json=v2([[1.0] * 20], [1, 1, 20]))
    assert_error(r, 400, "rank 3")
    r = lr_server.post("/v2/models/lr/infer", json=v2([[1.0] * 20, [1.0] * 19], [2, 20]))
    assert_error(r, 400, "ragged")


def test_wrong_number_of_features(lr_server):
    r = lr_server.post("/v2/models/lr/infer", json=v2([0.5] * 19, [1, 19]))
    assert_error(r, 400, "wrong number of features", "expects 20, got 19")
    r = lr_server.post("/v1/models/lr:predict", json={"instances": [[0.5] * 21]})
    assert_error(r, 400, "expects 20, got 21")


def test_non_numeric_data(lr_server):
    r = lr_server.post("/v2/models/lr/infer", json=v2(["a"] + [0.5] * 19, [1, 20]))
    assert_error(r, 400, "non-numeric")
    r = lr_server.post("/v2/models/lr/infer", json=v2([None] + [0.5] * 19, [1, 20]))
    assert_error(r, 400, "non-numeric")
    r = lr_server.post("/v1/models/lr:predict", json={"instances": [["1.5"] * 20]})
    assert_error(r, 400, "non-numeric")


def test_bad_datatype(lr_server):
    r = lr_server.post("/v2/models/lr/infer", json=v2([0.5] * 20, [1, 20], "BYTES"))
    assert_error(r, 400, "BYTES is not supported")
    r = lr_server.post("/v2/models/lr/infer", json=v2([0.5] * 20, [1, 20], "INT32"))
    assert_error(r, 400, "not integral")
    r = lr_server.post("/v2/models/lr/infer", json=v2([300] * 20, [1, 20], "INT8"))
    assert_error(r, 400, "out of range for INT8")


def test_unknown_output(lr_server):
    r = lr_server.post("/v2/models/lr/infer", json=v2([0.5] * 20, [1, 20], outputs=[{"name": "x"}]))
    assert_error(r, 400, "unknown output 'x'")


def test_unknown_model_and_version(lr_server):
    before = lr_server.metrics()
    r = lr_server.post("/v2/models/nope/infer", json=v2([0.5] * 20, [1, 20]))
    assert_error(r, 404, "model 'nope' not found")
    r = lr_server.post("/v2/models/lr/versions/v1/infer", json=v2([0.5] * 20, [1, 20]))
    assert_error(r, 404, "version 'v1' of model 'lr' not found")
    assert_error(lr_server.get("/v2/models/nope"), 404, "model 'nope' not found")
    assert_error(lr_server.get("/v2/models/lr/versions/v2/ready"), 404, "version 'v2'")
    assert_error(lr_server.post("/v1/models/nope:predict", json={"instances": [[1] * 20]}), 404,
                 "model 'nope' not found")  # fmt: skip
    assert_error(lr_server.get("/nowhere"), 404, "no route for GET /nowhere")
    after = lr_server.metrics()
    key = CODE.format(n="lr", v="v7", p="v2", c=404)
    assert after[key] - before.get(key, 0) == 2


def test_wrong_method(lr_server):
    assert_error(lr_server.get("/v2/models/lr/infer"), 405, "GET is not allowed", "POST")
    assert_error(lr_server.post("/v2/health/ready"), 405, "use GET")


def test_empty_batch(lr_server):
    assert_error(lr_server.post("/v2/models/lr/infer", json=v2([], [0, 20])), 400, "empty batch")
    assert_error(lr_server.post("/v1/models/lr:predict", json={"instances": []}), 400, "empty batch")


def test_nan_and_infinity_refused(lr_server):
    nan_body = b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"FP64","data":[NaN' + b",0.5" * 19 + b"]}]}"
    assert_error(lr_server.post("/v2/models/lr/infer", data=nan_body), 400, "NaN", "missing values")
    inf_body = nan_body.replace(b"NaN", b"Infinity")
    assert_error(lr_server.post("/v2/models/lr/infer", data=inf_body), 400, "infinity")
    big = nan_body.replace(b"NaN", b"1e999")
    assert_error(lr_server.post("/v2/models/lr/infer", data=big), 400, "infinity")


def test_nan_accepted_by_a_model_that_takes_missing_values(models, tmp_path):
    with running_server(tmp_path, models.paths["hgb"], "hgb") as s:
        body = b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"FP64","data":[NaN' + b",0.5" * 19 + b"]}]}"
        r = s.post("/v2/models/hgb/infer", data=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["shape"] == [1]
        assert s.get("/v2/models/hgb").json()["parameters"]["accepts_nan"] is True


def test_body_over_the_limit(lr_server):
    limit = Settings("m", "n").max_body_bytes  # the default
    body = b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"FP64","data":[' + b"0.5," * (limit // 4) + b"0.5]}]}"
    assert len(body) > limit
    r = lr_server.post("/v2/models/lr/infer", data=body)
    assert_error(r, 413, f"larger than the limit of {limit} bytes")
    assert lr_server.get("/v2/health/live").status_code == 200


def test_body_over_a_configured_limit_chunked(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--max-body-bytes", "1000"]) as s:

        def gen():
            for _ in range(10):
                yield b"x" * 500

        r = s.post("/v2/models/lr/infer", data=gen())
        assert_error(r, 413, "limit of 1000 bytes")


def test_malformed_http_is_answered_not_crashed(lr_server):
    with socket.create_connection(("127.0.0.1", lr_server.port), timeout=5) as c:
        c.sendall(b"GARBAGE / NOPE\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 400")
    assert lr_server.get("/v2/health/live").status_code == 200


def test_model_exception_is_a_counted_500(models, tmp_path):
    with running_server(tmp_path, models.paths["faulty"], "faulty") as s:
        rows = np.zeros((2, 20))
        assert s.infer(rows).status_code == 200
        rows[1, 0] = 666
        r = s.infer(rows)
        assert_error(r, 500, "model raised RuntimeError", "feature 0 is cursed")
        r = s.post("/v1/models/faulty:predict", json={"instances": rows.tolist()})
        assert_error(r, 500, "cursed")
        m = s.metrics()
        assert m[CODE.format(n="faulty", v="1", p="v2", c=500)] == 1
        assert m[CODE.format(n="faulty", v="1", p="v1", c=500)] == 1
        assert m[CODE.format(n="faulty", v="1", p="v2", c=200)] == 1
        assert s.get("/v2/health/ready").status_code == 200


def test_server_survives_all_of_it(lr_server, models):
    r = lr_server.infer(models.X[:1])
    assert r.status_code == 200
    assert lr_server.proc.poll() is None


def test_json_nested_too_deep_is_a_400_not_a_500(lr_server):
    """2 KB of brackets must not count as a model failure (it would inflate a canary's error rate)."""
    for depth in (1_100, 5_000):
        body = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
        r = lr_server.post("/v2/models/lr/infer", data=body, headers={"content-type": "application/json"})
        assert_error(r, 400, "malformed JSON", "nested")


@pytest.mark.parametrize(
    "datatype, value",
    [("INT64", 2**63), ("INT64", -(2**63) - 1), ("INT32", 2**31), ("UINT8", 256), ("FP32", 1e39), ("FP32", -1e39)],
)
def test_values_out_of_range_for_the_datatype_are_refused_naming_the_input(lr_server, datatype, value):
    """Never wrapped (INT64 2**63 became -2**63) nor overflowed to infinity silently."""
    r = lr_server.post("/v2/models/lr/infer", json=v2([value] + [1] * 19, [1, 20], datatype))
    assert_error(r, 400, "'x'", "out of range", datatype)


def test_forest_input_beyond_float32_is_refused_naming_the_input(models, tmp_path):
    """A forest computes in float32: 1e39 sent as FP64 would silently become infinity there."""
    with running_server(tmp_path, models.paths["rf"], "rf") as s:
        row = [1e39] + [0.0] * 19
        r = s.post("/v2/models/rf/infer", json=v2(row, [1, 20], "FP64"))
        assert_error(r, 400, "'x'", "float32", "RandomForestClassifier")
        assert_error(s.post("/v1/models/rf:predict", json={"instances": [row]}), 400, "'instances'", "float32")
        row[0] = 3.0e38  # within float32: answered
        assert s.post("/v2/models/rf/infer", json=v2(row, [1, 20], "FP64")).status_code == 200
