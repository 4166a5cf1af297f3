"""Labels for predictions another Pod made, sent on to that Pod (I/O: HTTP to other Pods).

The window of predictions is per Pod (feedback.py), while a label sent through the model's
Service lands on any Pod of any track. An id the server made names its Pod in a signed route
(feedback_ids.py); a Pod that gets labels for ids naming another Pod sends them there, one
request per Pod, all at once, and folds the answers into its own. Ids naming this Pod, ids that
name no Pod (a client's own ids, a standalone server's) and ids whose route does not verify are
looked up here: a forged route is never followed, so no request can aim a server elsewhere.

The request goes to the other Pod's ``FORWARDED_PATH``, which matches the labels there and is
never forwarded again (so two Pods cannot bounce a label between them), and answers 200 with
its counts even when nothing matched. A Pod that cannot be reached, errs or does not answer
within ``TIMEOUT_SECONDS`` (it was replaced, say) leaves its labels unmatched, counted here
and said in the answer (``unreachable``); the client never sees a 5xx for it.

The HTTP client is the standard library's (http.client) on a few threads of its own rather
than the default executor: a target that accepts and never answers holds a thread until the
timeout, and must not hold the threads that decode large inference bodies.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import orjson

from .feedback import Parsed, Tally
from .feedback_ids import Route, RouteCodec, route_part
from .metrics import Metrics

log = logging.getLogger("modelroll_server.feedback")

FORWARDED_PATH = "/v2/models/{name}/feedback/forwarded"
TIMEOUT_SECONDS = 2.0  # connect, send and answer; Pods of one Service answer in milliseconds
THREADS = 8  # per worker: Pods asked at once (an unreachable one holds a thread until the timeout)
MAX_ANSWER_BYTES = 1 << 20  # an answer lists the positions unmatched: at most 10,000 small numbers


class Split(NamedTuple):
    local: list[int]  # positions of the ids looked up in this Pod's window
    remote: dict[Route, list[int]]  # the Pod each other id names -> its ids' positions

    @classmethod
    def all_local(cls, ids: list[str]) -> Split:
        """Every id looked up here (no route can be followed, or the labels were forwarded)."""
        return cls(list(range(len(ids))), {})


class Forwarded(NamedTuple):
    """What the other Pods made of the ids sent to them."""

    tally: Tally
    unreachable: dict[int, str]  # position -> why its Pod did not count it (unreachable, an error)


class Router:
    """Which Pod each id belongs to, and sending labels to the others (one per worker)."""

    def __init__(self, codec: RouteCodec | None, own: Route | None, model_name: str, metrics: Metrics) -> None:
        self.codec = codec
        self.own = own
        self.own_part = codec.encode(own) if codec and own else None
        self.path = FORWARDED_PATH.format(name=urllib.parse.quote(model_name, safe=""))
        self.metrics = metrics
        self._pool: ThreadPoolExecutor | None = None  # made on first use: after the fork, in the worker

    def split(self, ids: list[str]) -> Split:
        """Local and remote ids (pure, any thread): a route is verified once per request."""
        if self.codec is None:  # no key: no route can be verified, so none is followed
            return Split.all_local(ids)
        local: list[int] = []
        remote: dict[Route, list[int]] = {}
        verified: dict[str, Route | None] = {}
        for i, rid in enumerate(ids):
            part = route_part(rid)
            if part is None or part == self.own_part:
                local.append(i)
                continue
            if part not in verified:
                verified[part] = self.codec.decode(part)
            route = verified[part]
            if route is None or route == self.own:  # forged: looked up here, where it is not
                local.append(i)
            else:
                remote.setdefault(route, []).append(i)
        return Split(local, remote)

    def forwarded_answer(self, tally: Tally) -> dict[str, Any]:
        """What ``FORWARDED_PATH`` answers: positions rather than ids, and always 200."""
        return {"matched": tally.matched, "unmatched_at": tally.unmatched, "labelled": tally.labelled}

    async def forward(self, parsed: Parsed, remote: dict[Route, list[int]]) -> Forwarded:
        """Ask every Pod named at once; on the event loop (it counts in this worker's metrics)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="feedback-forward")
        outcomes = await asyncio.gather(*(self._ask(parsed, route, at) for route, at in remote.items()))
        matched, labelled = 0, 0
        unmatched: list[int] = []
        unreachable: dict[int, str] = {}
        for (route, at), outcome in zip(remote.items(), outcomes, strict=True):
            if isinstance(outcome, str):
                unmatched.extend(at)
                unreachable.update(dict.fromkeys(at, f"{route}: {outcome}"))
                # nobody else counts these rows: the Pod that made the prediction never saw them
                self.metrics.feedback_rows(unmatched=sum(parsed.counts[i] for i in at))
                self.metrics.feedback_forwarded(failed=len(at))
                log.debug("feedback for %d ids not forwarded to %s: %s", len(at), route, outcome)
                continue
            matched += outcome.matched
            labelled += outcome.labelled
            unmatched.extend(at[p] for p in outcome.unmatched)
            self.metrics.feedback_forwarded(answered=len(at))
        return Forwarded(Tally(matched, unmatched, labelled), unreachable)

    async def _ask(self, parsed: Parsed, route: Route, at: list[int]) -> Tally | str:
        """The other Pod's tally of the ids at ``at``, or why there is none."""
        items = [{"id": parsed.ids[i], "labels": parsed.items[i]["labels"]} for i in at]
        loop = asyncio.get_running_loop()
        try:
            status, body = await asyncio.wait_for(
                loop.run_in_executor(self._pool, _post, route, self.path, items), TIMEOUT_SECONDS + 0.5
            )
        except (TimeoutError, OSError) as e:  # socket.timeout is a TimeoutError, refusals OSErrors
            return f"no answer within {TIMEOUT_SECONDS:g}s" if isinstance(e, TimeoutError) else str(e)
        except http.client.HTTPException as e:
            return f"a broken answer ({type(e).__name__})"
        return _read_answer(status, body, len(at))


def _post(route: Route, path: str, items: list[dict[str, Any]]) -> tuple[int, bytes]:
    """One POST to another Pod (blocking, on a forwarding thread)."""
    conn = http.client.HTTPConnection(route.host, route.port, timeout=TIMEOUT_SECONDS)
    try:
        conn.request("POST", path, orjson.dumps(items), {"content-type": "application/json", "connection": "close"})
        response = conn.getresponse()
        return response.status, response.read(MAX_ANSWER_BYTES + 1)
    finally:
        conn.close()


def _read_answer(status: int, body: bytes, sent: int) -> Tally | str:
    """A forwarded request's answer as a tally, or why it is not one."""
    try:
        doc = orjson.loads(body) if len(body) <= MAX_ANSWER_BYTES else None
    except orjson.JSONDecodeError:
        doc = None
    if status != 200:
        error = doc.get("error") if isinstance(doc, dict) else None
        return f"answered {status}" + (f": {str(error)[:200]}" if error else "")
    if not isinstance(doc, dict):
        return "answered 200 without a tally"
    matched, at, labelled = doc.get("matched"), doc.get("unmatched_at"), doc.get("labelled")
    if (not isinstance(matched, int) or not isinstance(labelled, int) or not isinstance(at, list)
            or not all(isinstance(p, int) and 0 <= p < sent for p in at) or matched + len(at) != sent):  # fmt: skip
        return "answered 200 without a tally"
    return Tally(matched, at, labelled)
