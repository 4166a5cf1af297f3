"""Every endpoint of a real server on loopback, answered with a real model's predictions."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.server


def test_health_and_server_metadata(lr_server):
    assert lr_server.get("/v2/health/live").json() == {"live": True}
    assert lr_server.get("/v2/health/ready").json() == {"ready": True}
    meta = lr_server.get("/v2").json()
    assert meta["name"] == "modelroll-server" and meta["version"]


@pytest.mark.parametrize("prefix", ["/v2/models/lr", "/v2/models/lr/versions/v7"])
def test_model_metadata_and_ready(lr_server, models, prefix):
    meta = lr_server.get(prefix).json()
    assert meta["name"] == "lr" and meta["versions"] == ["v7"] and meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 20]}]
    assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}
    p = meta["parameters"]
    assert p["estimator"] == "LogisticRegression" and p["classes"] == ["0", "1", "2"]
    assert "sha256:" + p["sha256"] == f"sha256:{p['sha256']}" and len(p["sha256"]) == 64
    assert p["warnings"] == []
    assert lr_server.get(prefix + "/ready").json() == {"name": "lr", "ready": True}


def test_v2_infer_flat_matches_the_model(lr_server, models):
    rows = models.X[:5]
    r = lr_server.infer(rows, id="req-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-1" and body["model_name"] == "lr" and body["model_version"] == "v7"
    (out,) = body["outputs"]
    assert out["name"] == "predict" and out["shape"] == [5] and out["datatype"] == "INT64"
    assert out["data"] == models.lr.predict(rows).tolist()


def test_v2_infer_nested_data_and_versioned_path(lr_server, models):
    rows = models.X[5:8]
    body = {"inputs": [{"name": "x", "shape": [3, 20], "datatype": "FP32",
                        "data": rows.tolist()}]}  # fmt: skip
    r = lr_server.post("/v2/models/lr/versions/v7/infer", json=body)
    assert r.status_code == 200, r.text
    expected = models.lr.predict(rows.astype(np.float32).astype(np.float64))
    assert r.json()["outputs"][0]["data"] == expected.tolist()


def test_v2_one_dimensional_shape_is_one_row(lr_server, models):
    row = models.X[9]
    body = {"inputs": [{"name": "x", "shape": [20], "datatype": "FP64", "data": row.tolist()}]}
    r = lr_server.post("/v2/models/lr/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == models.lr.predict(row[None, :]).tolist()


def test_v2_integer_datatype(lr_server, models):
    rows = np.round(models.X[:2]).astype(int)
    body = {"inputs": [{"name": "x", "shape": [2, 20], "datatype": "INT64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    r = lr_server.post("/v2/models/lr/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == models.lr.predict(rows.astype(float)).tolist()


def test_v2_predict_proba_output(lr_server, models):
    rows = models.X[10:14]
    r = lr_server.infer(rows, outputs=[{"name": "predict_proba"}, {"name": "predict"}])
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    proba = outs["predict_proba"]
    assert proba["shape"] == [4, 3] and proba["datatype"] == "FP64"
    np.testing.assert_allclose(np.array(proba["data"]).reshape(4, 3), models.lr.predict_proba(rows), rtol=1e-12)
    assert outs["predict"]["data"] == models.lr.predict(rows).tolist()


def test_v1_predict_and_model(lr_server, models):
    rows = models.X[20:23]
    r = lr_server.post("/v1/models/lr:predict", json={"instances": rows.tolist()})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": models.lr.predict(rows).tolist()}
    assert lr_server.get("/v1/models/lr").json() == {"name": "lr", "ready": True}
    assert lr_server.get("/v1/models").json() == {"models": ["lr"]}


def test_server_default_predict_proba(models, tmp_path):
    from conftest import running_server

    with running_server(tmp_path, models.paths["rf"], "rf", ["--method", "predict_proba"]) as s:
        rows = models.X[:3]
        r = s.post("/v1/models/rf:predict", json={"instances": rows.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"], models.rf.predict_proba(rows))
        (out,) = s.infer(rows).json()["outputs"]
        assert out["name"] == "predict_proba" and out["shape"] == [3, 3]


def test_openapi_describes_every_endpoint(lr_server):
    doc = lr_server.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json",
        "/v2/models/{model_name}", "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/v1/models/{model_name}", "/v1/models/{model_name}:predict",
    }  # fmt: skip


def test_metrics_endpoint_is_prometheus_text(lr_server):
    r = lr_server.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE modelroll_requests_total counter" in r.text
    assert 'modelroll_model_load_seconds{model_name="lr",model_version="v7",track="stable"}' in r.text


def test_other_formats_load(models, tmp_path):
    from conftest import running_server

    for key in ("lr_pickle", "lr_skops"):
        with running_server(tmp_path, models.paths[key], "lr") as s:
            rows = models.X[:4]
            assert s.infer(rows).json()["outputs"][0]["data"] == models.lr.predict(rows).tolist()


def test_two_workers_serve_and_share_metrics(models, tmp_path):
    from conftest import running_server

    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as s:
        import requests

        for _ in range(20):  # fresh connections, so both workers get some
            with requests.post(f"{s.url}/v2/models/lr/infer", json={"inputs": [{
                "name": "x", "shape": [1, 20], "datatype": "FP64",
                "data": models.X[0].tolist()}]}, timeout=10) as r:  # fmt: skip
                assert r.status_code == 200
        m = s.metrics()
        key = 'modelroll_requests_total{model_name="lr",model_version="1",track="stable",protocol="v2",code="200"}'
        assert m[key] == 20
