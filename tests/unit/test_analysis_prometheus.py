"""The Prometheus client against an in-process HTTP server on loopback: answers, errors, timeouts."""

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiohttp import web
from modelroll.analysis.gates import ERROR, FAIL, PASS, evaluate_measurement
from modelroll.analysis.prometheus import NO_URL, QueryError, query_measurement, read_result
from modelroll.analysis.schedule import MeasurementPlan
from modelroll.spec import Analysis, Gate

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GATES = (
    Gate("errorRate", builtin="errorRate", max=0.05),
    Gate("predictionShift", builtin="predictionShift", max_psi=0.2),
    Gate("custom", query="up", success_condition="all(result == 1)"),
    Gate("increase", builtin="errorRate", max_increase=0.01),
)
PLAN = MeasurementPlan(
    "canary", "r1", Analysis(interval_seconds=30, min_samples=10, gates=GATES), "fraud", "v2", "v1", "ml"
)


def vector(*series):
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [1.0, str(v)]} for labels, v in series],
        },
    }


def answer(query):
    if query == "up":
        return vector(({"instance": "a"}, 1), ({"instance": "b"}, 1))
    if "code=~" in query:
        return vector()  # no 5xx series yet
    if "modelroll_requests_total" in query:
        return vector(({}, 120))
    if "by (class)" in query:
        canary = 'track="canary"' in query
        return vector(({"class": "0"}, 60 if canary else 58), ({"class": "1"}, 60 if canary else 62))
    return vector()


@pytest.fixture
def prometheus():
    seen = []

    async def handler(request):
        query = request.query["query"]
        seen.append((query, request.query.get("time")))
        if query == "bad(":
            return web.json_response({"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400)
        return web.json_response(answer(query))

    async def start():
        app = web.Application()
        app.router.add_get("/api/v1/query", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return runner, f"http://127.0.0.1:{port}"

    return start, seen


def test_read_result_shapes():
    assert read_result(vector(({"a": "1"}, 2))) == [({"a": "1"}, 2.0)]
    assert read_result({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}) == [({}, 0.5)]
    with pytest.raises(QueryError, match="bad_data: nope"):
        read_result({"status": "error", "errorType": "bad_data", "error": "nope"})
    with pytest.raises(QueryError, match="unsupported result type 'matrix'"):
        read_result({"status": "success", "data": {"resultType": "matrix", "result": []}})
    got = read_result(vector(({}, "NaN")))
    assert got[0][1] != got[0][1]  # NaN survives as NaN; the gates treat it as no data


def test_a_measurement_against_a_live_endpoint(prometheus):
    start, seen = prometheus

    async def run():
        runner, url = await start()
        try:
            return await query_measurement(PLAN, url, NOW)
        finally:
            await runner.cleanup()

    m = asyncio.run(run())
    assert m.data["errorRate"].samples == 120 and m.data["errorRate"].errors == 0
    assert m.data["errorRate"].stable_samples is None  # stable's counts only for maxIncrease
    assert (m.data["increase"].stable_samples, m.data["increase"].stable_errors) == (120, 0)
    stable_5xx = 'track="stable",code=~"5.."'
    assert any(stable_5xx in q and "modelroll_requests_total" in q for q, _ in seen)
    assert m.data["custom"].result == [1.0, 1.0]
    assert m.data["predictionShift"].canary_classes == {"0": 60, "1": 60}
    verdict, verdicts = evaluate_measurement(PLAN.analysis, m)
    assert verdict == PASS, verdicts
    # every distinct query once, all at the same evaluation time
    assert len(seen) == len({q for q, _ in seen}) and len({t for _, t in seen}) == 1


def test_unreachable_bad_query_and_no_url_are_errors_not_exceptions(prometheus):
    start, _ = prometheus
    bad = MeasurementPlan(
        "canary",
        "r1",
        Analysis(
            gates=(
                Gate("c", query="bad(", success_condition="result < 1"),
                Gate("errorRate", builtin="errorRate", max=0.1),
            )
        ),
        "fraud",
        "v2",
        "v1",
        "ml",
    )

    async def run():
        runner, url = await start()
        try:
            return await query_measurement(bad, url, NOW)
        finally:
            await runner.cleanup()

    m = asyncio.run(run())
    assert "bad_data: parse error" in m.data["c"].error and m.data["errorRate"].error is None

    refused = asyncio.run(query_measurement(PLAN, "http://127.0.0.1:9", NOW))
    assert all("unreachable" in d.error for d in refused.data.values())
    verdict, _ = evaluate_measurement(PLAN.analysis, refused)
    assert verdict == ERROR

    none = asyncio.run(query_measurement(PLAN, None, NOW))
    assert {d.error for d in none.data.values()} == {NO_URL}


def test_failing_numbers_fail(prometheus):
    plan = MeasurementPlan(
        "canary",
        "r1",
        Analysis(min_samples=10, gates=(Gate("custom", query="up", success_condition="len(result) == 5"),)),
        "fraud",
        "v2",
        "v1",
        "ml",
    )
    start, _ = prometheus

    async def run():
        runner, url = await start()
        try:
            return await query_measurement(plan, url, NOW)
        finally:
            await runner.cleanup()

    verdict, verdicts = evaluate_measurement(plan.analysis, asyncio.run(run()))
    assert verdict == FAIL and json.dumps(verdicts[0].as_status())
