"""The reconcile loop: a keyed work queue, observe -> plan -> apply -> status (I/O glue).

Like controller-runtime's workqueue: a key is queued at most once, never processed by two
workers at once, and re-queued if it changed while being processed. Watch events, a
periodic resync and the planner's ``requeue_after`` all feed the same queue.

Leadership (docs/operator.md, "Leadership"): workers take keys only while this replica leads;
``lead(False)`` cancels every reconcile in flight, and the API client's write fence
(``fence.py``) refuses any write that would still be attempted. A key cut short is queued
again for the next time this replica leads.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from . import metrics
from .analysis.prometheus import query_due_measurement
from .cache import Cache, Key
from .capabilities import needs_gateway_api, plan_waiting_for_gateway_api
from .children import Owner, build_feedback_secret
from .fence import NotLeader
from .kube import Kube
from .planner import Plan, Subject, plan, timestamp
from .settings import Settings

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
# Children change in bursts (a Deployment, its ReplicaSet and each Pod report in turn); waiting
# this long before reacting folds a burst into one reconcile and one status write.
CHILD_DEBOUNCE_SECONDS = 0.25


class Controller:
    def __init__(self, settings: Settings, kube: Kube, cache: Cache) -> None:
        self.settings = settings
        self.kube = kube
        self.cache = cache
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._soon: set[Key] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()  # reconciles running now
        self._leading = asyncio.Event()  # workers take keys only while set (leader election)
        self._leading.set()
        # Whether the Gateway API's HTTPRoute is served (discovery.py); None: not known yet.
        self.gateway_api: Callable[[], bool | None] = lambda: True

    # --- queue ------------------------------------------------------------------------------
    def enqueue(self, key: Key) -> None:
        if key in self._queued:
            return
        self._queued.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def enqueue_soon(self, key: Key) -> None:
        """Queue after the debounce delay, once per burst of child events."""
        if key in self._soon:
            return
        self._soon.add(key)

        def fire() -> None:
            self._soon.discard(key)
            self.enqueue(key)

        asyncio.get_running_loop().call_later(CHILD_DEBOUNCE_SECONDS, fire)

    def enqueue_after(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(delay, 0.0), self.enqueue, key)

    async def start(self) -> None:
        for _ in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker()))
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._inflight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def lead(self, leading: bool) -> None:
        """Start or stop reconciling. Losing leadership cancels every reconcile in flight at
        once (their writes would race the new leader's); a new leader re-plans every cached object."""
        if not leading:
            self._leading.clear()
            for task in list(self._inflight):
                task.cancel("leadership lost")
            if self._inflight:
                log.warning("leadership lost: cancelled %d reconcile(s) in flight", len(self._inflight))
            return
        self._leading.set()
        for key in list(self.cache.parents):
            self.enqueue(key)

    def enqueue_needing_gateway_api(self) -> None:
        """Queue every object that routes through the Gateway API (it appeared or went away)."""
        for key, body in list(self.cache.parents.items()):
            if needs_gateway_api(body.get("spec") or {}):
                self.enqueue(key)

    def healthy(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for key in list(self.cache.parents):
                self.enqueue(key)

    async def _worker(self) -> None:
        while True:
            await self._leading.wait()
            key = await self._queue.get()
            if not self._leading.is_set():  # leadership lost while waiting: leave it queued
                self._queue.put_nowait(key)
                continue
            self._queued.discard(key)
            self._processing.add(key)
            task = asyncio.create_task(self._reconcile_safely(key))
            self._inflight.add(task)
            try:
                await asyncio.wait([task])  # returns when the reconcile ends, cancelled or not
            finally:
                self._inflight.discard(task)
                task.cancel()  # no-op once done; the worker itself is being stopped otherwise
                self._processing.discard(key)
                if task.cancelled():
                    self._queued.add(key)  # cut short: do it again when (and where) this replica leads
                if key in self._queued:
                    self._queue.put_nowait(key)

    async def _reconcile_safely(self, key: Key) -> None:
        started = time.perf_counter()
        try:
            changed = await self.reconcile(key)
        except NotLeader as error:  # not a failure of the object: no backoff, a new leader re-plans it
            log.warning("reconcile of %s/%s stopped: %s", *key, error)
            metrics.RECONCILES.labels("not_leader").inc()
        except Exception as error:  # noqa: BLE001 - one object's failure must not stop the loop
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(2 ** (failures - 1), MAX_BACKOFF)
            log.warning("reconcile of %s/%s failed (retry in %.0fs): %s", *key, delay, error)
            metrics.RECONCILES.labels("error").inc()
            self.enqueue_after(key, delay)
        else:
            self._failures.pop(key, None)
            metrics.RECONCILES.labels("changed" if changed else "unchanged").inc()
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    # --- one reconcile --------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> bool:
        """Bring one ModelDeployment's children and status in line; True if anything was written."""
        body = self.cache.parents.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False  # owner references let the garbage collector remove the children
        meta = body["metadata"]
        subject = Subject(
            owner=Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"]),
            generation=meta.get("generation", 1),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
        )
        now = datetime.now(UTC)
        if needs_gateway_api(subject.spec):
            served = self.gateway_api()
            if served is None:
                return False  # not known yet: queued again as soon as discovery answers
            if not served:
                waiting = plan_waiting_for_gateway_api(subject, now, self.settings.discovery_seconds)
                await self._execute(subject, waiting, timestamp(now))
                return waiting.writes > 0
        observed = self.cache.observed(key)
        # A due analysis measurement is the one I/O the planner needs beyond the cache: run it
        # first and hand the raw numbers over, so the decision itself stays pure.
        measurement = await query_due_measurement(
            subject.spec, meta["namespace"], meta["name"], subject.status, now, self.settings.prometheus_url
        )
        if measurement is not None:
            observed = replace(observed, measurement=measurement)
        result = plan(subject, observed, now, self.settings.server_image)
        await self._execute(subject, result, timestamp(now))
        if result.requeue_after is not None:
            self.enqueue_after(key, result.requeue_after)
        return result.writes > 0

    async def _execute(self, subject: Subject, result: Plan, now: str) -> None:
        owner = subject.owner
        if result.create_feedback_secret:  # first: the Pods about to be applied read it
            secret = build_feedback_secret(owner, secrets.token_urlsafe(32))
            await self.kube.create_once(secret)
            self.cache.put_child("Secret", {"metadata": secret["metadata"]})  # the key stays out of memory
        applied = await asyncio.gather(*(self.kube.apply(obj) for obj in result.apply))
        for obj in applied:
            self.cache.put_child(obj["kind"], obj)
        for ref in result.delete:
            await self.kube.delete(owner.namespace, ref)
        for name, replicas in result.scale:
            await self.kube.scale(owner.namespace, name, replicas)
        if result.status is not None:
            updated = await self.kube.patch_status(owner, result.status, subject.status)
            self.cache.put_parent(updated)
            log.info(
                "%s/%s: %s — %s", owner.namespace, owner.name, result.status.get("phase"), result.status.get("message")
            )
        for event in result.events:
            await self.kube.emit_event(owner, event, now)
