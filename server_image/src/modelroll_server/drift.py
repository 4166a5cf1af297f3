"""Input drift: live rows binned like the model's reference statistics (no I/O after startup).

``--reference`` names the ``reference.json`` that ``modelroll package`` wrote beside the
artifact (format: ``modelroll_contract.reference``). The server refuses to start with a
reference of another model, so every count below is against the statistics of the very
model it serves. After every answered batch (the batcher's ``after_batch`` hook) each watched
feature's values are put in the reference's bins, with numpy over the whole batch, and
counted twice in the shared metrics table (metrics.py):

- for ever, per bin: ``modelroll_feature_bin_total``, so the operator can compute the PSI of
  any window from Prometheus, against ``modelroll_feature_reference_proportion``;
- in a sliding window of this worker's most recent ``WINDOW_ROWS`` rows: a ring of the rows'
  bins adds the newest and takes away the oldest. ``/metrics`` sums the windows of all
  workers and exports their PSI, ``modelroll_feature_psi``, for dashboards and alerts that
  need no query over time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from modelroll_contract import (
    DRIFT_BIN_LABEL,
    DRIFT_FEATURE_LABEL,
    DRIFT_MISSING_BIN,
    METRIC_DRIFT_WINDOW_ROWS,
    METRIC_FEATURE_BINS,
    METRIC_FEATURE_PSI,
    METRIC_FEATURE_REFERENCE,
)
from modelroll_contract import reference as contract

from .batching import Job
from .loading import LoadedModel
from .metrics import Metrics, _escape, _fmt

MAX_FEATURES = 100  # the first 100 inputs are watched; the others are not (logged at startup)
MAX_BINS = 64  # per feature, missing included: a reference with more is refused (series count)
WINDOW_ROWS = 10_000  # per worker: the sliding window modelroll_feature_psi is computed over
# A share below this counts as this (in the window and in the reference) in the PSI: one row
# in a full window, so a bin the window has not seen adds a bounded term, not infinity.
PSI_FLOOR = 1.0 / WINDOW_ROWS
# Up to this many comparisons (rows x features x edges) bin a batch in one broadcast
# comparison; a larger batch takes one searchsorted per feature (fewer operations, more calls).
BROADCAST_LIMIT = 1 << 16
# Rows are binned and counted in bulk, not per batch: a batch only keeps its rows for later
# (a list append), and the rows kept are counted once there are FLUSH_ROWS of them or
# FLUSH_SECONDS after the first, whichever comes first. Binning one row at a time cost as
# much as LogisticRegression's own prediction; in bulk it is a fraction of a microsecond a row.
# A flush runs on the event loop, so its length is added to the requests waiting behind it:
# with 20 features, 4096 rows took 2.6 ms (the benchmark's p99 rose from 1.0 to 3.9 ms at
# 16 connections), 512 rows 0.18 ms at a lower cost per row (0.36 against 0.64 µs).
FLUSH_ROWS = 512
FLUSH_SECONDS = 0.25


class ReferenceRefused(ValueError):
    """The reference cannot be used with this model; the message names the problem."""


def read_reference(path: str, model: LoadedModel) -> contract.Reference:
    """The reference statistics at ``path``, checked to describe ``model``."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ReferenceRefused(f"cannot read reference file {path}: {e.strerror or e}") from None
    try:
        ref = contract.loads(data)
    except contract.ReferenceError as e:
        raise ReferenceRefused(f"reference file {path} is malformed: {e}") from None
    served = f"sha256:{model.sha256}"
    if ref.model.digest != served:
        raise ReferenceRefused(
            f"reference file {path} describes another model: its model.digest is {ref.model.digest} "
            f"({ref.model.artifact}), the model served is {served}; use the reference.json "
            "`modelroll package` wrote with this artifact"
        )
    if model.n_features is None:
        raise ReferenceRefused(
            f"the model records no n_features_in_, so its inputs cannot be matched with reference file {path}"
        )
    if ref.n_features != model.n_features:
        raise ReferenceRefused(
            f"reference file {path} has {ref.n_features} features, the model takes {model.n_features}"
        )
    for i, f in enumerate(ref.features[:MAX_FEATURES]):
        if len(f.histogram.edges) + 2 > MAX_BINS:
            raise ReferenceRefused(
                f"reference file {path}: features[{i}] ({f.name!r}) has {len(f.histogram.edges) + 1} bins; "
                f"the server watches at most {MAX_BINS - 1} per feature (modelroll package --bins)"
            )
    return ref


def _le(edge: float) -> str:
    return str(float(edge))  # as metrics.py writes a histogram's le


