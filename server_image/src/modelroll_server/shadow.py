"""Paired shadow comparison: a share of this server's requests, copied to the canary, whose
answers are compared with ours, row by row (I/O: a gRPC client and a watched file).

Where the canary is and what share to copy come from a small JSON file (``--shadow-config``,
format in ``modelroll_contract``), read again whenever it changes: the operator mounts it from
a ConfigMap, which the kubelet updates in place, so starting, retargeting or ending a shadow
phase changes neither the stable Pods nor their template, and restarts nothing.

Our own client comes first. A copy is taken only after its request was answered; it waits in
a queue bounded in bytes, and when the queue is full it is dropped and counted, never waited
for. Copies that wait together go to the canary's gRPC port in one call, and the labels (for
classifiers) or the values (for regressors) the canary predicted are compared, row by row,
with the ones our clients got.
A canary that errs, is slow or is unreachable is counted as failed and affects nothing else.
The counts are this server's metrics (metrics.py), labelled with the canary's version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
import numpy as np
import orjson
from grpc import aio
from modelroll_contract import SHADOW_CONFIG_KEYS

from .batching import Job
from .loading import LoadedModel
from .metrics import SHADOW_OUTCOMES, Metrics
from .proto import inference_pb2_grpc as pb_grpc
from .protocol_grpc import build_predict_request, read_predict_output

log = logging.getLogger("modelroll_server.shadow")

COMPARED, DROPPED, FAILED = (SHADOW_OUTCOMES.index(o) for o in ("compared", "dropped", "failed"))
POLL_SECONDS = 1.0  # how often the file is checked for a change (the kubelet's own lag is longer)
SENDERS = 8  # calls in flight to the canary at once, per worker
BATCH_ROWS = 256  # rows of waiting copies one call may carry
GATHER_SECONDS = 0.01  # how long a call waits for more copies to join it (no client waits on it)
TIMEOUT_SECONDS = 5.0  # a canary slower than this for one copy counts as failed
MAX_TARGET_LENGTH = 253 + 6  # a DNS name and a port
MAX_VERSION_LENGTH = 63  # spec.model.version: a label value


class ShadowTarget(NamedTuple):
    target: str  # the canary's gRPC address, HOST:PORT
    percent: float  # of requests copied, 0-100
    version: str  # the canary's model version: the metrics' label


class ShadowConfigError(ValueError):
    pass


def parse_config(raw: bytes) -> ShadowTarget | None:
    """The target in a shadow config file's bytes (None: empty, shadowing off)."""
    if not raw.strip():
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ShadowConfigError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ShadowConfigError("must be a JSON object")
    target, percent, version = (doc.get(key) for key in SHADOW_CONFIG_KEYS)
    if not isinstance(target, str) or not 0 < len(target) <= MAX_TARGET_LENGTH or ":" not in target:
        raise ShadowConfigError(f"'target' must be the canary's gRPC address HOST:PORT, got {target!r}")
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        raise ShadowConfigError(f"'percent' must be a number from 0 to 100, got {percent!r}")
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_LENGTH:
        raise ShadowConfigError(f"'version' must be the canary's model version, got {version!r}")
    return ShadowTarget(target, float(percent), version) if percent > 0 else None


class _Copy(NamedTuple):
    X: np.ndarray
    ours: np.ndarray  # what our client got: labels (classifiers) or values (regressors)
    target: ShadowTarget


