"""The modelroll App behind other HTTP layers, for the benchmark's layer comparison (I/O).

The very App that ``modelroll-server serve`` serves (settings from the usual
``MODELROLL_SERVER_*`` variables), for each layer's own command line (bench.py starts them):

- ``uvicorn --http layers:HttpToolsCounted --loop uvloop --lifespan on layers:asgi``: a bare
  ASGI callable on uvicorn's httptools protocol;
- ``granian --interface rsgi layers:rsgi`` and ``granian --interface asgi layers:asgi``.

Each worker builds ``App(settings, metrics, loop)`` on its own loop when the server starts
(ASGI lifespan, or granian's ``__rsgi_init__``), hands it the loaded and warmed model, and
per request calls ``app.dispatch(method, path, body, reply)``; ``reply`` resolves a future
that the request's task awaits, and the task sends the answer. Only the HTTP framing differs
from our own layer (connection.py).

The batcher asks ``app.open_connections()`` whether every client is already waiting on the
batch (then it runs at once instead of on the loop's next turn). uvicorn knows its open
connections: a one-line subclass of its httptools protocol hands its set to the app. granian
parses HTTP on its own threads and tells Python nothing about connections; counting requests
in flight instead would make every batch a batch of one (each request would find every
in-flight request already waiting), so under granian the batch always closes on the loop's
next turn (``open_connections`` is unbounded).

uvicorn and granian come from a directory of their own under the benchmark's cache (run.sh
puts it on PYTHONPATH), not from the project's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

UNBOUNDED = 1 << 30


def _build_app(loop: asyncio.AbstractEventLoop) -> Any:
    """The App of one worker, serving its model, exactly as worker.serve builds it."""
    from modelroll_server.app import App
    from modelroll_server.config import load_settings
    from modelroll_server.loading import warm_up
    from modelroll_server.metrics import Metrics
    from modelroll_server.worker import load

    settings = load_settings(argparse.Namespace())  # MODELROLL_SERVER_* only
    model = load(settings)
    warm_up(model)
    # one region: each layer's worker is its own process with its own App and metrics
    app = App(settings, Metrics(settings.name, settings.version, settings.track, regions=1), loop)
    app.model_loaded(model)
    return app


def _headers(ctype: bytes, length: int, extra: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", ctype), (b"content-length", b"%d" % length)]
    for line in extra.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
    return headers


Answer = tuple[int, bytes, bytes, bytes]


class Layer:
    """What both interfaces share: the App, and one awaited answer per request."""

    def __init__(self) -> None:
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: Callable[[], int] = lambda: UNBOUNDED

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.app = _build_app(loop)
        self.app.open_connections = lambda: self.connections()

    def answer(self, method: bytes, path: bytes, body: bytes) -> Awaitable[Answer]:
        assert self.loop is not None
        fut: asyncio.Future[Answer] = self.loop.create_future()

        def reply(status: int, out: bytes, ctype: bytes, extra: bytes) -> None:
            if not fut.done():
                fut.set_result((status, out, ctype, extra))

        self.app.dispatch(method, path, body, reply)
        return fut


class Asgi(Layer):
    """A bare ASGI 3 callable (uvicorn, and granian's ASGI interface)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            chunks = []
            while True:
                msg = await receive()
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body", False):
                    break
            method = scope["method"].encode()
            path = scope.get("raw_path") or scope["path"].encode()
            status, out, ctype, extra = await self.answer(method, path.split(b"?", 1)[0], b"".join(chunks))
            await send({"type": "http.response.start", "status": status, "headers": _headers(ctype, len(out), extra)})
            await send({"type": "http.response.body", "body": b"" if method == b"HEAD" else out})
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    try:
                        self.start(asyncio.get_running_loop())
                    except BaseException as e:
                        await send({"type": "lifespan.startup.failed", "message": f"{type(e).__name__}: {e}"})
                        raise
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


class Rsgi(Layer):
    """granian's RSGI interface; ``__rsgi_init__`` runs on the worker's loop before serving."""

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.start(loop)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        body = await proto()
        method = scope.method.encode()
        status, out, ctype, extra = await self.answer(method, scope.path.encode(), body)
        # granian writes content-length itself
        headers = [(k.decode(), v.decode()) for k, v in _headers(ctype, len(out), extra) if k != b"content-length"]
        if method == b"HEAD":
            proto.response_empty(status, headers)
        else:
            proto.response_bytes(status, headers, out)


asgi = Asgi()
rsgi = Rsgi()


@functools.cache
def _uvicorn_protocol() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsCounted(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol, unchanged, showing the app its set of open connections."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            conns = self.connections
            asgi.connections = conns.__len__

    return HttpToolsCounted


def __getattr__(name: str) -> Any:
    # uvicorn imports the protocol by name (--http layers:HttpToolsCounted); granian's
    # processes never ask for it, so they need no uvicorn
    if name == "HttpToolsCounted":
        return _uvicorn_protocol()
    raise AttributeError(name)
