"""The write fence: the operator's API client refuses every write once leadership is gone (I/O).

Every write the operator makes — server-side apply of children, deletes, the scale and status
subresources, Events — goes through one lightkube client. ``FencedClient`` is that client with
each mutating method guarded by a *write budget*: the seconds this replica may still write
(``LeaderElector.write_budget``). A budget of 0 refuses the request before anything is sent
(``NotLeader``); a positive budget also bounds the request, so a write that is still in flight
when the budget runs out is abandoned rather than allowed to land while another replica may
already lead. Reads (get, list, watch) are never fenced: a standby keeps its caches warm.

The check runs in the same task, immediately before the request is built — not in a separate
task that might run too late — so it holds even for a reconcile that resumes after the process
was paused for longer than the Lease (the elector has not run yet, but its clock has moved on).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lightkube import AsyncClient

T = TypeVar("T")

WriteBudget = Callable[[], float]  # seconds this replica may still write; <= 0: none; inf: no election

# Every public coroutine method of lightkube.AsyncClient that sends a mutating request.
# tests/unit/test_fence.py fails if lightkube gains one that is neither here nor a known read.
FENCED_METHODS = ("create", "replace", "patch", "apply", "set", "delete", "deletecollection", "exec")


class NotLeader(Exception):
    """A write refused (or abandoned) because this replica no longer holds the leader Lease."""


class FencedClient(AsyncClient):
    """A lightkube ``AsyncClient`` whose writes are refused once ``budget()`` reaches 0."""

    def __init__(self, *args: Any, budget: WriteBudget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = budget

    async def _fenced(self, what: str, send: Callable[[], Awaitable[T]]) -> T:
        budget = self._budget()
        if budget <= 0:
            raise NotLeader(f"{what} refused: this replica does not hold the leader Lease")
        if math.isinf(budget):  # leader election off: this replica always writes
            return await send()
        try:
            async with asyncio.timeout(budget) as window:
                return await send()
        except TimeoutError:
            if window.expired():
                raise NotLeader(f"{what} abandoned: the leader Lease ran out while it was in flight") from None
            raise

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("create", lambda: AsyncClient.create(self, *args, **kwargs))

    async def replace(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("replace", lambda: AsyncClient.replace(self, *args, **kwargs))

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("patch", lambda: AsyncClient.patch(self, *args, **kwargs))

    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("apply", lambda: AsyncClient.apply(self, *args, **kwargs))

    async def set(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("set", lambda: AsyncClient.set(self, *args, **kwargs))

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("delete", lambda: AsyncClient.delete(self, *args, **kwargs))

    async def deletecollection(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("deletecollection", lambda: AsyncClient.deletecollection(self, *args, **kwargs))

    async def exec(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fenced("exec", lambda: AsyncClient.exec(self, *args, **kwargs))
