"""One worker's application: routing, handlers and inference, independent of the transport.

``App.dispatch(method, path, body, reply)`` answers one request by calling
``reply(status, body, content_type, extra_headers)`` exactly once, at once for the simple
routes and from the batcher for inference. The HTTP/1.1 connection (connection.py) and the
gRPC service call it; neither knows the routes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson
from modelroll_contract import LIVE_PATH, METRICS_PATH, READY_PATH, REQUEST_ID_HEADER

from . import __version__, feedback, feedback_ids, openapi
from .batching import Batcher, Job
from .config import Settings
from .errors import ClientError, MethodNotAllowed, NotFound
from .feedback_forward import FORWARDED_PATH, Router, Split
from .loading import LoadedModel
from .metrics import Metrics
from .protocol import decode_v1, decode_v2, encode_v1, encode_v2
from .protocol_grpc import decode_infer, encode_infer

log = logging.getLogger("modelroll_server")

V2, V1, GRPC = 0, 1, 2  # metric protocol index (metrics.PROTOCOLS)
JSON = b"application/json"
TEXT = b"text/plain; version=0.0.4; charset=utf-8"
# A body at least this large is decoded (and its answer encoded) on a thread: parsing 8 MiB
# of JSON takes ~100 ms, which must not hold the loop that answers probes.
OFF_LOOP_BYTES = 256 * 1024

# reply(status, body, content type, extra header lines)
Reply = Callable[[int, bytes, bytes, bytes], None]


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
        self.open_connections: Callable[[], int] = lambda: 1  # set by the HTTP transport
        self.grpc_clients: Callable[[], int] = lambda: 0  # set by the gRPC transport (grpc_service.py)
        self.draining = False
        self.metadata: dict[str, Any] = {}
        self.metadata_body = b""
        # predictions kept for late labels: the window shared by this server's workers
        self.window = feedback.window(settings.feedback_window_rows, settings.feedback_max_age_seconds)
        self.feedback: feedback.Feedback | None = None
        # ids name this Pod when it has an address and the ModelDeployment's key (feedback_ids.py)
        codec = feedback_ids.RouteCodec(settings.feedback_key.encode()) if settings.feedback_key else None
        own = feedback_ids.Route(settings.pod_ip, settings.port) if settings.pod_ip else None
        self.router = Router(codec, own, settings.name, metrics)
        self.new_id = feedback_ids.RequestIds(self.window.region, self.router.own_part).new  # for requests with none
        self._forwarding: set[asyncio.Task[Any]] = set()  # labels on their way to other Pods
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
        self.metadata = self._metadata(model)
        self.metadata_body = orjson.dumps(self.metadata)
        self.batcher = Batcher(
            self.loop, model, self.metrics, self.s.max_batch_size,
            self.s.max_batch_wait_ms / 1000.0, lambda: self.open_connections() + self.grpc_clients(),
        )  # fmt: skip
        self.feedback = feedback.Feedback(self.window, model, self.metrics)

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
            r[prefix + b"/feedback"] = (b"POST", self.h_feedback)
        # labels another Pod of this ModelDeployment sent on (feedback_forward.py): never sent on again
        r[FORWARDED_PATH.format(name=name.decode()).encode()] = (b"POST", self.h_feedback_forwarded)
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
        return 200, b'{"live":true}', JSON

    def is_ready(self) -> bool:
        """This worker has its model and so has every other worker of the Pod."""
        return self.model is not None and not self.draining and self.metrics.all_workers_ready()

    def h_ready(self) -> tuple[int, bytes, bytes]:
        if not self.is_ready():
            return 503, b'{"ready":false}', JSON
        return 200, b'{"ready":true}', JSON

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelroll-server", "version": __version__, "extensions": ["kserve-v1"]}

    def h_server_metadata(self) -> tuple[int, bytes, bytes]:
        return 200, orjson.dumps(self.server_metadata()), JSON

    def h_model_metadata(self) -> tuple[int, bytes, bytes]:
        if self.model is None:
            return 503, error_body(f"model {self.s.name!r} is not ready yet"), JSON
        return 200, self.metadata_body, JSON

    def h_model_ready(self) -> tuple[int, bytes, bytes]:
        ready = self.is_ready()
        body = orjson.dumps({"name": self.s.name, "ready": ready})
        return (200 if ready else 503), body, JSON

    def h_v1_list(self) -> tuple[int, bytes, bytes]:
        return 200, orjson.dumps({"models": [self.s.name]}), JSON

    def h_v1_model(self) -> tuple[int, bytes, bytes]:
        ready = self.is_ready()
        return (200 if ready else 503), orjson.dumps({"name": self.s.name, "ready": ready}), JSON

    def h_metrics(self) -> tuple[int, bytes, bytes]:
        return 200, self.metrics.render(), TEXT

    def h_openapi(self) -> tuple[int, bytes, bytes]:
        return 200, openapi.document(self.s.name, self.s.version, self.model.n_features if self.model else None), JSON

    def h_feedback(self, reply: Reply, body: bytes) -> None:
        """Late labels for earlier requests (feedback.py); never counted as inference."""
        self._feedback(reply, body, self.router)

    def h_feedback_forwarded(self, reply: Reply, body: bytes) -> None:
        """Labels another Pod sent on: matched here, whatever their ids name."""
        self._feedback(reply, body, None)

    def _feedback(self, reply: Reply, body: bytes, router: Router | None) -> None:
        fb = self.feedback
        if fb is None:
            reply(503, error_body("model is not ready yet"), JSON, b"")
            return
        if len(body) >= OFF_LOOP_BYTES:  # parsing a large body must not hold the loop
            fut = self.loop.run_in_executor(None, _parse_feedback, fb, router, body)
            fut.add_done_callback(lambda f: self._feedback_parsed(reply, fb, router, f.result()))
            return
        self._feedback_parsed(reply, fb, router, _parse_feedback(fb, router, body))

    def _feedback_parsed(self, reply: Reply, fb: feedback.Feedback, router: Router | None,
                         parsed: tuple[feedback.Parsed, Split] | Exception) -> None:  # fmt: skip
        try:
            if isinstance(parsed, Exception):
                raise parsed
            labels, split = parsed
            tally = fb.apply(labels, split.local)  # on the loop: it counts in this worker's metrics
            if router is None:  # a forwarded request: counts, even of nothing, for the Pod that sent it
                reply(200, orjson.dumps(self.router.forwarded_answer(tally)), JSON, b"")
                return
            if split.remote:
                task = self.loop.create_task(router.forward(labels, split.remote))
                self._forwarding.add(task)
                task.add_done_callback(lambda t: self._feedback_merged(reply, labels, tally, t))
                return
            answer = feedback.answer(labels.ids, tally)
        except Exception as e:  # noqa: BLE001 - _feedback_failed tells a client's error from a bug
            self._feedback_failed(reply, e)
            return
        reply(200, orjson.dumps(answer), JSON, b"")

    def _feedback_merged(self, reply: Reply, labels: feedback.Parsed, tally: feedback.Tally,
                            task: asyncio.Task[Any]) -> None:  # fmt: skip
        """Answer with this Pod's tally and the other Pods' together."""
        self._forwarding.discard(task)
        try:
            remote = task.result()
            merged = feedback.Tally(tally.matched + remote.tally.matched, tally.unmatched + remote.tally.unmatched,
                                    tally.labelled + remote.tally.labelled)  # fmt: skip
            answer = feedback.answer(labels.ids, merged, remote.unreachable)
        except Exception as e:  # noqa: BLE001 - _feedback_failed tells a client's error from a bug
            self._feedback_failed(reply, e)
            return
        reply(200, orjson.dumps(answer), JSON, b"")

    @staticmethod
    def _feedback_failed(reply: Reply, e: Exception) -> None:
        """A client's error as its 4xx; anything else is a bug, a 500 that keeps the connection."""
        if isinstance(e, ClientError):
            reply(e.status, error_body(str(e)), JSON, b"")
            return
        log.error("feedback failed", exc_info=e)
        reply(500, error_body(f"internal error: {e}"), JSON, b"")

    # --- dispatch -----------------------------------------------------------------------
    def dispatch(self, method: bytes, path: bytes, body: bytes, reply: Reply) -> None:
        """Answer one request through ``reply``; HEAD is GET without a body (the caller drops it)."""
        t0 = time.perf_counter()
        route = self.routes.get(path)
        if route is None:
            proto, err = self.not_found(method, path)
            if proto is not None:
                self.metrics.inflight(1)
                self.finish(reply, proto, t0, err.status, error_body(str(err)))
            else:
                reply(err.status, error_body(str(err)), JSON, b"")
            return
        allowed, handler = route
        if method != allowed and not (method == b"HEAD" and allowed == b"GET"):
            err2 = MethodNotAllowed(
                f"{method.decode('latin-1')} is not allowed on {path.decode('latin-1')}; use {allowed.decode()}"
            )
            allow = b"allow: %s\r\n" % (b"GET, HEAD" if allowed == b"GET" else allowed)
            if isinstance(handler, int):
                self.metrics.inflight(1)
                self.finish(reply, handler, t0, 405, error_body(str(err2)), allow)
            else:
                reply(405, error_body(str(err2)), JSON, allow)
            return
        if isinstance(handler, int):
            self.infer(reply, handler, body, t0)
            return
        if allowed == b"POST":
            handler(reply, body)
            return
        try:
            status, out, ctype = handler()
        except Exception as e:
            log.exception("handler for %s failed", path)
            status, out, ctype = 500, error_body(f"internal error: {e}"), JSON
        reply(status, out, ctype, b"")

    def refuse(self, reply: Reply, path: bytes, status: int, message: str) -> None:
        """Answer a request the transport refused before reading it (too large, too many)."""
        route = self.routes.get(path)
        proto = route[1] if route is not None and isinstance(route[1], int) else None
        if proto is None:
            reply(status, error_body(message), JSON, b"")
            return
        self.metrics.inflight(1)
        self.finish(reply, proto, time.perf_counter(), status, error_body(message))

    # --- inference ----------------------------------------------------------------------
    def infer(self, reply: Reply, proto: int, body: bytes, t0: float) -> None:
        self.metrics.inflight(1)
        if self.model is None or self.batcher is None:
            self.finish(reply, proto, t0, 503, error_body("model is not ready yet"))
            return
        if len(body) >= OFF_LOOP_BYTES:
            fut = self.loop.run_in_executor(None, self.decode, proto, body)
            fut.add_done_callback(lambda f: self._decoded(reply, proto, t0, len(body), f.result()))
            return
        self._decoded(reply, proto, t0, len(body), self.decode(proto, body))

    def decode(self, proto: int, body: bytes) -> tuple[Any, bool, bool, Any] | ClientError | Exception:
        """The request's rows and wishes, or the error to answer with (runs on any thread)."""
        model = self.model
        assert model is not None
        try:
            if proto == V2:
                return decode_v2(body, model, self.s.method)
            if proto == GRPC:
                return decode_infer(body, model, self.s.method, self.s.name, self.s.version)
            want_predict = self.s.method == "predict"
            return decode_v1(body, model), want_predict, not want_predict, None
        except Exception as e:
            return e

    def _decoded(self, reply: Reply, proto: int, t0: float, size: int,
                 decoded: tuple[Any, bool, bool, Any] | Exception) -> None:  # fmt: skip
        if isinstance(decoded, ClientError):
            self.finish(reply, proto, t0, decoded.status, error_body(str(decoded)))
            return
        if isinstance(decoded, Exception):  # a bug in decoding must not take the connection down
            log.error("unexpected error decoding a request", exc_info=decoded)
            self.finish(reply, proto, t0, 500, error_body(f"internal error: {decoded}"))
            return
        X, want_predict, want_proba, rid = decoded
        off_loop = size >= OFF_LOOP_BYTES
        # Every answer carries an id, the client's or a new one, that late labels refer to
        # (V2 and gRPC: the answer's id; KServe V1: a header, its body having no place for one).
        extra = b""
        if proto == V2:
            if rid is None or rid == "":  # as over gRPC, where an empty id is no id
                rid = self.new_id()
            key = rid if type(rid) is str else None  # feedback ids are strings
        elif proto == GRPC:
            if not rid.id:
                rid = rid._replace(id=self.new_id())
            key = rid.id
        else:
            key = self.new_id()
            extra = b"%s: %s\r\n" % (REQUEST_ID_HEADER.encode(), key.encode())
        record = self.feedback.record if self.window.rows and key is not None else None  # type: ignore[union-attr]

        def done(pred: Any, proba: Any, err: BaseException | None) -> None:
            if err is not None:
                self.finish(reply, proto, t0, 500, error_body(f"model raised {type(err).__name__}: {err}"))
                return
            if record is not None:  # before answering: a label may follow the answer at once
                record(key, pred, proba)  # type: ignore[arg-type]
            if off_loop:
                fut = self.loop.run_in_executor(None, self.encode, proto, rid, pred, proba)
                fut.add_done_callback(lambda f: self._encoded(reply, proto, t0, f.result(), extra))
            else:
                self._encoded(reply, proto, t0, self.encode(proto, rid, pred, proba), extra)

        assert self.batcher is not None
        self.batcher.submit(Job(X, want_predict, want_proba, done))

    def encode(self, proto: int, rid: Any, pred: Any, proba: Any) -> tuple[int, bytes]:
        try:
            if proto == V2:
                return 200, encode_v2(self.s.name, self.s.version, rid, pred, proba)
            if proto == GRPC:
                return 200, encode_infer(self.s.name, self.s.version, rid, pred, proba)
            return 200, encode_v1(pred, proba)
        except Exception as e:
            log.exception("cannot encode a response")
            return 500, error_body(f"cannot encode the output: {e}")

    def _encoded(self, reply: Reply, proto: int, t0: float, answer: tuple[int, bytes], extra: bytes) -> None:
        status, body = answer
        self.finish(reply, proto, t0, status, body, extra if status == 200 else b"")

    def finish(self, reply: Reply, proto: int, t0: float, status: int, body: bytes, extra: bytes = b"") -> None:
        m = self.metrics
        m.inflight(-1)
        m.request_done(proto, status, time.perf_counter() - t0)
        reply(status, body, JSON, extra)


def _parse_feedback(fb: feedback.Feedback, router: Router | None,
                    body: bytes) -> tuple[feedback.Parsed, Split] | Exception:  # fmt: skip
    """The labels, and which Pod each belongs to (None: a forwarded request, all of them here)."""
    try:
        parsed = fb.parse(body)
        split = router.split(parsed.ids) if router is not None else Split.all_local(parsed.ids)
        return parsed, split
    except Exception as e:  # answered on the loop
        return e
