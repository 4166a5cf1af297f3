"""The HTTP/1.1 server: httptools parsing on an asyncio (uvloop) transport, routing, handlers.

A raw protocol instead of an ASGI stack because the hot path is per request: parse, route
by one dict lookup, decode, hand the rows to the batcher, write one buffer. Requests on one
connection are answered in order (pipelining works); a body over the limit gets 413 and the
connection is drained and closed; SIGTERM closes the listener, lets in-flight requests
finish, closes idle keep-alive connections and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
import urllib.parse
from collections import deque
from typing import Any

import httptools
import orjson
from modelroll_contract import LIVE_PATH, METRICS_PATH, READY_PATH

from . import __version__, openapi
from .batching import Batcher, Job
from .config import Settings
from .errors import ClientError, LoadError, MethodNotAllowed, NotFound
from .loading import LoadedModel, load_model
from .metrics import Metrics
from .protocol import decode_v1, decode_v2, encode_v1, encode_v2

log = logging.getLogger("modelroll_server")

V2, V1 = 0, 1  # metric protocol index (metrics.PROTOCOLS)
_REASONS = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 404: b"Not Found",
    405: b"Method Not Allowed", 413: b"Payload Too Large", 415: b"Unsupported Media Type",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}  # fmt: skip
_JSON = b"application/json"
_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_DISCARD_LIMIT = 64 * 1024 * 1024  # bytes of an oversized body read (and dropped) before closing


def http_response(status: int, body: bytes, keep_alive: bool, ctype: bytes = _JSON, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s" % (
        status, _REASONS.get(status, b"Unknown"), ctype, len(body), extra)  # fmt: skip
    if not keep_alive:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


class App:
    """State shared by one worker's connections: settings, model, batcher, metrics."""

    def __init__(self, settings: Settings, metrics: Metrics, loop: asyncio.AbstractEventLoop):
        self.s = settings
        self.metrics = metrics
        self.loop = loop
        self.model: LoadedModel | None = None
        self.batcher: Batcher | None = None
        self.conns: set[Conn] = set()
        self.draining = False
        self.drained = asyncio.Event()
        self.metadata_body = b""
        self.routes = self._routes()

    # --- lifecycle --------------------------------------------------------------------
    def model_loaded(self, model: LoadedModel) -> None:
        # Everything allocated so far (scikit-learn, the model) lives as long as the process:
        # move it out of the collector's view so a full collection does not stall requests
        # for tens of milliseconds, and collect young objects less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        # protocol.py already refused non-finite input the model cannot take
        import sklearn

        sklearn.set_config(assume_finite=True)
        self.model = model
        self.metrics.set_classes(model.class_labels)
        self.metrics.set_load_seconds(model.load_seconds)
        self.metrics.set_worker_ready(True)
        self.metadata_body = orjson.dumps(self._metadata(model))
        self.batcher = Batcher(
            self.loop, model, self.metrics, self._job_done, self.s.max_batch_size,
            self.s.max_batch_wait_ms / 1000.0, lambda: len(self.conns),
        )  # fmt: skip
        log.info(
            "model %s version %s (%s, sha256:%s) ready in %.3fs",
            self.s.name, self.s.version, type(model.estimator).__name__, model.sha256,
            model.load_seconds,
        )  # fmt: skip

    def _metadata(self, m: LoadedModel) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = []
        if m.classes is not None:
            from .protocol import datatype_of

            outputs.append({"name": "predict", "datatype": datatype_of(m.classes), "shape": [-1]})
        else:
            outputs.append({"name": "predict", "datatype": "FP64", "shape": [-1]})
        if m.has_proba:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.classes)]}  # type: ignore[arg-type]
            )
        return {
            "name": self.s.name,
            "versions": [self.s.version],
            "platform": "sklearn",
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [-1, m.n_features if m.n_features is not None else -1],
                }  # fmt: skip
            ],
            "outputs": outputs,
            "parameters": {
                "estimator": type(m.estimator).__name__,
                "format": m.format,
                "sha256": m.sha256,
                "method": self.s.method,
                "track": self.s.track,
                "classes": m.class_labels,
                "accepts_nan": m.allow_nan,
                "sklearn_version": m.runtime_sklearn_version,
                "trained_sklearn_version": m.trained_sklearn_version,
                "warnings": m.warnings,
            },
        }

    def connection_closed(self, conn: Conn) -> None:
        self.conns.discard(conn)
        if self.draining and not self.conns:
            self.drained.set()

    def start_draining(self) -> None:
        self.draining = True
        for conn in list(self.conns):
            if conn.idle():
                conn.close()
        if not self.conns:
            self.drained.set()

    # --- routing ----------------------------------------------------------------------
    def _routes(self) -> dict[bytes, tuple[bytes, Any]]:
        name = urllib.parse.quote(self.s.name, safe="").encode()
        ver = urllib.parse.quote(self.s.version, safe="").encode()
        r: dict[bytes, tuple[bytes, Any]] = {
            LIVE_PATH.encode(): (b"GET", self.h_live),
            READY_PATH.encode(): (b"GET", self.h_ready),
            b"/v2": (b"GET", self.h_server_metadata),
            b"/v2/": (b"GET", self.h_server_metadata),
            METRICS_PATH.encode(): (b"GET", self.h_metrics),
            b"/openapi.json": (b"GET", self.h_openapi),
            b"/v1/models": (b"GET", self.h_v1_list),
            b"/v1/models/" + name: (b"GET", self.h_v1_model),
            b"/v1/models/" + name + b":predict": (b"POST", V1),
        }
        for prefix in (b"/v2/models/" + name, b"/v2/models/" + name + b"/versions/" + ver):
            r[prefix] = (b"GET", self.h_model_metadata)
            r[prefix + b"/ready"] = (b"GET", self.h_model_ready)
            r[prefix + b"/infer"] = (b"POST", V2)
        return r

    def not_found(self, method: bytes, path: bytes) -> tuple[int | None, ClientError]:
        """Name what is unknown: the model, the version, or the route (and its protocol)."""
        text = urllib.parse.unquote(path.decode("utf-8", "replace"))
        parts = text.split("/")
        if text.startswith("/v2/models/") and len(parts) >= 4:
            proto: int | None = V2 if parts[-1] == "infer" else None
            if parts[3] != self.s.name:
                return proto, NotFound(f"model {parts[3]!r} not found")
            if len(parts) >= 6 and parts[4] == "versions" and parts[5] != self.s.version:
                return proto, NotFound(f"version {parts[5]!r} of model {parts[3]!r} not found")
            return proto, NotFound(f"no route for {method.decode('latin-1')} {text}")
        if text.startswith("/v1/models/"):
            rest = text[len("/v1/models/") :]
            model, _, verb = rest.partition(":")
            proto = V1 if verb == "predict" else None
            if model != self.s.name:
                return proto, NotFound(f"model {model!r} not found")
            return proto, NotFound(f"no route for {method.decode('latin-1')} {text}")
        return None, NotFound(f"no route for {method.decode('latin-1')} {text}")

    # --- simple handlers: return (status, body, content type) --------------------------
    def h_live(self) -> tuple[int, bytes, bytes]:
        return 200, b'{"live":true}', _JSON

    def is_ready(self) -> bool:
        """This worker has its model and so has every other worker of the Pod."""
        return self.model is not None and not self.draining and self.metrics.all_workers_ready()

    def h_ready(self) -> tuple[int, bytes, bytes]:
        if not self.is_ready():
            return 503, b'{"ready":false}', _JSON
        return 200, b'{"ready":true}', _JSON

    def h_server_metadata(self) -> tuple[int, bytes, bytes]:
        body = {"name": "modelroll-server", "version": __version__, "extensions": ["kserve-v1"]}
        return 200, orjson.dumps(body), _JSON

    def h_model_metadata(self) -> tuple[int, bytes, bytes]:
        if self.model is None:
            return 503, error_body(f"model {self.s.name!r} is not ready yet"), _JSON
        return 200, self.metadata_body, _JSON

    def h_model_ready(self) -> tuple[int, bytes, bytes]:
        ready = self.is_ready()
        body = orjson.dumps({"name": self.s.name, "ready": ready})
        return (200 if ready else 503), body, _JSON

    def h_v1_list(self) -> tuple[int, bytes, bytes]:
        return 200, orjson.dumps({"models": [self.s.name]}), _JSON

    def h_v1_model(self) -> tuple[int, bytes, bytes]:
        ready = self.is_ready()
        return (200 if ready else 503), orjson.dumps({"name": self.s.name, "ready": ready}), _JSON

    def h_metrics(self) -> tuple[int, bytes, bytes]:
        return 200, self.metrics.render(), _TEXT

    def h_openapi(self) -> tuple[int, bytes, bytes]:
        return 200, openapi.document(self.s.name, self.s.version, self.model.n_features if self.model else None), _JSON

    # --- inference ----------------------------------------------------------------------
    def infer(self, conn: Conn, slot: list[Any], proto: int, body: bytes, t0: float) -> None:
        self.metrics.inflight(1)
        model = self.model
        if model is None or self.batcher is None:
            self.finish(conn, slot, proto, t0, 503, error_body("model is not ready yet"))
            return
        try:
            if proto == V2:
                X, want_predict, want_proba, rid = decode_v2(body, model, self.s.method)
            else:
                X = decode_v1(body, model)
                want_predict = self.s.method == "predict"
                want_proba = not want_predict
                rid = None
        except ClientError as e:
            self.finish(conn, slot, proto, t0, e.status, error_body(str(e)))
            return
        except Exception as e:  # a bug in decoding must not take the connection down
            log.exception("unexpected error decoding a request")
            self.finish(conn, slot, proto, t0, 500, error_body(f"internal error: {e}"))
            return
        self.batcher.submit(Job(X, want_predict, want_proba, (conn, slot, proto, t0, rid)))

    def _job_done(self, job: Job, pred: Any, proba: Any, err: BaseException | None) -> None:
        conn, slot, proto, t0, rid = job.ctx
        if err is not None:
            msg = f"model raised {type(err).__name__}: {err}"
            self.finish(conn, slot, proto, t0, 500, error_body(msg))
            return
        try:
            body = encode_v2(self.s.name, self.s.version, rid, pred, proba) if proto == V2 else encode_v1(pred, proba)
        except Exception as e:
            log.exception("cannot encode a response")
            self.finish(conn, slot, proto, t0, 500, error_body(f"cannot encode the output: {e}"))
            return
        self.finish(conn, slot, proto, t0, 200, body)

    def finish(self, conn: Conn, slot: list[Any], proto: int, t0: float, status: int,
               body: bytes, extra: bytes = b"") -> None:  # fmt: skip
        m = self.metrics
        m.inflight(-1)
        m.request_done(proto, status, time.perf_counter() - t0)
        conn.respond(slot, status, body, _JSON, extra)