@dataclass(frozen=True)
class DriftLayout:
    """Where each watched feature's bins are among the metrics' extra slots.

    The extra slots hold three blocks: ``slots`` bin counters (every row ever), ``slots``
    window counts (the rows in the window), and the number of rows in the window.
    Feature ``f``'s bins are ``offsets[f] .. offsets[f] + len(edges[f])``, then its missing bin.
    """

    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    offsets: np.ndarray  # (features,) first slot of each feature
    missing: np.ndarray  # (features,) the slot of each feature's missing bin, -1 without one
    labels: tuple[str, ...]  # per slot: the bin label
    reference: np.ndarray  # per slot: the reference's proportion
    padded: np.ndarray  # (features, most edges): edges padded with +inf, for the broadcast
    allow_nan: bool  # NaN can reach the model: look for it
    ignored: int  # input columns beyond MAX_FEATURES, not watched

    @property
    def slots(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return 2 * self.slots + 1

    @classmethod
    def of(cls, ref: contract.Reference, allow_nan: bool) -> DriftLayout:
        features = ref.features[:MAX_FEATURES]
        offsets: list[int] = []
        missing: list[int] = []
        labels: list[str] = []
        props: list[float] = []
        edges: list[np.ndarray] = []
        for f in features:
            h = f.histogram
            offsets.append(len(labels))
            labels += [_le(e) for e in h.edges] + ["+Inf"]
            props += h.proportions
            edges.append(np.asarray(h.edges, dtype=np.float64))
            # a missing bin where NaN can arrive, or where the reference saw some
            if allow_nan or h.missing > 0:
                missing.append(len(labels))
                labels.append(DRIFT_MISSING_BIN)
                props.append(h.missing)
            else:
                missing.append(-1)
        width = max(1, max(len(e) for e in edges))
        padded = np.full((len(edges), width), np.inf)
        for i, e in enumerate(edges):
            padded[i, : len(e)] = e
        return cls(
            names=tuple(f.name for f in features),
            edges=tuple(edges),
            offsets=np.asarray(offsets, dtype=np.intp),
            missing=np.asarray(missing, dtype=np.intp),
            labels=tuple(labels),
            reference=np.asarray(props, dtype=np.float64),
            padded=padded,
            allow_nan=allow_nan,
            ignored=len(ref.features) - len(features),
        )

    def bin_slots(self, X: np.ndarray) -> np.ndarray:
        """(rows, features): the slot of each watched value's bin (the reference's rule:
        ``bisect_left(edges, x)``, the number of edges below x; NaN in the missing bin)."""
        Xw = X[:, : len(self.edges)]
        n, f = Xw.shape
        if n * f * self.padded.shape[1] <= BROADCAST_LIMIT:
            bins = (Xw[:, :, None] > self.padded[None, :, :]).sum(axis=2)
        else:
            columns = np.ascontiguousarray(Xw.T)  # one pass, then each feature's values are contiguous
            bins = np.stack([np.searchsorted(e, columns[i], side="left") for i, e in enumerate(self.edges)], axis=1)
        slots = bins + self.offsets
        if self.allow_nan:
            nan = np.isnan(Xw)
            if nan.any():
                slots = np.where(nan, self.missing, slots)
        out: np.ndarray = slots
        return out


def psi(window: np.ndarray, reference: np.ndarray) -> float:
    """PSI of one feature's window counts against its reference proportions; NaN without rows."""
    total = window.sum()
    if total <= 0:
        return math.nan
    p = np.maximum(window / total, PSI_FLOOR)
    q = np.maximum(reference, PSI_FLOOR)
    return float(((p - q) * np.log(p / q)).sum())


class Drift:
    """One worker's drift counting: the batcher's hook and a renderer for ``/metrics``."""

    def __init__(self, layout: DriftLayout, metrics: Metrics, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.layout = layout
        self.loop = loop  # None: counted at once (tests of the arithmetic)
        self.pending: list[np.ndarray] = []  # rows answered, not yet counted
        self.pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self.slots = metrics.extra()[: layout.size]
        n = layout.slots
        # A new worker starts an empty window (a replacement's predecessor took its ring with
        # it); the bin counters go on from where the predecessor left them.
        self.slots[n:] = 0.0
        self.ring = np.zeros((WINDOW_ROWS, len(layout.edges)), dtype=np.int32)
        self.pos = 0
        self.filled = 0
        self._keys: tuple[list[str], list[str], list[str]] | None = None
        metrics.renderers.append(self.render)

    def after_batch(self, jobs: Sequence[Job], pred: np.ndarray | None, proba: np.ndarray | None) -> None:
        self.pending += [j.X for j in jobs]
        self.pending_rows += sum(j.n for j in jobs)
        if self.pending_rows >= FLUSH_ROWS or self.loop is None:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Count the rows kept so far."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.pending:
            return
        X = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending = []
        self.pending_rows = 0
        self.observe(X)

    def observe(self, X: np.ndarray) -> None:
        layout, n = self.layout, len(X)
        if n == 0:
            return
        S = layout.bin_slots(X)
        counts = layout.slots
        new = np.bincount(S.ravel(), minlength=counts)
        self.slots[:counts] += new
        window = self.slots[counts : 2 * counts]
        W = WINDOW_ROWS
        if n >= W:  # the batch alone fills the window
            self.ring[:] = S[-W:]
            window[:] = new if n == W else np.bincount(S[-W:].ravel(), minlength=counts)
            self.pos, self.filled = 0, W
        else:
            end = self.pos + n
            first = min(end, W)
            old = []
            if self.filled == W:
                old.append(self.ring[self.pos : first])
            if end > W:  # wraps: the oldest rows, at the ring's start, leave
                old.append(self.ring[: end - W])
            if old:
                gone = old[0] if len(old) == 1 else np.concatenate(old)
                window += new - np.bincount(gone.ravel(), minlength=counts)
            else:
                window += new
            k = first - self.pos
            self.ring[self.pos : first] = S[:k]
            if end > W:
                self.ring[: end - W] = S[k:]
            self.pos = end % W
            self.filled = min(W, self.filled + n)
        self.slots[2 * counts] = self.filled

    def render(self, regions: np.ndarray, base: str) -> list[str]:
        """The drift families from every region's extra slots."""
        layout = self.layout
        n = layout.slots
        total = regions[:, : layout.size].sum(axis=0)
        if self._keys is None:
            self._keys = self._series(base)
        bin_keys, ref_keys, psi_keys = self._keys
        out = [
            f"# HELP {METRIC_FEATURE_BINS} Live input rows per reference bin of each feature "
            "(bin: the bin's upper bound; counts per bin, not cumulative).",
            f"# TYPE {METRIC_FEATURE_BINS} counter",
        ]
        out += [f"{k} {_fmt(v)}" for k, v in zip(bin_keys, total[:n].tolist(), strict=True)]
        out += [
            f"# HELP {METRIC_FEATURE_REFERENCE} The reference statistics' share of each bin of each feature.",
            f"# TYPE {METRIC_FEATURE_REFERENCE} gauge",
        ]
        out += [f"{k} {v!r}" for k, v in zip(ref_keys, layout.reference.tolist(), strict=True)]
        window = total[n : 2 * n]
        out += [
            f"# HELP {METRIC_FEATURE_PSI} Population stability index of each feature's most recent "
            f"rows (up to {WINDOW_ROWS} a worker) against the reference.",
            f"# TYPE {METRIC_FEATURE_PSI} gauge",
        ]
        bounds = [*layout.offsets.tolist(), n]
        for f, key in enumerate(psi_keys):
            value = psi(window[bounds[f] : bounds[f + 1]], layout.reference[bounds[f] : bounds[f + 1]])
            if not math.isnan(value):  # no series before the first row
                out.append(f"{key} {value!r}")
        out += [
            f"# HELP {METRIC_DRIFT_WINDOW_ROWS} Rows in the window modelroll_feature_psi is computed over.",
            f"# TYPE {METRIC_DRIFT_WINDOW_ROWS} gauge",
            f"{METRIC_DRIFT_WINDOW_ROWS}{{{base}}} {_fmt(float(total[2 * n]))}",
        ]
        return out

    def _series(self, base: str) -> tuple[list[str], list[str], list[str]]:
        layout = self.layout
        bounds = [*layout.offsets.tolist(), layout.slots]
        bin_keys, ref_keys, psi_keys = [], [], []
        for f, name in enumerate(layout.names):
            feature = f'{base},{DRIFT_FEATURE_LABEL}="{_escape(name)}"'
            psi_keys.append(f"{METRIC_FEATURE_PSI}{{{feature}}}")
            for slot in range(bounds[f], bounds[f + 1]):
                labels = f'{feature},{DRIFT_BIN_LABEL}="{layout.labels[slot]}"'
                bin_keys.append(f"{METRIC_FEATURE_BINS}{{{labels}}}")
                ref_keys.append(f"{METRIC_FEATURE_REFERENCE}{{{labels}}}")
        return bin_keys, ref_keys, psi_keys
