"""Live accuracy from late labels: a window of recent predictions shared by every worker, and
the feedback endpoint that matches ground truth to it (shared memory; no network I/O).

**The window.** An anonymous shared mapping, created before the workers fork (like the
metrics'), with one region per worker: each worker writes only its own region, on its event
loop, and any worker reads all of them. A region holds

- a ring of the last ``rows`` predicted values (the class index for classifiers, the value for
  regressors) and the count of rows ever written to it, so a request's rows are intact exactly
  while fewer than ``rows`` rows were written after them: the window is the most recent rows,
  overwritten oldest first;
- an index of requests, keyed by a 64-bit hash of the request id, set-associative (``WAYS``
  entries per bucket, the oldest replaced first), each entry naming where its rows start in the
  ring, how many there are and when they were predicted.

One entry per request rather than per row keeps recording O(1) per request on the hot path (a
few stores, the rows copied as one slice). The hash is CPython's own ``hash(str)``: workers
fork from one process, so they share its secret and agree on every id's hash.

Writes and reads race only across processes; the writer bumps the row count before it
overwrites rows and invalidates an index entry before rewriting it, and a reader checks the
entry and the count again after copying the rows, so a lookup never returns rows that were
being overwritten (it sees the request as gone). A labelled request is marked consumed (by
whichever worker took the label: a write of its own start position, which no later request in
that slot can have), so a repeated label counts as unmatched instead of twice.
"""

from __future__ import annotations

import mmap
import time
from typing import Any, NamedTuple

import numpy as np

from .errors import InvalidInput, NotFound
from .loading import LoadedModel
from .metrics import Metrics
from .protocol import loads

# Index entries per bucket, and entries per row of the ring: a request leaves the index early
# only when WAYS newer ones share its bucket. At 2 entries a row and 8 ways, a request as old
# as the whole window is still indexed with probability 0.95 (Poisson, mean 4, below 8), one
# half as old with 0.999; an index of one entry a row and 4 ways would keep 0.43 of the oldest.
WAYS = 8
ENTRIES_PER_ROW = 2
MIN_BUCKETS = 64  # small windows (tests) get an index collisions cannot thin
MAX_ITEMS = 10_000  # ids per feedback request: bounds the time one request holds the event loop
MAX_ID_IN_MESSAGE = 120


class Entry(NamedTuple):
    region: int
    slot: int
    start: int
    values: np.ndarray  # the predicted class indexes or values, one per row