class Conn(asyncio.Protocol):
    __slots__ = (
        "app", "parser", "transport", "url", "body", "body_len", "content_length", "expect",
        "receiving", "discard", "slots", "paused",
    )  # fmt: skip

    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.body_len = 0
        self.content_length = -1
        self.expect = False
        self.receiving = False
        self.discard = False
        self.slots: deque[list[Any]] = deque()
        self.paused = False

    # --- transport events -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.app.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed HTTP request: {e}")

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None:
            self.transport.write(http_response(status, error_body(message), False))
            self.close()

    def idle(self) -> bool:
        return not self.slots and not self.receiving

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # --- parser callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.body_len = 0
        self.content_length = -1
        self.expect = False
        self.receiving = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                self.content_length = -1
        elif n == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        limit = self.app.s.max_body_bytes
        if self.content_length > limit:
            self._too_large()
        elif self.expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if self.discard:
            if self.body_len > _DISCARD_LIMIT:
                self.close()
            return
        if self.body_len > self.app.s.max_body_bytes:
            self._too_large()
            return
        self.body.append(body)

    def _too_large(self) -> None:
        """Answer 413 now, then read and drop the rest so the client sees the answer."""
        self.discard = True
        self.body = []
        limit = self.app.s.max_body_bytes
        slot = self._slot(False)
        path = self.url.split(b"?", 1)[0]
        route = self.app.routes.get(path)
        proto = route[1] if route is not None and isinstance(route[1], int) else None
        msg = f"request body is larger than the limit of {limit} bytes"
        if proto is not None:
            self.app.metrics.inflight(1)
            self.app.finish(self, slot, proto, time.perf_counter(), 413, error_body(msg))
        else:
            self.respond(slot, 413, error_body(msg), _JSON)

    def on_message_complete(self) -> None:
        self.receiving = False
        if self.discard:
            self.close()
            return
        t0 = time.perf_counter()
        app = self.app
        keep_alive = self.parser.should_keep_alive() and not app.draining
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        slot = self._slot(keep_alive)
        route = app.routes.get(path)
        if route is None:
            proto, err = app.not_found(method, path)
            if proto is not None:
                app.metrics.inflight(1)
                app.finish(self, slot, proto, t0, err.status, error_body(str(err)))
            else:
                self.respond(slot, err.status, error_body(str(err)), _JSON)
            return
        allowed, handler = route
        if method != allowed:
            err2 = MethodNotAllowed(
                f"{method.decode('latin-1')} is not allowed on {path.decode('latin-1')}; use {allowed.decode()}"
            )
            allow = b"allow: %s\r\n" % allowed
            if isinstance(handler, int):
                app.metrics.inflight(1)
                app.finish(self, slot, handler, t0, 405, error_body(str(err2)), allow)
            else:
                self.respond(slot, 405, error_body(str(err2)), _JSON, allow)
            return
        if isinstance(handler, int):
            app.infer(self, slot, handler, body, t0)
            return
        try:
            status, out, ctype = handler()
        except Exception as e:
            log.exception("handler for %s failed", path)
            status, out, ctype = 500, error_body(f"internal error: {e}"), _JSON
        self.respond(slot, status, out, ctype)

    # --- responses, in request order --------------------------------------------------
    def _slot(self, keep_alive: bool) -> list[Any]:
        slot: list[Any] = [None, keep_alive]
        self.slots.append(slot)
        if len(self.slots) > 64 and not self.paused and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining without reading
            self.paused = True
        return slot

    def respond(self, slot: list[Any], status: int, body: bytes, ctype: bytes, extra: bytes = b"") -> None:
        slot[0] = (status, body, ctype, extra)
        slots = self.slots
        while slots and slots[0][0] is not None:
            (st, b, ct, ex), keep_alive = slots.popleft()
            keep_alive = keep_alive and not self.app.draining
            t = self.transport
            if t is None:
                continue
            t.write(http_response(st, b, keep_alive, ct, ex))
            if not keep_alive:
                self.close()
        if self.paused and len(slots) < 16 and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        if self.app.draining and self.idle():
            self.close()


