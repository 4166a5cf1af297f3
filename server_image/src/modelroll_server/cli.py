"""``modelroll-server serve`` and ``modelroll-server fetch`` (process entry points)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

from modelroll_contract import (
    ENV_DIGEST,
    EXIT_BAD_CONFIGURATION,
    REASON_BAD_CONFIGURATION,
    REASON_FETCH_FAILED,
    REASON_INTEGRITY_MISMATCH,
    REASON_MODEL_LOAD_FAILED,
    TERMINATION_LOG,
)

from . import __version__
from .config import ConfigError, Settings, add_serve_arguments, load_settings

log = logging.getLogger("modelroll_server")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _run_worker(
    settings: Settings, metrics: object, listener: socket.socket, model: object, drift: object = None
) -> int:
    from .worker import serve

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(serve(settings, metrics, listener, model, drift))  # type: ignore[arg-type]


def serve_command(settings: Settings) -> int:
    """Load the model once, bind, then serve it in this process or in forked workers."""
    import gc

    import uvloop  # noqa: F401 - imported before forking, so workers share its pages

    from .errors import LoadError
    from .metrics import Metrics
    from .worker import bind, load, stopped

    try:
        model = load(settings)
    except LoadError as e:
        log.error("cannot serve: %s", e.reason)
        reason = REASON_INTEGRITY_MISMATCH if e.integrity else REASON_MODEL_LOAD_FAILED
        return stopped(settings.termination_log, reason, e.reason)
    log.info("model %s version %s (%s, sha256:%s) loaded in %.3fs", settings.name, settings.version,
             type(model.estimator).__name__, model.sha256, model.load_seconds)  # fmt: skip
    drift = None
    if settings.reference:
        from .drift import MAX_FEATURES, DriftLayout, ReferenceRefused, read_reference

        # The model loaded; what is wrong is the pairing the configuration names, so a
        # reference this model cannot use is BadConfiguration, not ModelLoadFailed.
        try:
            drift = DriftLayout.of(read_reference(settings.reference, model), model.allow_nan)
        except ReferenceRefused as e:
            log.error("bad configuration: %s", e)
            return stopped(settings.termination_log, REASON_BAD_CONFIGURATION, f"--reference: {e}")
        if drift.ignored:
            log.warning("drift: watching the first %d features; the other %d are not watched",
                        MAX_FEATURES, drift.ignored)  # fmt: skip
    if settings.grpc_port:
        # Imported here, so its modules are one copy shared by every worker rather than one
        # per worker (about 5 MiB each); importing starts no gRPC thread, serving does (worker.py).
        from . import grpc_service  # noqa: F401
    if settings.shadow_config:
        from . import shadow  # noqa: F401 - likewise, and it imports gRPC too
    # What exists now lives as long as the process: keep it out of the collector's view, so
    # a collection neither stalls requests nor writes to pages the workers share.
    gc.collect()
    gc.freeze()
    # bound only now: until the model is ready a client is refused at once, not left waiting
    try:
        listener = bind(settings)
    except OSError as e:
        log.error("bad configuration: %s", e)
        return stopped(settings.termination_log, REASON_BAD_CONFIGURATION, str(e))
    metrics = Metrics(settings.name, settings.version, settings.track, regions=settings.workers,
                      extra_slots=drift.size if drift is not None else 0)  # fmt: skip
    # before forking: the window of recent predictions, one region per worker (feedback.py)
    from . import feedback

    feedback.share(settings.feedback_window_rows, settings.workers, settings.feedback_max_age_seconds)
    if settings.workers == 1:
        return _run_worker(settings, metrics, listener, model, drift)
    return _supervise(settings, metrics, listener, model, drift)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
CRASH_LOOP_SECONDS = 5.0  # a worker that dies sooner than this after its fork is crash-looping
MAX_BACKOFF_SECONDS = 30.0


def _supervise(
    settings: Settings, metrics: object, listener: socket.socket, model: object, drift: object = None
) -> int:
    """Fork one worker per --workers on the shared listener; replace a worker that dies.

    Workers are forked from this process, which holds the loaded model: a replacement is
    ready as soon as it starts (no 503 while loading), and the model's pages are shared.
    """
    children: dict[int, int] = {}  # pid -> region index
    started: dict[int, float] = {}  # region index -> when its worker was forked
    backoff: dict[int, float] = {}  # region index -> wait before its next fork
    stopping = False

    def spawn(index: int) -> None:
        started[index] = time.monotonic()
        # A SIGTERM arriving mid-fork must neither run this supervisor's handler in the child
        # (the child would go on serving with its stop request lost) nor find the parent
        # without the child in ``children``: hold signals until each side is set up.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a pending stop ends it here
                metrics.use_region(index)  # type: ignore[attr-defined]
                metrics.worker_restarted()  # type: ignore[attr-defined]
                from . import feedback

                feedback.use_region(index)
                code = _run_worker(settings, metrics, listener, model, drift)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        children[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        listener.close()  # the port closes once the workers, having drained its queue, close theirs
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(settings.workers):
        spawn(i)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            exit_code = exit_code or (code if code > 0 else 0)
            continue
        # a worker that dies at once (say, its gRPC port is taken) is not forked in a tight loop
        quick = time.monotonic() - started[index] < CRASH_LOOP_SECONDS
        backoff[index] = min(2 * backoff.get(index, 0.5), MAX_BACKOFF_SECONDS) if quick else 0.0
        log.error("worker %d exited with %s; starting a new one in %.1fs", pid, code, backoff[index])
        time.sleep(backoff[index])  # a signal meanwhile sets ``stopping``
        if not stopping:
            spawn(index)
    return exit_code


def fetch_command(args: argparse.Namespace) -> int:
    from .fetch import FetchError, fetch
    from .worker import stopped

    try:
        sha = fetch(args.uri, args.dest, args.digest)
    except FetchError as e:
        log.error("fetch failed: %s", e)
        return stopped(args.termination_log, REASON_INTEGRITY_MISMATCH if e.integrity else REASON_FETCH_FAILED, str(e))
    except Exception as e:
        log.exception("fetch failed")
        return stopped(args.termination_log, REASON_FETCH_FAILED, f"{type(e).__name__}: {e}")
    log.info("fetched %s to %s (sha256:%s)", args.uri, args.dest, sha)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelroll-server", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("serve", help="serve a model (flags or MODELROLL_SERVER_* env)")
    add_serve_arguments(sp)
    fp = sub.add_parser("fetch", help="copy a model artifact to a local path, verified")
    fp.add_argument("uri", help="file://, a path, http(s)://, s3://BUCKET/KEY, gs://BUCKET/OBJECT, az://CONTAINER/BLOB")
    fp.add_argument("dest", help="where to write the artifact")
    fp.add_argument("--digest", default=os.environ.get(ENV_DIGEST) or None,
                    help="sha256:HEX the artifact must have")  # fmt: skip
    fp.add_argument("--termination-log", default=TERMINATION_LOG,
                    help="file that receives a one-line reason on failure")  # fmt: skip
    args = p.parse_args(argv)
    if args.command == "fetch":
        _setup_logging("INFO")
        return fetch_command(args)
    try:
        settings = load_settings(args)
    except ConfigError as e:
        _setup_logging("INFO")
        log.error("bad configuration: %s", e)
        return EXIT_BAD_CONFIGURATION
    _setup_logging(settings.log_level)
    return serve_command(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