class Shadow:
    """One worker's shadowing: the watched file, the bounded queue, the senders."""

    def __init__(self, path: str, model_name: str, model: LoadedModel, metrics: Metrics,
                 queue_bytes: int) -> None:  # fmt: skip
        self.path = path
        self.model_name = model_name
        self.model = model
        self.metrics = metrics
        self.queue_bytes = queue_bytes
        self.queued_bytes = 0
        self.queue: asyncio.Queue[_Copy] = asyncio.Queue()
        self.target: ShadowTarget | None = None
        self._stat: tuple[int, int, int] | None = None
        self._channel: aio.Channel | None = None
        self._stub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(SENDERS)

    # --- the target, from the watched file --------------------------------------------------
    def poll(self) -> None:
        """Re-read the file if it changed (the kubelet swaps a symlink: a new inode)."""
        try:
            st = os.stat(self.path)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key == self._stat:
            return
        self._stat = key
        target = None
        if key is not None:
            try:
                with open(self.path, "rb") as f:
                    target = parse_config(f.read(64 * 1024))
            except (OSError, ShadowConfigError) as e:
                log.warning("shadow config %s: %s; not shadowing", self.path, e)
        self._retarget(target)

    def _retarget(self, target: ShadowTarget | None) -> None:
        if target == self.target:
            return
        if self._channel is not None and (target is None or self.target is None or target.target != self.target.target):
            channel, self._channel, self._stub = self._channel, None, None
            asyncio.get_running_loop().create_task(channel.close(grace=None))
        if target is not None and self._channel is None:
            self._channel = aio.insecure_channel(target.target)
            self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.target = target
        self.metrics.shadow_target(target.version if target else None)
        log.info("shadowing %s", f"{target.percent:g}% of requests to {target.target} ({target.version})"
                 if target else "off")  # fmt: skip

    # --- taking copies (on the event loop, after our clients were answered) -------------------
    def after_batch(self, jobs: Sequence[Job], pred: np.ndarray | None, proba: np.ndarray | None) -> None:
        """The batcher's hook: copy each answered job with the target's probability."""
        target = self.target
        if target is None:
            return
        ours: np.ndarray | None = None
        start = 0
        for job in jobs:
            end = start + job.n
            if random.random() * 100.0 < target.percent:
                if ours is None:
                    ours = self._our_answers(pred, proba)
                self._offer(_Copy(job.X, ours[start:end], target))
            start = end

    def _our_answers(self, pred: np.ndarray | None, proba: np.ndarray | None) -> np.ndarray:
        if pred is not None:
            return pred
        assert proba is not None and self.model.classes is not None  # a job wanted one of them
        labels: np.ndarray = np.asarray(self.model.classes)[proba.argmax(axis=1)]
        return labels

    def _offer(self, copy: _Copy) -> None:
        size = copy.X.nbytes
        if self.queued_bytes + size > self.queue_bytes:
            self.metrics.shadow_outcome(DROPPED)
            return
        self.queued_bytes += size
        self.metrics.shadow_pending(1)
        self.queue.put_nowait(copy)

    # --- sending and comparing ----------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.poll()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._collect())]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._calls]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._channel is not None:
            await self._channel.close(grace=None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.poll()

    def _counts_for(self, copy: _Copy) -> bool:
        """The copy was taken for the canary we count against now (a new share alone keeps it)."""
        now = self.target
        return now is not None and (now.target, now.version) == (copy.target.target, copy.target.version)

    async def _collect(self) -> None:
        """Gather waiting copies into calls: few large calls cost the stable far less than one
        per request, and they cost the canary less too (its batcher takes them whole)."""
        loop = asyncio.get_running_loop()
        while True:
            copies = [await self.queue.get()]
            await asyncio.sleep(GATHER_SECONDS)  # the copies of the next moment join this call
            rows = copies[0].X.shape[0]
            while rows < BATCH_ROWS and not self.queue.empty():
                copies.append(self.queue.get_nowait())
                rows += copies[-1].X.shape[0]
            await self._slots.acquire()  # at most SENDERS calls in flight; meanwhile the queue fills
            self.queued_bytes -= sum(c.X.nbytes for c in copies)
            call = loop.create_task(self._call(copies))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, copies: list[_Copy]) -> None:
        try:
            await self._send_batch([c for c in copies if self._counts_for(c)])
        finally:
            self.metrics.shadow_pending(-len(copies))
            self._slots.release()

    async def _send_batch(self, copies: list[_Copy]) -> None:
        """One call to the canary for ``copies`` (those retargeted meanwhile are left out:
        their pairs belong to no one's count)."""
        if not copies or self._stub is None:
            return
        ours = np.concatenate([c.ours for c in copies]) if len(copies) > 1 else copies[0].ours
        X = np.concatenate([c.X for c in copies]) if len(copies) > 1 else copies[0].X
        try:
            resp = await self._stub.ModelInfer(build_predict_request(self.model_name, X), timeout=TIMEOUT_SECONDS)
            theirs = read_predict_output(resp)
            if len(theirs) != len(ours):
                raise ValueError(f"{len(theirs)} predictions for {len(ours)} rows")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an error, a timeout or an odd answer: failed copies, never a crashed sender
            if self._counts_for(copies[0]):
                self.metrics.shadow_outcome(FAILED, len(copies))
            level = logging.DEBUG if isinstance(e, (grpc.RpcError, ValueError)) else logging.WARNING
            log.log(level, "shadow copy to %s failed: %s: %s", copies[0].target.target, type(e).__name__, e)
            return
        if self._counts_for(copies[0]):  # still the same canary: count the pairs
            self._compare(ours, theirs, len(copies))

    def _compare(self, ours: np.ndarray, theirs: np.ndarray, requests: int) -> None:
        if self.model.classes is not None:
            if ours.dtype.kind in "biuf" and theirs.dtype.kind in "biuf":
                same = ours == theirs
            else:
                same = _labels(ours) == _labels(theirs)
            agree = int(np.count_nonzero(same))
            self.metrics.shadow_rows(agree, len(ours) - agree)
        else:
            diffs = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
            self.metrics.shadow_differences(diffs)
        self.metrics.shadow_outcome(COMPARED, requests)


def _labels(values: np.ndarray) -> np.ndarray:
    """Labels as text, so ours (numpy values) and the canary's (decoded from the wire) compare
    equal when they are the same label: 1 and 1, b"yes" and "yes"."""
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.tolist()])
