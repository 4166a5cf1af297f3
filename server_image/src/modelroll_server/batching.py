"""Adaptive batching: requests that arrive together are predicted in one model call (no I/O).

The batch is flushed on the event loop's next turn, so it holds exactly the requests whose
bytes arrived while the previous batch was being computed: one lone client is answered with
no added wait (when every open connection is waiting on the batch it runs at once, since
nothing else can join it), and under load the batch grows by itself. ``max_wait``
(optional) holds a batch open a little longer for requests still on their way.
Each job gets exactly its own rows back, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from .loading import LoadedModel
from .metrics import Metrics

log = logging.getLogger("modelroll_server.batching")


# done(predict_rows, proba_rows, error): called once, on the event loop, with this job's rows
DoneFn = Callable[["np.ndarray | None", "np.ndarray | None", "BaseException | None"], None]
# after_batch(jobs, predict, proba): once every job of a batch was answered (shadow.py)
AfterBatchFn = Callable[[list["Job"], "np.ndarray | None", "np.ndarray | None"], None]


Outcome = tuple["np.ndarray | None", "np.ndarray | None", "Exception | None"]

# A batch of at least this many rows is predicted on a thread, not on the event loop: about
# 10-50 ms of work for a forest, the most a liveness probe or a small request should wait.
OFF_LOOP_ROWS = 2048


class Job:
    __slots__ = ("X", "n", "want_predict", "want_proba", "done")

    def __init__(self, X: np.ndarray, want_predict: bool, want_proba: bool, done: DoneFn) -> None:
        self.X = X
        self.n = X.shape[0]
        self.want_predict = want_predict
        self.want_proba = want_proba
        self.done = done


class Batcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        model: LoadedModel,
        metrics: Metrics,
        max_batch_size: int,
        max_wait_s: float,
        open_connections: Callable[[], int],
    ) -> None:
        self.loop = loop
        self.model = model
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.open_connections = open_connections
        self.pending: list[Job] = []
        self.rows = 0
        self._soon: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.after_batch: list[AfterBatchFn] = []  # shadowing, drift, feedback: each sees every batch

    def submit(self, job: Job) -> None:
        self.pending.append(job)
        self.rows += job.n
        if len(self.pending) >= self.open_connections():
            # every open connection is waiting on this batch: nothing else can join it
            self.flush()
            return
        if self._soon is not None:
            return
        if self.max_wait_s <= 0 or self.rows >= self.max_batch_size:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._soon = self.loop.call_soon(self.flush)
        elif self._timer is None:
            self._timer = self.loop.call_later(self.max_wait_s, self.flush)

    def flush(self) -> None:
        if self._soon is not None:  # called directly: the scheduled turn is not needed
            self._soon.cancel()
            self._soon = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self.pending
        if not pending:
            return
        # take whole jobs up to max_batch_size rows (a single larger job runs on its own)
        take, rows = 0, 0
        for job in pending:
            if take and rows + job.n > self.max_batch_size:
                break
            take += 1
            rows += job.n
        jobs = pending[:take]
        del pending[:take]
        self.rows -= rows
        if pending:
            self._soon = self.loop.call_soon(self.flush)
        self._run(jobs, rows)

    def _run(self, jobs: list[Job], rows: int) -> None:
        X = jobs[0].X if len(jobs) == 1 else np.concatenate([j.X for j in jobs])
        want_predict = any(j.want_predict for j in jobs)
        want_proba = any(j.want_proba for j in jobs)
        if rows >= OFF_LOOP_ROWS:
            # long enough to delay probes and other clients: predict on a thread (scikit-learn
            # and numpy release the GIL for the heavy part) and deliver back on the loop
            fut = self.loop.run_in_executor(None, self._predict, X, rows, want_predict, want_proba)
            fut.add_done_callback(lambda f: self._deliver(jobs, rows, f.result()))
            return
        self._deliver(jobs, rows, self._predict(X, rows, want_predict, want_proba))

    def _predict(self, X: np.ndarray, rows: int, want_predict: bool, want_proba: bool) -> Outcome:
        try:
            pred, proba = self.model.run(X, want_predict, want_proba)
            if pred is not None:
                pred = np.ascontiguousarray(pred)
                if len(pred) != rows:
                    raise ValueError(f"model returned {len(pred)} predictions for {rows} rows")
            if proba is not None:
                proba = np.ascontiguousarray(proba)
        except Exception as e:
            return None, None, e
        return pred, proba, None

    def _deliver(self, jobs: list[Job], rows: int, outcome: Outcome) -> None:
        pred, proba, err = outcome
        if err is not None:
            if len(jobs) > 1:
                # isolate the request that breaks the model; the others still get answers
                for job in jobs:
                    self._run([job], job.n)
                return
            log.warning("model raised on a batch of %d rows: %s: %s", rows, type(err).__name__, err)
            jobs[0].done(None, None, err)
            return
        self.metrics.batch_done(rows)
        self._observe(pred, proba)
        start = 0
        for job in jobs:
            end = start + job.n
            job.done(
                pred[start:end] if pred is not None and job.want_predict else None,
                proba[start:end] if proba is not None and job.want_proba else None,
                None,
            )
            start = end
        for hook in self.after_batch:
            hook(jobs, pred, proba)

    def _observe(self, pred: np.ndarray | None, proba: np.ndarray | None) -> None:
        """Count predicted classes (what predict returned) and the top-class probability."""
        model = self.model
        classes = model.classes
        has_proba = proba is not None and proba.ndim == 2 and proba.shape[1] > 0
        idx = None
        if has_proba and (pred is None or model.derive_predict):
            idx = proba.argmax(axis=1)  # type: ignore[union-attr]
        elif pred is not None and classes is not None:
            idx = np.clip(np.searchsorted(classes, pred), 0, len(classes) - 1)
        top = proba.max(axis=1) if has_proba else None  # type: ignore[union-attr]
        if idx is not None or top is not None:
            self.metrics.predictions(idx, top)
        if classes is None and pred is not None and pred.dtype.kind in "fiub":
            self.metrics.prediction_values(pred.ravel().astype(np.float64, copy=False))