# --- running one worker ---------------------------------------------------------------------
LOAD_FAILED_EXIT = 3


def write_termination_log(path: str, message: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(message[:4000] + "\n")
    except OSError:
        pass


async def serve(settings: Settings, metrics: Metrics, sock: socket.socket | None = None) -> int:
    """Serve until SIGTERM/SIGINT (returns 0) or until the model fails to load (returns 3)."""
    loop = asyncio.get_running_loop()
    app = App(settings, metrics, loop)
    if sock is None:
        server = await loop.create_server(
            lambda: Conn(app), host=settings.host, port=settings.port, backlog=2048,
            reuse_address=True,
        )  # fmt: skip
    else:
        server = await loop.create_server(lambda: Conn(app), sock=sock, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %d listening on %s:%d", os.getpid(), settings.host, settings.port)

    def load() -> LoadedModel:
        return load_model(settings.model, settings.format, settings.digest,
                          list(settings.trusted_types))  # fmt: skip

    load_task = loop.run_in_executor(None, load)
    stop_task = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({load_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if load_task in done:
        try:
            model = load_task.result()
            if settings.method == "predict_proba" and not model.has_proba:
                raise LoadError(f"--method predict_proba, but {type(model.estimator).__name__} "
                                "has no predict_proba")  # fmt: skip
            app.model_loaded(model)
        except LoadError as e:
            log.error("cannot serve: %s", e.reason)
            write_termination_log(settings.termination_log, e.reason)
            code = LOAD_FAILED_EXIT
            stop.set()
        except Exception as e:  # anything else while loading is a load failure too
            reason = f"cannot load model: {type(e).__name__}: {e}"
            log.error(reason)
            write_termination_log(settings.termination_log, reason)
            code = LOAD_FAILED_EXIT
            stop.set()
        await stop_task
    log.info("worker %d stopping: no new connections, finishing in-flight requests", os.getpid())
    server.close()
    app.start_draining()
    try:
        await asyncio.wait_for(app.drained.wait(), timeout=settings.grace_seconds)
    except TimeoutError:
        log.warning("grace period over with %d connections open; closing them", len(app.conns))
        for conn in list(app.conns):
            conn.close()
    return code
