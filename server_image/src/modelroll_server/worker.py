"""Running one worker: load (unless the supervisor already did), serve, drain on SIGTERM.

The model is loaded before the worker takes a single connection, so a worker never answers
503 because it is still loading; with several workers the supervisor loads it once before
forking and every worker shares those pages (cli.py). Draining stops accepting, accepts what
is already waiting in the listen queue (those clients were promised a server), answers every
request read, and returns when the connections are gone or the grace period is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket

from modelroll_contract import EXIT_CODE_BY_REASON, termination_message

from .app import App
from .config import Settings
from .connection import HttpServer
from .drift import Drift, DriftLayout
from .errors import LoadError
from .loading import LoadedModel, load_model, warm_up
from .metrics import Metrics

log = logging.getLogger("modelroll_server")


def stopped(termination_log: str, reason: str, detail: str) -> int:
    """Leave ``Reason: detail`` in the termination log; the exit code that says the reason."""
    try:
        with open(termination_log, "w") as f:
            f.write(termination_message(reason, detail)[:4000] + "\n")
    except OSError:
        pass
    return EXIT_CODE_BY_REASON[reason]


def load(settings: Settings) -> LoadedModel:
    """The model this server serves, or LoadError with the one line the operator shows."""
    try:
        model = load_model(settings.model, settings.format, settings.digest, list(settings.trusted_types))
    except LoadError:
        raise
    except Exception as e:  # anything else while loading is a load failure too
        raise LoadError(f"cannot load model: {type(e).__name__}: {e}") from e
    if settings.method == "predict_proba" and not model.has_proba:
        raise LoadError(f"--method predict_proba, but {type(model.estimator).__name__} has no predict_proba")
    return model


def bind(settings: Settings) -> socket.socket:
    """The HTTP listener, after checking that the gRPC port is free too (OSError naming it if not)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    if settings.grpc_port:
        # Each worker binds gRPC itself, with SO_REUSEPORT; without that option this bind fails
        # on any socket already there, so a second server is refused instead of joining it.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((settings.host, settings.grpc_port))
            except OSError as e:
                raise OSError(f"--grpc-port (MODELROLL_SERVER_GRPC_PORT): cannot listen for gRPC on "
                              f"{settings.host}:{settings.grpc_port}: {e.strerror}") from None  # fmt: skip
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        sock.close()
        raise OSError(f"--port (MODELROLL_SERVER_PORT): cannot listen on {settings.host}:{settings.port}: "
                      f"{e.strerror}") from None  # fmt: skip
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _accept_waiting(listener: socket.socket) -> list[socket.socket]:
    """Every connection already in the listen queue (the kernel completed their handshake)."""
    waiting: list[socket.socket] = []
    while True:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return waiting
        except OSError:
            return waiting
        conn.setblocking(False)
        waiting.append(conn)


async def serve(
    settings: Settings,
    metrics: Metrics,
    listener: socket.socket,
    model: LoadedModel,
    drift: DriftLayout | None = None,
) -> int:
    """Serve ``model`` on ``listener`` until SIGTERM/SIGINT, then drain; returns 0."""
    loop = asyncio.get_running_loop()
    # not at the top: only a server with a gRPC port loads gRPC (cli.py imports it before forking)
    from .grpc_service import GrpcService

    warm_up(model)  # in this process: thread pools and lazily built state exist before the first client
    app = App(settings, metrics, loop)
    app.model_loaded(model)
    shadow = None
    if settings.shadow_config:
        from .shadow import Shadow

        shadow = Shadow(settings.shadow_config, settings.name, model, metrics, settings.shadow_queue_bytes)
        assert app.batcher is not None
        app.batcher.after_batch.append(shadow.after_batch)
        shadow.start()
    if drift is not None:
        assert app.batcher is not None
        app.batcher.after_batch.append(Drift(drift, metrics, loop).after_batch)
    grpc = await GrpcService(app, settings).start()
    http = HttpServer(app, settings)
    # the server owns (and closes) a copy; ours stays open to take the listen queue at the end
    server = await loop.create_server(http.protocol, sock=listener.dup(), backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %d listening on %s:%d", os.getpid(), settings.host, settings.port)
    await stop.wait()
    log.info("worker %d stopping: no new connections, finishing in-flight requests", os.getpid())
    server.close()
    grpc_stopped = grpc.stop()  # drains beside HTTP, with the same grace period
    deadline = loop.time() + settings.grace_seconds
    while True:
        for conn in _accept_waiting(listener):
            await loop.connect_accepted_socket(http.protocol, conn)
        http.drained.clear()
        http.start_draining()
        try:
            await asyncio.wait_for(http.drained.wait(), timeout=max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("grace period over with %d connections open; closing them", len(http.conns))
            break
        if not _connections_waiting(listener):
            break
    listener.close()
    http.stop()
    await grpc_stopped
    if shadow is not None:
        await shadow.stop()  # copies still queued are dropped: our clients were answered
    return 0


def _connections_waiting(listener: socket.socket) -> bool:
    with contextlib.suppress(OSError, ValueError):
        readable, _, _ = select.select([listener], [], [], 0)
        return bool(readable)
    return False
