"""Runs a due measurement against Prometheus' HTTP API (I/O).

Every query goes to ``/api/v1/query`` at one evaluation time, so canary and stable are read
over the same window. Nothing here raises into the reconcile: an unreachable server, a
timeout, a non-2xx answer or a PromQL error becomes ``GateData.error`` for the gates that
needed the query, which the state machine counts toward ``consecutiveErrorLimit`` and never
toward ``failureLimit``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
from modelroll_contract import DRIFT_BIN_LABEL, DRIFT_FEATURE_LABEL

from ..spec import ModelDeploymentSpec, SpecError, parse_spec
from .gates import GateData, Measurement
from .schedule import MeasurementPlan, build_queries, plan_measurement

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0
NO_URL = "no Prometheus configured: set MODELROLL_PROMETHEUS_URL on the operator or analysis.prometheusUrl"

Series = list[tuple[Mapping[str, str], float]]


class QueryError(Exception):
    pass


def _number(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def read_result(body: Mapping[str, Any]) -> Series:
    """(labels, value) per series of an instant query's JSON answer; QueryError on an error answer."""
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', 'no detail')}"[:300])
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [({}, _number(result[1]))]
    if kind == "vector" and isinstance(result, list):
        return [(item.get("metric") or {}, _number((item.get("value") or [0, "NaN"])[1])) for item in result]
    raise QueryError(f"unsupported result type {kind!r} (give an instant vector or a scalar)")


async def query_prometheus(session: aiohttp.ClientSession, url: str, promql: str, at: datetime) -> Series:
    endpoint = url.rstrip("/") + "/api/v1/query"
    try:
        async with session.get(endpoint, params={"query": promql, "time": f"{at.timestamp():.3f}"}) as resp:
            if resp.status >= 500 or resp.status in (401, 403, 404):
                raise QueryError(f"Prometheus at {url} answered HTTP {resp.status}")
            body = await resp.json(content_type=None)
    except QueryError:
        raise
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise QueryError(f"Prometheus at {url} unreachable: {type(e).__name__}: {e}".rstrip(": ")) from None
    return read_result(body)


def _total(series: Series) -> float | None:
    values = [v for _, v in series if not math.isnan(v)]
    return math.fsum(values) if values else None


def _by(series: Series, label: str) -> dict[str, float]:
    return {labels.get(label, ""): v for labels, v in series if not math.isnan(v)}


def _by_feature(series: Series) -> dict[str, dict[str, float]]:
    """feature -> bin -> value (featureDrift's bin counts and reference shares)."""
    out: dict[str, dict[str, float]] = {}
    for labels, v in series:
        if not math.isnan(v):
            out.setdefault(labels.get(DRIFT_FEATURE_LABEL, ""), {})[labels.get(DRIFT_BIN_LABEL, "")] = v
    return out


def _gate_data(answers: Mapping[str, Series | QueryError], keys: Mapping[str, str]) -> GateData:
    got: dict[str, Any] = {}
    for field, promql in keys.items():
        answer = answers[promql]
        if isinstance(answer, QueryError):
            return GateData(error=str(answer))
        if field == "result":
            values = [v for _, v in answer]
            got["result"] = None if not values else (values[0] if len(answer) == 1 else values)
        elif field in ("samples", "errors", "stable_samples", "stable_errors", "agree", "disagree"):
            got[field] = _total(answer) if answer or field.endswith("samples") else 0.0
        elif field in ("difference_sum", "difference_count") or field.endswith(("_p99", "_error_sum", "_error_count")):
            got[field] = _total(answer)
        elif field.endswith("_classes"):
            got[field] = _by(answer, "class")
        elif field.endswith(("_bins", "_reference")):
            got[field] = _by_feature(answer)
        elif field.endswith("_feedback"):
            got[field] = _by(answer, "result")
        else:
            got[field] = _by(answer, "le")
    for errors in ("errors", "stable_errors"):
        if got.get(errors) is None and errors in keys:
            got[errors] = 0.0  # no 5xx series at all: the server has not answered 5xx yet
    return GateData(**got)


async def query_measurement(plan: MeasurementPlan, url: str | None, now: datetime) -> Measurement:
    """Run every gate's queries (each distinct PromQL once, concurrently)."""
    wanted = {g.name: build_queries(plan, g) for g in plan.analysis.gates}
    if not url:
        return Measurement(plan.scope, plan.revision, now, {n: GateData(error=NO_URL) for n in wanted})
    distinct = sorted({q for keys in wanted.values() for q in keys.values()})
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    answers: dict[str, Series | QueryError] = {}
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(
                *(query_prometheus(session, url, q, now) for q in distinct), return_exceptions=True
            )
    except Exception as e:  # noqa: BLE001 - the session itself failed; every gate errors
        results = [e] * len(distinct)
    for promql, res in zip(distinct, results, strict=True):
        if isinstance(res, BaseException) and not isinstance(res, QueryError):
            res = QueryError(f"Prometheus at {url}: {type(res).__name__}: {res}")
        answers[promql] = res
    return Measurement(plan.scope, plan.revision, now, {n: _gate_data(answers, keys) for n, keys in wanted.items()})


async def query_due_measurement(
    raw_spec: Mapping[str, Any],
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    now: datetime,
    default_url: str | None,
) -> Measurement | None:
    """The measurement due now for this object, or None. Never raises."""
    try:
        spec: ModelDeploymentSpec = parse_spec(raw_spec)
    except SpecError:
        return None  # the planner reports the invalid spec
    plan = plan_measurement(spec, namespace, name, status, now)
    if plan is None:
        return None
    url = plan.analysis.prometheus_url or default_url
    measurement = await query_measurement(plan, url, now)
    log.debug("%s/%s: measured %s of %s: %s", namespace, name, plan.scope, plan.revision, measurement.data)
    return measurement
