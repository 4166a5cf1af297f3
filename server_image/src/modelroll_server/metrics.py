"""Prometheus metrics kept in shared memory so every worker process adds to one exposition.

The buffer is an anonymous shared mapping created before the workers fork; each worker owns
one region of it (so no locks are needed: one event-loop thread writes each region) and
``/metrics`` on any worker sums the regions. Updating a metric is one float add, which keeps
the hot path cheap; the label sets are fixed up front (protocols, status codes, the model's
classes), which also keeps the series count bounded.
"""

from __future__ import annotations

import bisect
import math
import mmap
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from modelroll_contract import (
    FEEDBACK_RESULTS,
    FORWARD_OUTCOMES,
    METRIC_BATCH_SIZE,
    METRIC_CONFIDENCE,
    METRIC_FEEDBACK,
    METRIC_FEEDBACK_ABS_ERROR,
    METRIC_FEEDBACK_FORWARDED,
    METRIC_INFLIGHT,
    METRIC_LATENCY,
    METRIC_LOAD_SECONDS,
    METRIC_PREDICTION_VALUE,
    METRIC_PREDICTIONS,
    METRIC_REQUESTS,
    METRIC_SHADOW_ABS_DIFFERENCE,
    METRIC_SHADOW_PENDING,
    METRIC_SHADOW_REQUESTS,
    METRIC_SHADOW_ROWS,
    SHADOW_LABEL,
)

PROTOCOLS = ("v2", "v1", "grpc")  # app.py: V2, V1, GRPC
CODES = (200, 400, 404, 405, 413, 415, 500, 503)
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
MAX_CLASSES = 64  # more classes than this are counted under class="__other__"
SHADOW_OUTCOMES = ("compared", "dropped", "failed")  # shadow.py: COMPARED, DROPPED, FAILED
SHADOW_RESULTS = ("agree", "disagree")
# |ours - canary's| of a regressor's rows: one bucket a decade (the mean, _sum / _count, is exact)
DIFFERENCE_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
OTHER_CLASS = "__other__"
# A regressor's predicted values: 1-2-5 steps a decade from 0.001 to 1e6, mirrored for negative
# values, and 0. Fixed rather than taken from the model's reference, so that every server --
# a canary and the stable it replaces, whatever their references -- counts in the same buckets
# and predictionShift can compare them bucket by bucket, on any scale a model predicts in.
_POSITIVE_VALUES = [float(f"{m}e{k}") for k in range(-3, 6) for m in (1, 2, 5)] + [1e6]
PREDICTION_VALUE_BUCKETS = tuple([-v for v in reversed(_POSITIVE_VALUES)] + [0.0] + _POSITIVE_VALUES)
# renderer(every region's extra slots, base labels) -> exposition lines (drift.py)
Renderer = Callable[[np.ndarray, str], list[str]]


def _hist_size(buckets: Sequence[float]) -> int:
    return len(buckets) + 1 + 2  # finite buckets, +Inf, sum, count


class _Layout:
    def __init__(self) -> None:
        self.size = 0
        self.requests = self._take(len(PROTOCOLS) * len(CODES))
        self.latency = self._take(len(PROTOCOLS) * _hist_size(LATENCY_BUCKETS))
        self.batch = self._take(_hist_size(BATCH_BUCKETS))
        self.inflight = self._take(1)
        self.load_seconds = self._take(1)
        self.predictions = self._take(MAX_CLASSES + 1)
        self.confidence = self._take(_hist_size(CONFIDENCE_BUCKETS))
        self.ready = self._take(1)  # not exported: 1 once this worker's model is loaded
        # shadowing: counts against one canary version, which ``shadow_gen`` identifies
        self.shadow_gen = self._take(1)
        self.shadow_pending = self._take(1)
        self.shadow_requests = self._take(len(SHADOW_OUTCOMES))
        self.shadow_rows = self._take(len(SHADOW_RESULTS))
        self.shadow_diff = self._take(_hist_size(DIFFERENCE_BUCKETS))
        # late labels (feedback.py): rows by result, and a regressor's |predicted - label|
        self.feedback = self._take(len(FEEDBACK_RESULTS))
        self.feedback_error = self._take(_hist_size(DIFFERENCE_BUCKETS))
        self.feedback_forwarded = self._take(len(FORWARD_OUTCOMES))  # ids sent to the Pod that answered
        self.prediction_value = self._take(_hist_size(PREDICTION_VALUE_BUCKETS))  # regressors

    def _take(self, n: int) -> int:
        start = self.size
        self.size += n
        return start


