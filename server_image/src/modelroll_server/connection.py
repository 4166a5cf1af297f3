"""HTTP/1.1 on an asyncio (uvloop) transport with httptools' parser: framing, limits, timeouts.

Why not uvicorn or granian: in one run of ``make bench`` on this machine this layer answered
1.5-3.4x the requests per second of either with the same app (benchmarks/server_vs_peers,
"layers"); the parser (llhttp through httptools) is the one uvicorn uses. What such layers
must get right is here, each with a test in tests/server/test_hostile.py:

- requests on one connection are answered in order; at most ``MAX_PIPELINED`` are in flight
  and parsed requests wait in a queue that only a read refills, and reading stops while
  the client does not read our answers (the transport's write buffer is over its limit), so
  memory stays bounded however a client pipelines;
- the request line and headers are capped (414/431), the body too (413, read and dropped up
  to a limit so the client sees the answer, then the connection closes), and at most
  ``max_concurrent_requests`` requests with a body are admitted per worker (503 beyond);
- a connection that sends nothing for ``header_timeout`` (first request or headers), stalls
  for ``body_timeout`` in a body or in reading our answers, or idles ``keep_alive`` between
  requests is closed (408 if a request was under way); one sweep a second checks deadlines;
- HEAD is GET without the body; ``Upgrade`` and ``CONNECT`` are answered once and the
  connection closes; absolute-form targets (``GET http://host/path``) route by their path;
- draining (SIGTERM) answers every request already read, closes idle connections and gives
  a silent half-sent request one second, not the whole grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import Any, NamedTuple

import httptools

from .app import JSON, App, error_body
from .config import Settings

log = logging.getLogger("modelroll_server")

_REASONS = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
    414: b"URI Too Long", 415: b"Unsupported Media Type", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}  # fmt: skip
MAX_PIPELINED = 64  # requests of one connection dispatched and not yet written
DISCARD_LIMIT = 64 * 1024 * 1024  # bytes of a refused body read (and dropped) before closing
WRITE_BUFFER_HIGH = 256 * 1024  # bytes buffered for a client before we stop reading from it
DRAIN_READ_SECONDS = 1.0  # silence allowed while draining, mid-request
SWEEP_SECONDS = 1.0
_NEVER = float("inf")
_BODYLESS = frozenset((b"GET", b"HEAD", b"DELETE", b"OPTIONS"))


class Request(NamedTuple):
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool
    head: bool
    admitted: bool  # counted in HttpServer.admitted until answered
    refusal: tuple[int, str] | None  # answered with this instead of dispatched


def http_response(status: int, body: bytes, keep_alive: bool, ctype: bytes, extra: bytes, head: bool) -> bytes:
    out = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s" % (
        status, _REASONS.get(status, b"Unknown"), ctype, len(body), extra)  # fmt: skip
    if not keep_alive:
        out += b"connection: close\r\n"
    return out + b"\r\n" if head else out + b"\r\n" + body


def origin_path(target: bytes) -> bytes:
    """The path of a request target without its query; absolute-form targets lose scheme and host."""
    if target[:1] != b"/" and b"://" in target[:8]:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        target = rest[slash:] if slash >= 0 else b"/"
    return target.split(b"?", 1)[0]


class HttpServer:
    """One worker's connections: limits, deadlines, the concurrency count, draining."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.s = settings
        self.loop = app.loop
        self.conns: set[Conn] = set()
        self.admitted = 0  # requests with a body between their headers and their answer
        self.draining = False
        self.drained = asyncio.Event()
        self._sweep: asyncio.TimerHandle | None = None
        app.open_connections = lambda: len(self.conns)

    def protocol(self) -> Conn:
        if self._sweep is None:
            self._sweep = self.loop.call_later(SWEEP_SECONDS, self.sweep)
        return Conn(self)

    def sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self.conns if c.deadline <= now]:
            conn.expire()
        self._sweep = self.loop.call_later(SWEEP_SECONDS, self.sweep)

    def closed(self, conn: Conn) -> None:
        self.conns.discard(conn)
        if self.draining and not self.conns:
            self.drained.set()

    def start_draining(self) -> None:
        self.draining = True
        self.app.draining = True
        now = self.loop.time()
        for conn in list(self.conns):
            if conn.idle() and conn.answered:
                conn.close()  # idle keep-alive
            elif conn.receiving or conn.idle():  # mid-request, or accepted and yet to send one
                conn.deadline = min(conn.deadline, now + DRAIN_READ_SECONDS)
        if not self.conns:
            self.drained.set()

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        for conn in list(self.conns):
            conn.close()


