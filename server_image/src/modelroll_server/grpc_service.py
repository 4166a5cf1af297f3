"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``): a transport (I/O).

Thin, like the HTTP transport: ModelInfer hands the request's bytes to ``App.infer`` with
the GRPC protocol index, so decoding (protocol_grpc.py, with protocol.py's checks), the
batcher and the metrics are the ones HTTP requests go through. HTTP statuses from the app
become gRPC status codes here, and nowhere else.

Each worker runs its own grpc.aio server on the worker's own uvloop event loop (grpc.aio
needs no particular loop: a poller thread of its own reads gRPC's completion queue and hands
each event to the loop thread-safely), bound with SO_REUSEPORT (grpc's default on Linux), so
the kernel spreads new connections over the workers. Importing this module starts no thread
(the supervisor imports it before forking, so its pages are shared); a server's start does,
and only workers start one: gRPC's threads must not exist in a process that forks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import orjson
from grpc import aio

from .app import GRPC, App
from .config import Settings
from .errors import ClientError
from .proto import inference_pb2 as pb
from .protocol_grpc import check_model

log = logging.getLogger("modelroll_server.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# the app's HTTP status -> the gRPC code (the metrics keep the HTTP status, so the operator's
# 5xx error rate counts gRPC failures too)
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
MAX_CONNECTION_AGE_SECONDS = 30  # gRPC adds ±10% jitter
# With --max-batch-wait-ms (see GrpcService.clients): how long one overlap of calls counts as
# concurrent callers, and how often a lone caller's batch waits to look for others (at least
# this often; at most 1 in PROBE_SHARE of its time is spent waiting)
OVERLAP_SECONDS = 1.0
PROBE_SECONDS = 0.1
PROBE_SHARE = 20


class GrpcService:
    """One worker's gRPC server over its App; ``start`` then ``stop`` (a no-op when grpc_port is 0)."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.s = settings
        self.loop = app.loop
        self.server: aio.Server | None = None
        self.in_flight = 0  # ModelInfer calls received and not yet answered
        self.wait_for_more = settings.max_batch_wait_ms > 0
        self.overlapping_until = 0.0  # loop time until which calls are taken to overlap
        self.next_probe = 0.0
        self.probe_every = max(PROBE_SECONDS, PROBE_SHARE * settings.max_batch_wait_ms / 1000.0)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> GrpcService:
        if not self.s.grpc_port:
            return self
        s = self.s
        self.server = aio.server(
            options=[
                # a message larger than an HTTP body may be is refused (RESOURCE_EXHAUSTED)
                # from its length prefix, before it is read
                ("grpc.max_receive_message_length", s.max_body_bytes),
                ("grpc.so_reuseport", 1),  # every worker binds the port (the default; relied upon)
                ("grpc.max_connection_idle_ms", int(s.keep_alive_seconds * 1000)),
                # An HTTP/2 connection carries all of a client's calls to one worker of one Pod
                # for as long as it lives: recycle it (GOAWAY, calls in flight finish) so that
                # clients spread over the workers and the Pods a rollout starts.
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
                ("grpc.max_connection_age_grace_ms", int(s.grace_seconds * 1000)),
            ],
            maximum_concurrent_rpcs=s.max_concurrent_requests,
        )
        handlers = self._handlers()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.server.add_registered_method_handlers(SERVICE, handlers)
        address = f"[{s.host}]:{s.grpc_port}" if ":" in s.host else f"{s.host}:{s.grpc_port}"
        try:
            self.server.add_insecure_port(address)
        except RuntimeError as e:
            raise RuntimeError(f"cannot listen for gRPC on {address}: {e}") from None
        await self.server.start()
        self.app.grpc_clients = self.clients
        log.info("gRPC (Open Inference Protocol) listening on %s", address)
        return self

    def stop(self) -> asyncio.Future[None]:
        """Refuse new calls now; the result completes when the calls in flight are answered
        (cancelled after the grace period). Runs beside the HTTP drain."""
        if self.server is None:
            done: asyncio.Future[None] = self.loop.create_future()
            done.set_result(None)
            return done
        return asyncio.ensure_future(self.server.stop(self.s.grace_seconds))

    def clients(self) -> int:
        """How many gRPC calls could still join a batch, for the batcher's "everyone is in" check.

        HTTP/1.1 clients are counted by their open connections. A gRPC client's next call is
        invisible until grpc.aio hands it over, one call per round trip through its poller
        thread, so concurrent calls reach the batcher one after another, never in one turn of
        the loop: without --max-batch-wait-ms waiting would gather nothing, and the batch runs
        at once. With it, one more call is assumed to be on its way while calls overlapped
        lately (a call arrived while another was in flight), so the batch waits for it; a lone
        caller never overlaps and is answered at once, except for one call every
        ``probe_every`` seconds, which waits to find out whether others have come.
        """
        if not self.in_flight or not self.wait_for_more:
            return self.in_flight
        now = self.loop.time()
        if now < self.overlapping_until:
            return self.in_flight + 1
        if now >= self.next_probe:
            self.next_probe = now + self.probe_every
            return self.in_flight + 1
        return self.in_flight

    # --- RPCs -----------------------------------------------------------------------------
    def _handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        def unary(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        return {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            # bytes in, bytes out: the app decodes (off the loop when large) and encodes
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.model_infer),
        }

    async def server_live(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerReadyResponse(ready=self.app.is_ready())

    async def model_ready(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await self._check_model(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=self.app.is_ready())

    async def server_metadata(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerMetadataResponse(**self.app.server_metadata())

    async def model_metadata(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await self._check_model(request.name, request.version, context)
        m = self.app.metadata
        if not m:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"model {self.s.name!r} is not ready yet")

        def tensors(ts: list[dict[str, Any]]) -> list[Any]:
            return [pb.ModelMetadataResponse.TensorMetadata(**t) for t in ts]

        return pb.ModelMetadataResponse(
            name=m["name"], versions=m["versions"], platform=m["platform"],
            inputs=tensors(m["inputs"]), outputs=tensors(m["outputs"]),
        )  # fmt: skip

    async def _check_model(self, name: str, version: str, context: aio.ServicerContext[Any, Any]) -> None:
        try:
            check_model(name, version, self.s.name, self.s.version)
        except ClientError as e:
            await context.abort(STATUS_CODES[e.status], str(e))

    async def model_infer(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        answer: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()

        def reply(status: int, out: bytes, ctype: bytes, extra: bytes) -> None:
            if not answer.done():  # not cancelled by the client meanwhile
                answer.set_result((status, out))

        if self.in_flight:
            self.overlapping_until = self.loop.time() + OVERLAP_SECONDS
        self.in_flight += 1
        try:
            self.app.infer(reply, GRPC, body, time.perf_counter())
            status, out = await answer
        finally:
            self.in_flight -= 1
        if status == 200:
            return out
        # an error's body is the app's {"error": message}
        await context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), orjson.loads(out)["error"])