LAYOUT = _Layout()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


class Metrics:
    """One worker's view: writes go to its own region, reads sum all regions."""

    def __init__(self, model_name: str, model_version: str, track: str, regions: int = 1, extra_slots: int = 0) -> None:
        self.regions = regions
        # each region: LAYOUT's fixed slots, then ``extra_slots`` sized by the model (drift.py)
        self.stride = LAYOUT.size + extra_slots
        self._mm = mmap.mmap(-1, max(1, regions) * self.stride * 8)
        self._all = np.frombuffer(self._mm, dtype=np.float64).reshape(regions, self.stride)
        self.renderers: list[Renderer] = []  # more families for /metrics, given the extra slots
        self.base = ",".join(
            f'{k}="{_escape(v)}"'
            for k, v in (("model_name", model_name), ("model_version", model_version),
                         ("track", track))
        )  # fmt: skip
        self.classes: list[str] = []
        self.shadow_version: str | None = None  # the canary this worker compares with
        self.use_region(0)

    def use_region(self, index: int) -> None:
        """Called in each worker after fork with its own index."""
        self._arr = self._all[index]
        self._mv = memoryview(self._mm).cast("d")[index * self.stride : (index + 1) * self.stride]
        self._code_index = {c: i for i, c in enumerate(CODES)}

    def set_classes(self, labels: list[str]) -> None:
        self.classes = labels

    # --- hot-path updates (one float add each) ------------------------------------------
    def inflight(self, delta: int) -> None:
        self._mv[LAYOUT.inflight] += delta

    def request_done(self, protocol: int, code: int, seconds: float) -> None:
        mv = self._mv
        ci = self._code_index.get(code)
        if ci is None:
            ci = self._code_index[500 if code >= 500 else 400]
        mv[LAYOUT.requests + protocol * len(CODES) + ci] += 1
        h = LAYOUT.latency + protocol * _hist_size(LATENCY_BUCKETS)
        nb = len(LATENCY_BUCKETS)
        mv[h + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        mv[h + nb + 1] += seconds
        mv[h + nb + 2] += 1

    def batch_done(self, rows: int) -> None:
        mv = self._mv
        h = LAYOUT.batch
        nb = len(BATCH_BUCKETS)
        mv[h + bisect.bisect_left(BATCH_BUCKETS, rows)] += 1
        mv[h + nb + 1] += rows
        mv[h + nb + 2] += 1

    def _observe_many(self, start: int, buckets: Sequence[float], values: np.ndarray) -> None:
        """Add ``values`` to the histogram at ``start`` (its buckets, +Inf, sum, count); a
        non-finite value is counted in +Inf and left out of the sum, which must stay a number."""
        nb = len(buckets)
        arr = self._arr
        arr[start : start + nb + 1] += np.bincount(np.searchsorted(buckets, values, side="left"), minlength=nb + 1)
        total = float(values.sum())
        if not math.isfinite(total):
            total = float(values[np.isfinite(values)].sum())
        arr[start + nb + 1] += total
        arr[start + nb + 2] += len(values)

    def predictions(self, class_index: np.ndarray | None, top_proba: np.ndarray | None) -> None:
        if (class_index is None or len(class_index) <= 8) and (top_proba is None or len(top_proba) <= 8):
            self._few_predictions(class_index, top_proba)
            return
        arr = self._arr
        if class_index is not None and len(class_index):
            idx = np.minimum(class_index, MAX_CLASSES)
            counts = np.bincount(idx, minlength=MAX_CLASSES + 1)
            arr[LAYOUT.predictions : LAYOUT.predictions + MAX_CLASSES + 1] += counts
        if top_proba is not None and len(top_proba):
            self._observe_many(LAYOUT.confidence, CONFIDENCE_BUCKETS, top_proba)

    def _few_predictions(self, class_index: np.ndarray | None, top_proba: np.ndarray | None) -> None:
        # for a handful of rows plain float adds beat numpy's per-call overhead
        mv = self._mv
        if class_index is not None:
            base = LAYOUT.predictions
            for i in class_index.tolist():
                mv[base + (i if i < MAX_CLASSES else MAX_CLASSES)] += 1
        if top_proba is not None and len(top_proba):
            h = LAYOUT.confidence
            nb = len(CONFIDENCE_BUCKETS)
            values = top_proba.tolist()
            for v in values:
                mv[h + bisect.bisect_left(CONFIDENCE_BUCKETS, v)] += 1
            mv[h + nb + 1] += sum(values)
            mv[h + nb + 2] += len(values)

    def prediction_values(self, values: np.ndarray) -> None:
        """A regressor's predicted values."""
        self._observe_many(LAYOUT.prediction_value, PREDICTION_VALUE_BUCKETS, values)

    def extra(self) -> np.ndarray:
        """This worker's extra slots (a view: writes go to shared memory)."""
        extra: np.ndarray = self._arr[LAYOUT.size :]
        return extra

    # --- late labels (feedback.py) ----------------------------------------------------------
    def feedback_rows(self, correct: int = 0, incorrect: int = 0, unmatched: int = 0) -> None:
        mv = self._mv
        mv[LAYOUT.feedback] += correct
        mv[LAYOUT.feedback + 1] += incorrect
        mv[LAYOUT.feedback + 3] += unmatched

    def feedback_errors(self, errors: np.ndarray) -> None:
        """A regressor's matched rows: |predicted - label| each."""
        self._observe_many(LAYOUT.feedback_error, DIFFERENCE_BUCKETS, errors)
        self._arr[LAYOUT.feedback + 2] += len(errors)

    def feedback_forwarded(self, answered: int = 0, failed: int = 0) -> None:
        """Ids whose labels went to the Pod that answered them (feedback_forward.py)."""
        self._mv[LAYOUT.feedback_forwarded] += answered
        self._mv[LAYOUT.feedback_forwarded + 1] += failed

    # --- shadowing (shadow.py) ------------------------------------------------------------
    def shadow_target(self, version: str | None) -> None:
        """Count from now on against canary ``version`` (None: not shadowing). A new version
        starts from zero; the same one (a replacement worker) keeps its predecessor's counts."""
        self.shadow_version = version
        gen = 0.0 if version is None else float(zlib.crc32(version.encode()) + 1)
        if self._arr[LAYOUT.shadow_gen] != gen:
            self._arr[LAYOUT.shadow_gen : LAYOUT.shadow_diff + _hist_size(DIFFERENCE_BUCKETS)] = 0.0
            self._arr[LAYOUT.shadow_gen] = gen

    def shadow_pending(self, delta: int) -> None:
        self._mv[LAYOUT.shadow_pending] += delta

    def shadow_outcome(self, outcome: int, requests: int = 1) -> None:
        self._mv[LAYOUT.shadow_requests + outcome] += requests

    def shadow_rows(self, agree: int, disagree: int) -> None:
        self._mv[LAYOUT.shadow_rows] += agree
        self._mv[LAYOUT.shadow_rows + 1] += disagree

    def shadow_differences(self, diffs: np.ndarray) -> None:
        self._observe_many(LAYOUT.shadow_diff, DIFFERENCE_BUCKETS, diffs)

    def set_load_seconds(self, seconds: float) -> None:
        self._mv[LAYOUT.load_seconds] = seconds

    def set_worker_ready(self, ready: bool) -> None:
        self._mv[LAYOUT.ready] = 1.0 if ready else 0.0

    def all_workers_ready(self) -> bool:
        return bool((self._all[:, LAYOUT.ready] == 1.0).all())

    def worker_restarted(self) -> None:
        """A replacement worker keeps its predecessor's counters (they must never go down)."""
        self._mv[LAYOUT.inflight] = 0.0
        self._mv[LAYOUT.ready] = 0.0

    # --- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        total = self._all.sum(axis=0)
        load = float(self._all[:, LAYOUT.load_seconds].max())
        base = self.base
        out: list[str] = []

        def header(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        def hist(name: str, start: int, buckets: Sequence[float], extra: str, total: np.ndarray = total) -> None:
            cum = 0.0
            for i, le in enumerate(buckets):
                cum += total[start + i]
                out.append(f'{name}_bucket{{{base}{extra},le="{le}"}} {_fmt(cum)}')
            cum += total[start + len(buckets)]
            out.append(f'{name}_bucket{{{base}{extra},le="+Inf"}} {_fmt(cum)}')
            out.append(f"{name}_sum{{{base}{extra}}} {_fmt(float(total[start + len(buckets) + 1]))}")
            out.append(f"{name}_count{{{base}{extra}}} {_fmt(float(total[start + len(buckets) + 2]))}")

        header(METRIC_REQUESTS, "counter", "Inference requests by protocol and HTTP status code.")
        for p, proto in enumerate(PROTOCOLS):
            for c, code in enumerate(CODES):
                v = float(total[LAYOUT.requests + p * len(CODES) + c])
                if v or code == 200:
                    out.append(f'{METRIC_REQUESTS}{{{base},protocol="{proto}",code="{code}"}} {_fmt(v)}')
        header(METRIC_LATENCY, "histogram", "Inference request latency in seconds, from the "
               "request's last byte to its response.")  # fmt: skip
        for p, proto in enumerate(PROTOCOLS):
            hist(METRIC_LATENCY, LAYOUT.latency + p * _hist_size(LATENCY_BUCKETS),
                 LATENCY_BUCKETS, f',protocol="{proto}"')  # fmt: skip
        header(METRIC_BATCH_SIZE, "histogram", "Rows per model call (adaptive batching).")
        hist(METRIC_BATCH_SIZE, LAYOUT.batch, BATCH_BUCKETS, "")
        header(METRIC_INFLIGHT, "gauge", "Inference requests received and not yet answered.")
        out.append(f"{METRIC_INFLIGHT}{{{base}}} {_fmt(float(total[LAYOUT.inflight]))}")
        header(METRIC_LOAD_SECONDS, "gauge", "Seconds taken to verify, load and warm up the model.")
        out.append(f"{METRIC_LOAD_SECONDS}{{{base}}} {_fmt(load)}")
        header(METRIC_PREDICTIONS, "counter", "Predicted rows by predicted class.")
        labels = self.classes[:MAX_CLASSES]
        for i, label in enumerate(labels):
            v = float(total[LAYOUT.predictions + i])
            out.append(f'{METRIC_PREDICTIONS}{{{base},class="{_escape(label)}"}} {_fmt(v)}')
        if len(self.classes) > MAX_CLASSES:
            v = float(total[LAYOUT.predictions + MAX_CLASSES])
            out.append(f'{METRIC_PREDICTIONS}{{{base},class="{OTHER_CLASS}"}} {_fmt(v)}')
        header(METRIC_CONFIDENCE, "histogram", "Top-class probability of each predicted row "
               "(only for models with predict_proba).")  # fmt: skip
        hist(METRIC_CONFIDENCE, LAYOUT.confidence, CONFIDENCE_BUCKETS, "")
        if not self.classes:
            header(METRIC_PREDICTION_VALUE, "histogram", "Predicted value of each row (regressors).")
            hist(METRIC_PREDICTION_VALUE, LAYOUT.prediction_value, PREDICTION_VALUE_BUCKETS, "")
        for renderer in self.renderers:
            out.extend(renderer(self._all[:, LAYOUT.size :], base))
        header(METRIC_FEEDBACK, "counter", "Labelled rows (POST .../feedback) by result: "
               + ("correct or incorrect prediction" if self.classes else "matched a prediction")
               + ", or unmatched (no prediction with that id in the window).")  # fmt: skip
        for i, result in enumerate(FEEDBACK_RESULTS):
            if result in (("matched",) if self.classes else ("correct", "incorrect")):
                continue  # classifiers: correct, incorrect; regressors: matched (and both: unmatched)
            v = float(total[LAYOUT.feedback + i])
            out.append(f'{METRIC_FEEDBACK}{{{base},result="{result}"}} {_fmt(v)}')
        if not self.classes:
            header(METRIC_FEEDBACK_ABS_ERROR, "histogram", "Absolute error of each labelled row's prediction.")
            hist(METRIC_FEEDBACK_ABS_ERROR, LAYOUT.feedback_error, DIFFERENCE_BUCKETS, "")
        header(METRIC_FEEDBACK_FORWARDED, "counter", "Labelled ids sent on to the Pod that answered them, by "
               "outcome: answered, or failed (unreachable, an error, no answer in time; unmatched here).")  # fmt: skip
        for i, outcome in enumerate(FORWARD_OUTCOMES):
            v = float(total[LAYOUT.feedback_forwarded + i])
            out.append(f'{METRIC_FEEDBACK_FORWARDED}{{{base},outcome="{outcome}"}} {_fmt(v)}')
        if self.shadow_version is not None:
            # only the regions counting against the same canary (a worker that has not yet
            # seen a new target still counts against the old one)
            mine = self._all[self._all[:, LAYOUT.shadow_gen] == self._arr[LAYOUT.shadow_gen]].sum(axis=0)
            canary = f',{SHADOW_LABEL}="{_escape(self.shadow_version)}"'
            header(METRIC_SHADOW_REQUESTS, "counter", "Requests copied to the canary, by outcome: compared, "
                   "dropped (the queue was full) or failed (the canary erred, was slow or unreachable).")  # fmt: skip
            for i, outcome in enumerate(SHADOW_OUTCOMES):
                v = float(mine[LAYOUT.shadow_requests + i])
                out.append(f'{METRIC_SHADOW_REQUESTS}{{{base}{canary},outcome="{outcome}"}} {_fmt(v)}')
            header(METRIC_SHADOW_PENDING, "gauge", "Copies waiting to be sent to the canary or on their way.")
            out.append(f"{METRIC_SHADOW_PENDING}{{{base}{canary}}} {_fmt(float(mine[LAYOUT.shadow_pending]))}")
            if self.classes:
                header(METRIC_SHADOW_ROWS, "counter", "Compared rows whose label the canary predicted the same as "
                       "this server (agree) or not (disagree).")  # fmt: skip
                for i, result in enumerate(SHADOW_RESULTS):
                    v = float(mine[LAYOUT.shadow_rows + i])
                    out.append(f'{METRIC_SHADOW_ROWS}{{{base}{canary},result="{result}"}} {_fmt(v)}')
            else:
                header(METRIC_SHADOW_ABS_DIFFERENCE, "histogram", "Absolute difference between this server's "
                       "prediction and the canary's, per compared row.")  # fmt: skip
                hist(METRIC_SHADOW_ABS_DIFFERENCE, LAYOUT.shadow_diff, DIFFERENCE_BUCKETS, canary, mine)
        return ("\n".join(out) + "\n").encode()