class Window:
    """The shared window: one region per worker; ``use_region`` in each worker after fork."""

    # int64 columns of the index, one value per entry; PLACE is start << COUNT_BITS | rows
    KEY, PLACE, TIME, CONSUMED = range(4)
    COUNT_BITS = 20
    MAX_COUNT = (1 << COUNT_BITS) - 1

    def __init__(self, rows: int, regions: int, max_age_seconds: float) -> None:
        self.rows = rows
        self.regions = max(1, regions)
        self.max_age_ns = int(max_age_seconds * 1e9)
        self.buckets = max(MIN_BUCKETS, -(-rows * ENTRIES_PER_ROW // WAYS)) if rows else 0
        self.slots = self.buckets * WAYS
        # per region, int64: [rows written][4 columns of `slots` entries]
        self.ints = 1 + 4 * self.slots
        size = self.regions * (self.ints + rows) * 8
        self._mm = mmap.mmap(-1, max(size, 8))
        ints_bytes = self.regions * self.ints * 8
        self._i = np.frombuffer(self._mm, dtype=np.int64, count=self.regions * self.ints).reshape(self.regions, -1)
        self._ring = np.frombuffer(self._mm, dtype=np.float64, count=self.regions * rows,
                                   offset=ints_bytes).reshape(self.regions, rows)  # fmt: skip
        self._cols = self._i[:, 1:].reshape(self.regions, 4, self.slots)
        self.region = 0
        self.use_region(0)

    def use_region(self, index: int) -> None:
        """This process writes region ``index`` (a replacement worker continues its predecessor's)."""
        self.region = index
        start = index * self.ints * 8
        self._imv = memoryview(self._mm)[start : start + self.ints * 8].cast("q")
        ring_start = self.regions * self.ints * 8 + index * self.rows * 8
        self._fmv = memoryview(self._mm)[ring_start : ring_start + self.rows * 8].cast("d")
        self._own_ring = self._ring[index]
        self._seq = self._imv[0]
        # the way each bucket writes next: only the writer needs it, so it is a plain list (a
        # replacement worker starts over at way 0, which only reorders one round of evictions)
        self._next_way = [0] * self.buckets

    # --- the hot path: a few stores, on the event loop ------------------------------------
    def record(self, request_id: str, values: Any) -> None:
        """Remember ``values`` (a list or 1-D array, one per row) as request ``request_id``'s."""
        n = len(values)
        if n == 1:
            self.record_one(request_id, values[0])
            return
        rows = self.rows
        if n == 0 or n > rows or n > self.MAX_COUNT:
            return
        seq = self._seq
        self._seq = seq + n
        self._imv[0] = seq + n  # first: a reader then sees the rows about to be overwritten as gone
        pos = seq % rows
        if pos + n <= rows:
            self._own_ring[pos : pos + n] = values
        else:
            cut = rows - pos
            self._own_ring[pos:] = values[:cut]
            self._own_ring[: n - cut] = values[cut:]
        self._index(hash(request_id) | 1, seq << self.COUNT_BITS | n)

    def record_one(self, request_id: str, value: float) -> None:
        """``record`` of one row, the common request: five stores (``_index`` inlined)."""
        imv = self._imv
        seq = self._seq
        self._seq = seq + 1
        imv[0] = seq + 1
        self._fmv[seq % self.rows] = value
        key = hash(request_id) | 1
        bucket = key % self.buckets
        way = self._next_way[bucket]
        self._next_way[bucket] = (way + 1) % WAYS
        at = 1 + bucket * WAYS + way
        imv[at] = key
        imv[at + self.slots] = seq << self.COUNT_BITS | 1
        imv[at + 2 * self.slots] = time.monotonic_ns()

    def _index(self, key: int, place: int) -> None:
        # The key first, then where the rows are: a reader that matched the previous key sees
        # the key change when it checks again, and never takes the new place for the old request.
        bucket = key % self.buckets
        way = self._next_way[bucket]
        self._next_way[bucket] = (way + 1) % WAYS  # a region is written in time order: FIFO is oldest-first
        at = 1 + bucket * WAYS + way
        imv = self._imv
        imv[at] = key
        imv[at + self.slots] = place
        imv[at + 2 * self.slots] = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process

    # --- lookups (the feedback endpoint, any worker) ---------------------------------------
    def lookup(self, ids: list[str]) -> tuple[list[Entry | None], int]:
        """For each id, its newest unlabelled request still in the window (else None), and how
        many ids were found only already labelled."""
        found: list[Entry | None] = [None] * len(ids)
        if not self.rows or not ids:
            return found, 0
        keys = np.fromiter((hash(i) | 1 for i in ids), dtype=np.int64, count=len(ids))
        slots = (keys % self.buckets)[:, None] * WAYS + np.arange(WAYS)
        cols = self._cols
        regions, items, ways = np.nonzero(cols[:, self.KEY][:, slots] == keys[None, :, None])
        now = time.monotonic_ns()
        best: dict[int, tuple[int, int, int, int]] = {}  # item -> (time, region, slot, place)
        labelled: set[int] = set()
        for r, i, w in zip(regions.tolist(), items.tolist(), ways.tolist(), strict=True):
            slot = int(slots[i, w])
            place, t, consumed = (int(cols[r, c, slot]) for c in (self.PLACE, self.TIME, self.CONSUMED))
            start = place >> self.COUNT_BITS
            if now - t > self.max_age_ns or int(self._i[r, 0]) - start > self.rows:
                continue
            if consumed == start + 1:
                labelled.add(i)
                continue
            if i not in best or t > best[i][0]:
                best[i] = (t, r, slot, place)
        for i, (_, r, slot, place) in best.items():
            start, count = place >> self.COUNT_BITS, place & self.MAX_COUNT
            pos = start % self.rows
            ring = self._ring[r]
            if pos + count <= self.rows:
                values = ring[pos : pos + count].copy()
            else:
                values = np.concatenate([ring[pos:], ring[: pos + count - self.rows]])
            # still the same request, and none of its rows overwritten while they were copied
            if (int(cols[r, self.KEY, slot]) == int(keys[i]) and int(cols[r, self.PLACE, slot]) == place
                    and int(self._i[r, 0]) - start <= self.rows):  # fmt: skip
                found[i] = Entry(r, slot, start, values)
        return found, sum(1 for i in labelled if found[i] is None)

    def consume(self, entry: Entry) -> None:
        """Mark a labelled request: a second label for it is unmatched."""
        self._cols[entry.region, self.CONSUMED, entry.slot] = entry.start + 1


# --- process-wide: the window is created before forking, like the metrics ------------------
_shared: Window | None = None


def share(rows: int, regions: int, max_age_seconds: float) -> None:
    """Create the window every worker of this server will share (call before forking)."""
    global _shared
    _shared = Window(rows, regions, max_age_seconds)


def use_region(index: int) -> None:
    """In a forked worker: write region ``index`` of the shared window."""
    if _shared is not None:
        _shared.use_region(index)


def window(rows: int, max_age_seconds: float) -> Window:
    """The shared window, or one of this process's own when none was shared (tests, benchmarks)."""
    return _shared if _shared is not None else Window(rows, 1, max_age_seconds)


# --- the feedback endpoint -------------------------------------------------------------------
class Parsed(NamedTuple):
    ids: list[str]
    counts: list[int]  # labels per id
    labels: np.ndarray  # every id's labels, concatenated: class indexes (-1: no such class) or values
    items: list[dict[str, Any]]  # as sent: what is forwarded to another Pod (feedback_forward.py)


class Feedback:
    """POST .../feedback: ground truth for earlier requests, counted against their predictions."""

    def __init__(self, window: Window, model: LoadedModel, metrics: Metrics) -> None:
        self.window = window
        self.model = model
        self.metrics = metrics
        classes = model.classes
        self.classifier = classes is not None
        self.class_index: dict[Any, int] = {}
        self._sorted_classes: np.ndarray | None = None
        self._class_order: np.ndarray | None = None
        self._label_kind = "number"
        if classes is not None:
            values = classes.tolist()
            self.class_index = {v: i for i, v in enumerate(values)}
            if all(isinstance(v, str) for v in values):
                self._label_kind = "string"
            elif all(isinstance(v, bool) for v in values):
                self._label_kind = "boolean"
            elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                self._label_kind = "any"  # mixed labels: matched one by one
            if self._label_kind in ("string", "number"):
                arr = np.asarray(values, dtype=str if self._label_kind == "string" else np.float64)
                self._class_order = np.argsort(arr, kind="stable")
                self._sorted_classes = arr[self._class_order]

    # --- recording predictions (before the client is answered) ------------------------------
    def record(self, request_id: str, pred: np.ndarray | None, proba: np.ndarray | None) -> None:
        if self.classifier:
            if pred is not None:
                ci = self.class_index
                if len(pred) == 1:
                    self.window.record_one(request_id, ci.get(pred.item(), -1))
                    return
                if len(pred) <= 16 or self._sorted_classes is None:
                    values: Any = [ci.get(v, -1) for v in pred.tolist()]
                else:  # a large request: one vectorized lookup rather than a Python loop
                    values = self._indexes(pred.astype(self._sorted_classes.dtype))
            elif proba is not None:
                values = proba.argmax(axis=1)
            else:
                return
        elif pred is not None and pred.dtype.kind in "biuf":
            values = pred.ravel() if len(pred) > 1 else pred.tolist()
        else:
            return
        self.window.record(request_id, values)

    # --- the endpoint ---------------------------------------------------------------------
    def parse(self, body: bytes) -> Parsed:
        """The ids and labels of a feedback body (InvalidInput naming the problem); any thread."""
        doc = loads(body)
        items = doc if isinstance(doc, list) else [doc]
        if not items:
            raise InvalidInput('no feedback: send {"id": ..., "labels": [...]} or a list of them')
        if len(items) > MAX_ITEMS:
            raise InvalidInput(f"{len(items)} ids in one request; send at most {MAX_ITEMS}")
        ids: list[str] = []
        counts: list[int] = []
        flat: list[Any] = []
        kept: list[dict[str, Any]] = []
        for n, item in enumerate(items):
            where = f"item {n}: " if isinstance(doc, list) else ""
            if not isinstance(item, dict):
                raise InvalidInput(f'{where}each feedback must be an object {{"id": ..., "labels": [...]}}')
            rid, labels = item.get("id"), item.get("labels")
            if not isinstance(rid, str) or not rid:
                raise InvalidInput(f"{where}'id' must be the non-empty id of an earlier inference request")
            if not isinstance(labels, list) or not labels:
                raise InvalidInput(f"{where}'labels' must be a non-empty list, one label per row of the request")
            ids.append(rid)
            counts.append(len(labels))
            flat.extend(labels)
            kept.append(item)
        return Parsed(ids, counts, self._labels(flat), kept)

    def _labels(self, flat: list[Any]) -> np.ndarray:
        kind = self._label_kind if self.classifier else "number"
        if kind == "any":
            bad = next((v for v in flat if isinstance(v, (list, dict)) or v is None), 0)
            if bad != 0:
                raise InvalidInput(f"'labels' must hold class labels, got {_short(bad)}")
            return np.fromiter((self.class_index.get(v, -1) for v in flat), dtype=np.float64, count=len(flat))
        try:
            arr = np.asarray(flat)
        except (ValueError, TypeError):
            arr = np.asarray([None])  # ragged or odd: refused below
        want = {"number": "iuf", "string": "U", "boolean": "b"}[kind]
        if arr.ndim != 1 or arr.dtype.kind not in want:
            what = {"number": "numbers", "string": "strings (this model's classes are strings)",
                    "boolean": "true/false"}[kind]  # fmt: skip
            if self.classifier and kind == "number":
                what = "numbers (this model's classes are numbers)"
            raise InvalidInput(f"'labels' must be {what}, one per row")
        if kind == "number":
            arr = arr.astype(np.float64)
            if not np.isfinite(arr).all():
                raise InvalidInput("'labels' must be finite numbers")
        if not self.classifier:
            return arr
        if kind == "boolean":
            return np.fromiter((self.class_index.get(v, -1) for v in arr.tolist()), dtype=np.float64,
                               count=len(arr))  # fmt: skip
        return self._indexes(arr.astype(str) if kind == "string" else arr)

    def _indexes(self, labels: np.ndarray) -> np.ndarray:
        """Each label's class index (-1: not a class of the model), as float64."""
        assert self._sorted_classes is not None and self._class_order is not None
        pos = np.minimum(np.searchsorted(self._sorted_classes, labels), len(self._sorted_classes) - 1)
        hit = self._sorted_classes[pos] == labels
        return np.where(hit, self._class_order[pos], -1).astype(np.float64)

    def apply(self, parsed: Parsed, at: list[int]) -> Tally:
        """Match and count the ids at positions ``at`` of ``parsed`` against this Pod's window
        (on the event loop: it counts in this worker's metrics); InvalidInput (400) when a label
        count is wrong, and then nothing is counted or consumed."""
        found, labelled = self.window.lookup([parsed.ids[i] for i in at])
        offsets = np.concatenate([[0], np.cumsum(parsed.counts)])
        for i, entry in zip(at, found, strict=True):
            if entry is not None and len(entry.values) != parsed.counts[i]:
                raise InvalidInput(f"id {_short(parsed.ids[i])}: the request had {len(entry.values)} rows, "
                                   f"got {parsed.counts[i]} labels")  # fmt: skip
        matched = [(i, e) for i, e in zip(at, found, strict=True) if e is not None]
        unmatched = [i for i, e in zip(at, found, strict=True) if e is None]
        if matched:
            predicted = np.concatenate([e.values for _, e in matched])
            truth = np.concatenate([parsed.labels[offsets[i] : offsets[i + 1]] for i, _ in matched])
            if self.classifier:
                correct = int(np.count_nonzero((predicted == truth) & (truth >= 0)))
                self.metrics.feedback_rows(correct=correct, incorrect=len(truth) - correct)
            else:
                self.metrics.feedback_errors(np.abs(predicted - truth))
            for _, entry in matched:
                self.window.consume(entry)
        self.metrics.feedback_rows(unmatched=sum(parsed.counts[i] for i in unmatched))
        return Tally(len(matched), unmatched, labelled)


class Tally(NamedTuple):
    """What one Pod made of the ids it was given."""

    matched: int
    unmatched: list[int]  # positions in the request of the ids not matched
    labelled: int  # of those, how many were found but already labelled


def answer(ids: list[str], tally: Tally, unreachable: dict[int, str] | None = None) -> dict[str, Any]:
    """The client's answer for every id of its request, however many Pods counted them: 200's
    counts when any matched, else NotFound (404) naming the first id and why. ``unreachable``:
    positions whose Pod did not count them, with why (they are in ``tally.unmatched`` too)."""
    unreachable = unreachable or {}
    unmatched = sorted(tally.unmatched)
    if not tally.matched:
        rid = _short(ids[0])
        if 0 in unreachable:
            why = f"the Pod that answered it did not count it ({unreachable[0]})"
        elif tally.labelled == len(ids):
            why = "it was already labelled"
        else:
            why = "unknown, expired or overwritten by newer predictions"
        if len(ids) == 1:
            raise NotFound(f"no prediction with id {rid} in the feedback window: {why}")
        raise NotFound(f"none of the {len(ids)} ids has a prediction in the feedback window "
                       f"(the first: {rid}): {why}")  # fmt: skip
    out: dict[str, Any] = {"matched": tally.matched, "unmatched": len(unmatched)}
    if unmatched:
        out["unmatched_ids"] = [ids[i] for i in unmatched]
    if unreachable:
        out["unreachable"] = len(unreachable)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_ID_IN_MESSAGE else text[: MAX_ID_IN_MESSAGE - 3] + "..."
