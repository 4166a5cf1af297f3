"""Seeded random malformed requests: every one gets a 4xx (or a 200), never a 500 or a crash."""

from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.server

ROW = [0.25] * 20
SHAPES = [[1, 20], [20], [2, 10], [0, 20], [-1, 20], ["a"], [1.5, 20], [True, 20], None, [1, 20, 1],
          [10**20, 20], [], "1,20", [1, 0]]  # fmt: skip
DATATYPES = ["FP64", "FP32", "FP16", "INT8", "INT64", "UINT8", "BOOL", "BYTES", "FP128", 5, None, ""]
DATA = [ROW, [ROW], [], ["a"] * 20, [None] * 20, {"a": 1}, [[1, 2], [3]], [True] * 20,
        [1e308] * 20, [10**30] * 20, [-1] * 20, "0.5", 0.5, [[ROW]], [[]]]  # fmt: skip
OUTPUTS = [None, [], [{"name": "predict"}], [{"name": 5}], ["predict"], {"name": "x"},
           [{"name": "predict_proba"}, {"name": "predict"}], [{}]]  # fmt: skip
IDS = [None, "x", 5, {"a": 1}, [1], ""]


def _random_body(rng: random.Random) -> bytes:
    tensor: dict[str, object] = {"name": rng.choice(["x", "", 5, None])}
    for key, choices in (("shape", SHAPES), ("datatype", DATATYPES), ("data", DATA)):
        if rng.random() < 0.9:
            tensor[key] = rng.choice(choices)
    body: object = {
        "inputs": rng.choice([[tensor], [tensor, tensor], [], tensor, "x", None, [5]]),
        "outputs": rng.choice(OUTPUTS),
        "id": rng.choice(IDS),
    }
    if rng.random() < 0.1:
        body = rng.choice([[], "inputs", 5, None, [body]])
    raw = json.dumps(body).encode()
    if rng.random() < 0.2:  # break the JSON itself
        cut = rng.randrange(len(raw) + 1)
        raw = raw[:cut] + rng.choice([b"", b"\x00", b"\xff\xfe", b"}", b"NaN", b"[[[["]) + raw[cut + 1 :]
    return raw


def test_random_bad_requests_never_get_a_500(lr_server):
    rng = random.Random(4)
    seen: set[int] = set()
    for i in range(400):
        body = _random_body(rng)
        path = rng.choice(["/v2/models/lr/infer", "/v1/models/lr:predict"])
        if path.startswith("/v1") and rng.random() < 0.7:
            body = json.dumps({"instances": rng.choice(DATA + [[ROW, ROW], [ROW[:5]]])}).encode()
        r = lr_server.post(path, data=body)
        assert r.status_code in (200, 400, 404, 413), (i, body[:300], r.status_code, r.text)
        assert "error" in r.json() or r.status_code == 200
        seen.add(r.status_code)
    assert seen >= {200, 400}
    assert lr_server.get("/v2/health/ready").status_code == 200
    m = lr_server.metrics()
    assert not any('code="500"' in k and v for k, v in m.items())