class Conn(asyncio.Protocol):
    __slots__ = (
        "srv", "app", "parser", "transport", "deadline", "url", "head_bytes", "raw_head", "began", "in_head", "body",
        "body_len", "content_length", "expect", "receiving", "admitted", "refused", "queue",
        "slots", "write_blocked", "reading", "upgraded", "closing", "answered",
    )  # fmt: skip

    def __init__(self, srv: HttpServer) -> None:
        self.srv = srv
        self.app = srv.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.deadline = _NEVER
        self.url = b""
        self.head_bytes = 0  # request line and complete headers of the request being read
        self.raw_head = 0  # bytes of later reads while its headers were still incomplete
        self.began = False  # a request began in the read being parsed
        self.in_head = False
        self.body: list[bytes] = []
        self.body_len = 0
        self.content_length = -1
        self.expect = False
        self.receiving = False
        self.admitted = False
        self.refused = 0  # the status of an answer already given to the request being read
        self.queue: deque[Request] = deque()  # parsed, not dispatched
        self.slots: deque[list[Any]] = deque()  # dispatched, answered in this order
        self.write_blocked = False
        self.reading = True
        self.upgraded = False
        self.closing = False  # a response said "connection: close": no further request is read
        self.answered = 0  # responses written

    # --- transport events -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv = self.srv
        srv.conns.add(self)
        wait = DRAIN_READ_SECONDS if srv.draining else srv.s.header_timeout_seconds
        self.deadline = srv.loop.time() + wait

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        srv = self.srv
        # requests read but never dispatched, or half-read, give back their admission
        srv.admitted -= sum(1 for q in self.queue if q.admitted) + (1 if self.receiving and self.admitted else 0)
        self.queue.clear()
        srv.closed(self)

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            return  # bytes of a protocol we do not speak
        self.began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade()
        except httptools.HttpParserError as e:
            if self.transport is not None and not self.refused:
                self._fail(400, f"malformed HTTP request: {e}")
        if self.in_head and not self.began:
            # still in the headers of a request begun in an earlier read: all of this read was
            # header bytes the parser holds (within the read that began it, they are not known)
            self.raw_head += len(data)
            self._check_head()
        self._pump()

    def _check_head(self) -> None:
        cap = self.srv.s.max_header_bytes
        if max(self.raw_head, self.head_bytes) > cap:
            self._fail(431, f"request line and headers exceed {cap} bytes")

    def pause_writing(self) -> None:
        self.write_blocked = True
        self._arm()
        self._flow()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self._pump()
        self._arm()

    def _fail(self, status: int, message: str) -> None:
        """Answer at once and close: the stream can no longer be trusted to frame requests."""
        if self.transport is not None:
            if not self.slots:
                self.transport.write(http_response(status, error_body(message), False, JSON, b"", False))
            self.close()

    def _upgrade(self) -> None:
        # httptools stops at an Upgrade or CONNECT once that request is complete: it has been
        # (or will be) answered like any other; the rest of the stream is not HTTP/1.1.
        if self.receiving:
            self._fail(400, "protocol upgrades are not supported")
            return
        self.upgraded = True
        if self.queue:
            self.queue[-1] = self.queue[-1]._replace(keep_alive=False)
        elif self.slots:
            self.slots[-1][1] = False
        else:
            self.close()
        self._flow()

    def idle(self) -> bool:
        return not self.slots and not self.queue and not self.receiving

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def expire(self) -> None:
        """A deadline passed: say so if a request was under way, then close."""
        if self.receiving and not self.refused:
            self._fail(408, "request not received in time")
        else:
            self.close()

    def _arm(self) -> None:
        """Set the deadline this connection's state calls for."""
        srv = self.srv
        s = srv.s
        now = srv.loop.time()
        if self.write_blocked:
            self.deadline = now + s.body_timeout_seconds
        elif self.receiving:
            timeout = s.header_timeout_seconds if self.in_head else s.body_timeout_seconds
            self.deadline = now + (min(timeout, DRAIN_READ_SECONDS) if srv.draining else timeout)
        elif self.slots or self.queue:
            self.deadline = _NEVER  # ours to answer
        else:
            self.deadline = now + s.keep_alive_seconds

    def _flow(self) -> None:
        """Read only while there is room for more requests and the client reads our answers."""
        t = self.transport
        if t is None:
            return
        want = not self.upgraded and not self.write_blocked and not self.queue and len(self.slots) < MAX_PIPELINED
        if want != self.reading:
            self.reading = want
            if want:
                t.resume_reading()
            else:
                t.pause_reading()

    # --- parser callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.head_bytes = 0
        self.raw_head = 0
        self.began = True
        self.in_head = True
        self.body = []
        self.body_len = 0
        self.content_length = -1
        self.expect = False
        self.receiving = True
        self.admitted = False
        self.refused = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if len(self.url) > self.srv.s.max_header_bytes:
            self._fail(414, f"request target exceeds {self.srv.s.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.srv.s.max_header_bytes:
            self._check_head()
        n = name.lower()
        if n == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                self.content_length = -1
        elif n == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.transport is None:
            return
        srv = self.srv
        s = srv.s
        method = self.parser.get_method()
        if self.content_length > s.max_body_bytes:
            self._refuse(413, f"request body is larger than the limit of {s.max_body_bytes} bytes")
        elif method not in _BODYLESS:
            if srv.admitted >= s.max_concurrent_requests:
                self._refuse(503, f"server busy: {s.max_concurrent_requests} requests in progress")
            else:
                srv.admitted += 1
                self.admitted = True
        if self.expect and not self.refused and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._arm()

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if self.refused:
            if self.body_len > DISCARD_LIMIT:
                self.close()
            return
        if self.body_len > self.srv.s.max_body_bytes:
            self._refuse(413, f"request body is larger than the limit of {self.srv.s.max_body_bytes} bytes")
            return
        self.body.append(body)
        self.deadline = self.srv.loop.time() + (
            DRAIN_READ_SECONDS if self.srv.draining else self.srv.s.body_timeout_seconds
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer before the body (in order), then read and drop the body."""
        if self.admitted:
            self.srv.admitted -= 1
            self.admitted = False
        self.refused = status
        self.body = []
        method = self.parser.get_method()
        # after a 413 the connection closes: the client may still be sending a huge body
        self._submit(Request(method, origin_path(self.url), b"", status != 413, method == b"HEAD", False,
                             (status, message)))  # fmt: skip

    def on_message_complete(self) -> None:
        self.receiving = False
        if self.transport is None:
            return
        if self.closing:
            self.close()
            return
        if self.refused:
            self._arm()
            return
        parser = self.parser
        method = parser.get_method()
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        admitted, self.admitted = self.admitted, False
        self._submit(Request(method, origin_path(self.url), body, parser.should_keep_alive(), method == b"HEAD",
                             admitted, None))  # fmt: skip
        self._arm()

    # --- dispatch and responses, in request order ---------------------------------------
    def _submit(self, request: Request) -> None:
        if self.queue or len(self.slots) >= MAX_PIPELINED or self.write_blocked:
            self.queue.append(request)
            self._flow()
        else:
            self._dispatch(request)

    def _dispatch(self, request: Request) -> None:
        slot: list[Any] = [None, request.keep_alive, request.head, request.admitted]  # answer, ..., admitted
        self.slots.append(slot)

        def reply(status: int, body: bytes, ctype: bytes, extra: bytes) -> None:
            self.respond(slot, status, body, ctype, extra)

        if request.refusal is None:
            self.app.dispatch(request.method, request.path, request.body, reply)
        else:
            self.app.refuse(reply, request.path, *request.refusal)

    def _pump(self) -> None:
        """Dispatch queued requests while there is room, then read again if all were."""
        queue = self.queue
        while queue and self.transport is not None and not self.write_blocked and len(self.slots) < MAX_PIPELINED:
            self._dispatch(queue.popleft())
        self._flow()

    def respond(self, slot: list[Any], status: int, body: bytes, ctype: bytes, extra: bytes) -> None:
        if slot[3]:
            self.srv.admitted -= 1
            slot[3] = False
        slot[0] = (status, body, ctype, extra)
        slots = self.slots
        draining = self.srv.draining
        while slots and slots[0][0] is not None:
            (st, b, ct, ex), keep_alive, head, _ = slots.popleft()
            keep_alive = keep_alive and not draining
            t = self.transport
            if t is None:
                continue
            t.write(http_response(st, b, keep_alive, ct, ex, head))
            self.answered += 1
            if not keep_alive:
                slots.clear()
                if self.receiving:  # let a refused body arrive (and be dropped) first
                    self.closing = True
                else:
                    self.close()
        if self.transport is None:
            return
        if self.queue:
            self._pump()
        elif len(slots) < MAX_PIPELINED:
            self._flow()
        if draining and self.idle():
            self.close()
        else:
            self._arm()
