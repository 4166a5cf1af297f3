"""Leader election on a coordination.k8s.io/v1 Lease, so that of several operator replicas
exactly one reconciles while the others keep warm caches and stand by.

The rules are client-go's (``k8s.io/client-go/tools/leaderelection``): the holder renews the
Lease every ``retry`` seconds; a candidate takes it over only once it has seen the same record,
unchanged, for a whole ``leaseDurationSeconds`` — measured on its own monotonic clock, so no
two nodes' clocks are ever compared; a leader that could not renew for ``renew_deadline``
seconds (shorter than the lease) stops acting before anyone else may start. Writes use the
Lease's resourceVersion, so two candidates racing for an expired Lease cannot both win.

Losing the Lease stops every write at once (docs/operator.md, "Leadership"): besides
``on_change(False)`` — which the controller answers by cancelling its in-flight reconciles —
``write_budget()`` says how many seconds this replica may still write, counted on the
monotonic clock from the start of its last successful renewal. The operator's API client
(``fence.py``) asks it before every write, so a reconcile resumed after a long pause (a stopped
process, a starved event loop) cannot write even before this elector has run again.

``decide`` and ``write_budget`` are pure; ``LeaderElector`` does the I/O (lightkube) and calls
``on_change(leading)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)

CREATE = "create"  # no Lease yet: create it, holding it
ACQUIRE = "acquire"  # someone else's Lease, released or expired: take it over
RENEW = "renew"  # ours: renew it
STANDBY = "standby"  # someone else holds it and renews it: wait


@dataclass(frozen=True)
class Record:
    """What a Lease says, as far as the election is concerned."""

    holder: str
    duration_seconds: float
    transitions: int = 0
    renew_time: str = ""  # as written (only compared for change, never against our clock)


def decide(record: Record | None, identity: str, now: float, unchanged_since: float) -> str:
    """What to do with the Lease, given when (on our monotonic clock) we first saw ``record``."""
    if record is None:
        return CREATE
    if record.holder == identity:
        return RENEW
    if not record.holder or now >= unchanged_since + record.duration_seconds:
        return ACQUIRE
    return STANDBY


def write_budget(leading: bool, renewed_at: float, renew_deadline: float, now: float) -> float:
    """Seconds a leader may still write: until ``renew_deadline`` after the start of its last
    successful renewal (``renewed_at``, monotonic); 0 once past it or when not leading.

    A candidate takes the Lease over only after seeing it unchanged for a whole lease duration,
    which is longer than ``renew_deadline``: writes that fit in the budget end before anyone
    else may start."""
    if not leading:
        return 0.0
    return max(0.0, renewed_at + renew_deadline - now)


def default_identity() -> str:
    """Unique per process: the Pod's name (or the host's) and the process id."""
    return f"{os.environ.get('MODELROLL_POD_NAME') or socket.gethostname()}_{os.getpid()}"


def in_cluster_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _record(lease: Lease | None) -> Record | None:
    if lease is None:
        return None
    spec = lease.spec or LeaseSpec()
    return Record(
        holder=spec.holderIdentity or "",
        duration_seconds=float(spec.leaseDurationSeconds or 0),
        transitions=spec.leaseTransitions or 0,
        renew_time=spec.renewTime.isoformat() if spec.renewTime else "",
    )


def _micro_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond or 1)  # always rendered with its fraction (MicroTime)


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        on_change: Callable[[bool], None],
        identity: str | None = None,
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry < renew_deadline < lease_seconds:
            raise ValueError("leader election needs retry < renew deadline < lease duration")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.on_change = on_change
        self.identity = identity or default_identity()
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry = retry
        self.clock = clock
        self.leading = False
        self._seen: Record | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    def write_budget(self) -> float:
        """Seconds this replica may still write (0: not the leader, or not renewed in time)."""
        return write_budget(self.leading, self._renewed_at, self.renew_deadline, self.clock())

    async def run(self) -> None:
        log.info("leader election: %s competes for Lease %s/%s", self.identity, self.namespace, self.name)
        while True:
            await self.try_once()
            await asyncio.sleep(self.retry)

    async def try_once(self) -> None:
        """One round: read the Lease, decide, write if we hold or take it."""
        now = self.clock()
        try:
            lease: Lease | None = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as error:
            if error.status.code != 404:
                return self._could_not_renew(now, error)
            lease = None
        except Exception as error:  # noqa: BLE001 - an unreachable API server is "could not renew"
            return self._could_not_renew(now, error)
        record = _record(lease)
        if record != self._seen:
            self._seen, self._seen_at = record, now
        action = decide(record, self.identity, now, self._seen_at)
        if action == STANDBY:
            if self.leading:
                log.warning("leader election: Lease now held by %s; standing by", record and record.holder)
            return self._set(False)
        stamp = _micro_now()
        spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_seconds),
            renewTime=stamp,
            acquireTime=stamp if action != RENEW else (lease and lease.spec and lease.spec.acquireTime) or stamp,
            leaseTransitions=(record.transitions + (action == ACQUIRE)) if record else 0,
        )
        try:
            if lease is None:
                await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
                )
            else:
                lease.spec = spec  # resourceVersion is kept: a racing writer gets 409 Conflict
                await self.client.replace(lease)
        except Exception as error:  # noqa: BLE001 - lost a race (409) or the API is unreachable
            return self._could_not_renew(now, error)
        self._renewed_at = now
        self._arm_deadline()
        if action != RENEW:
            log.info("leader election: %s %s Lease %s/%s", self.identity, action + "d", self.namespace, self.name)
        self._set(True)

    async def release(self) -> None:
        """Stop acting, then hand the Lease back so a standby need not wait for it to expire."""
        if not self.leading:
            return
        self._set(False)
        if self._deadline is not None:
            self._deadline.cancel()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                lease.spec.renewTime = _micro_now()
                await self.client.replace(lease)
                log.info("leader election: %s released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - it expires by itself anyway
            log.warning("leader election: could not release the Lease: %s", error)

    def _could_not_renew(self, now: float, error: Exception) -> None:
        log.warning("leader election: Lease %s/%s not written: %s", self.namespace, self.name, error)
        if not self.leading:
            return  # a candidate that lost a race (409) simply stays standby
        if isinstance(error, ApiError) and error.status.code == 409:
            # Someone else wrote the Lease since we read it: we can no longer show we hold it.
            log.error("leader election: the Lease changed under us (409 Conflict); stopping at once")
            self._set(False)
        elif now - self._renewed_at >= self.renew_deadline:
            log.error("leader election: could not renew for %.0f s; stopping reconciles", now - self._renewed_at)
            self._set(False)

    def _arm_deadline(self) -> None:
        """Stop leading when the renew deadline passes without a renewal, even if this round's
        successor is still stuck in a request (the API server hangs rather than fails)."""
        if self._deadline is not None:
            self._deadline.cancel()
        delay = self._renewed_at + self.renew_deadline - self.clock()
        self._deadline = asyncio.get_running_loop().call_later(max(delay, 0.0), self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.leading and self.write_budget() <= 0:
            log.error(
                "leader election: not renewed within %.0f s (a request hangs, or the process was paused); "
                "stopping reconciles",
                self.renew_deadline,
            )
            self._set(False)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("leader election: %s is %s", self.identity, "the leader" if leading else "standing by")
            self.on_change(leading)
