"""The server's settings: command-line flags, each also settable from MODELROLL_SERVER_* env.

Loaded once at startup; a bad value raises ``ConfigError`` naming the flag and its variable.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import MISSING, dataclass, field, fields

from modelroll_contract import (
    ENV_DIGEST,
    ENV_FEEDBACK_KEY,
    ENV_FEEDBACK_MAX_AGE_SECONDS,
    ENV_FEEDBACK_WINDOW_ROWS,
    ENV_FORMAT,
    ENV_GRACE_SECONDS,
    ENV_GRPC_PORT,
    ENV_HOST,
    ENV_LOG_LEVEL,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BATCH_WAIT_MS,
    ENV_MAX_BODY_BYTES,
    ENV_METHOD,
    ENV_MODEL,
    ENV_NAME,
    ENV_POD_IP,
    ENV_PORT,
    ENV_PREFIX,
    ENV_REFERENCE,
    ENV_SHADOW_CONFIG,
    ENV_SHADOW_QUEUE_BYTES,
    ENV_TERMINATION_LOG,
    ENV_TRACK,
    ENV_TRUSTED_TYPES,
    ENV_VERSION,
    ENV_WORKERS,
    GRPC_PORT,
    METHODS,
    MODEL_FORMATS,
    SERVER_PORT,
    TERMINATION_LOG,
    TRACKS,
)

from .feedback_ids import MIN_KEY_BYTES
from .loading import parse_digest


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """Every setting with its default (the one place defaults live; flags derive from it)."""

    model: str
    name: str
    version: str = "1"
    track: str = "stable"
    host: str = "0.0.0.0"
    port: int = SERVER_PORT
    grpc_port: int = GRPC_PORT  # 0: no gRPC
    workers: int = 1
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    method: str = "predict"
    digest: str | None = None
    format: str | None = None
    # 8 MiB (about 20,000 rows of 20 features as JSON): parsing it holds the GIL for ~30 ms,
    # so probes stay answered within 100 ms while the largest allowed request is decoded
    max_body_bytes: int = 8 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line + headers (kube-proxy and ingress caps are similar)
    max_concurrent_requests: int = 1024  # per worker, requests with a body; beyond: 503
    header_timeout_seconds: float = 10.0  # to send the request line and headers
    body_timeout_seconds: float = 30.0  # longest silence mid-body, or while not reading our answers
    keep_alive_seconds: float = 75.0  # idle keep-alive; above the usual client pool idle timeouts
    trusted_types: tuple[str, ...] = field(default_factory=tuple)
    grace_seconds: float = 25.0
    shadow_config: str | None = None  # the file naming the canary to copy requests to (shadow.py)
    shadow_queue_bytes: int = 16 * 1024 * 1024  # per worker, of copied rows waiting to be sent
    # predictions kept for late labels (feedback.py), per worker: about 72 bytes a row; 0: off
    feedback_window_rows: int = 100_000
    feedback_max_age_seconds: float = 3600.0  # an older prediction is unmatched
    # Labels for another Pod's predictions go to that Pod (feedback_forward.py): ids name this
    # address and --port when the ModelDeployment's key is set too; without either, ids stay local.
    pod_ip: str | None = None
    feedback_key: str | None = field(default=None, repr=False)  # env only (ENV_ONLY), never logged
    reference: str | None = None  # the model's reference.json: drift metrics (drift.py)
    termination_log: str = TERMINATION_LOG
    log_level: str = "INFO"


# flag -> its environment variable
_ENV: dict[str, str] = {
    "model": ENV_MODEL,
    "name": ENV_NAME,
    "version": ENV_VERSION,
    "track": ENV_TRACK,
    "host": ENV_HOST,
    "port": ENV_PORT,
    "grpc_port": ENV_GRPC_PORT,
    "workers": ENV_WORKERS,
    "max_batch_size": ENV_MAX_BATCH_SIZE,
    "max_batch_wait_ms": ENV_MAX_BATCH_WAIT_MS,
    "method": ENV_METHOD,
    "digest": ENV_DIGEST,
    "format": ENV_FORMAT,
    "max_body_bytes": ENV_MAX_BODY_BYTES,
    "max_header_bytes": ENV_PREFIX + "MAX_HEADER_BYTES",
    "max_concurrent_requests": ENV_PREFIX + "MAX_CONCURRENT_REQUESTS",
    "header_timeout_seconds": ENV_PREFIX + "HEADER_TIMEOUT_SECONDS",
    "body_timeout_seconds": ENV_PREFIX + "BODY_TIMEOUT_SECONDS",
    "keep_alive_seconds": ENV_PREFIX + "KEEP_ALIVE_SECONDS",
    "trusted_types": ENV_TRUSTED_TYPES,
    "grace_seconds": ENV_GRACE_SECONDS,
    "shadow_config": ENV_SHADOW_CONFIG,
    "shadow_queue_bytes": ENV_SHADOW_QUEUE_BYTES,
    "feedback_window_rows": ENV_FEEDBACK_WINDOW_ROWS,
    "feedback_max_age_seconds": ENV_FEEDBACK_MAX_AGE_SECONDS,
    "pod_ip": ENV_POD_IP,
    "feedback_key": ENV_FEEDBACK_KEY,
    "reference": ENV_REFERENCE,
    "termination_log": ENV_TERMINATION_LOG,
    "log_level": ENV_LOG_LEVEL,
}
# secrets have no flag: a flag's value is in the process list for every user of the machine
ENV_ONLY = frozenset({"feedback_key"})
_FIELDS = {f.name: f for f in fields(Settings)}
_TYPES = {"int": int, "float": float}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    for flag, env in _ENV.items():
        if flag in ENV_ONLY:
            continue
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, default=None, help=f"(env {env})")


def _convert(flag: str, raw: str) -> object:
    f = _FIELDS[flag]
    if flag == "trusted_types":
        return tuple(t.strip() for t in raw.split(",") if t.strip())
    if flag == "log_level":
        return raw.upper()
    typ = _TYPES.get(str(f.type).split(" ")[0], str)
    value = typ(raw)
    if f.default is None and value == "":
        return None  # an empty optional (digest, format) is unset
    return value


def load_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over env, env over defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for flag, var in _ENV.items():
        raw = getattr(args, flag, None)
        source = "--" + flag.replace("_", "-")
        if raw is None and env.get(var, "") != "":
            raw, source = env[var], var
        if raw is None:
            if _FIELDS[flag].default is MISSING and _FIELDS[flag].default_factory is MISSING:
                raise ConfigError(f"--{flag.replace('_', '-')} (or {var}) is required")
            continue
        try:
            values[flag] = _convert(flag, raw)
        except ValueError:
            raise ConfigError(f"{source}: expected {_FIELDS[flag].type}, got {raw!r}") from None
    s = Settings(**values)  # type: ignore[arg-type]
    _validate(s)
    return s


def _validate(s: Settings) -> None:
    def bad(flag: str, msg: str) -> ConfigError:
        name = flag.replace("-", "_")
        return ConfigError(f"{_ENV[name]}: {msg}" if name in ENV_ONLY else f"--{flag} ({_ENV[name]}): {msg}")

    if s.track not in TRACKS:
        raise bad("track", f"must be one of {', '.join(TRACKS)}, got {s.track!r}")
    if s.method not in METHODS:
        raise bad("method", f"must be one of {', '.join(METHODS)}, got {s.method!r}")
    if not 0 < s.port < 65536:
        raise bad("port", f"must be 1-65535, got {s.port}")
    if not 0 <= s.grpc_port < 65536:
        raise bad("grpc-port", f"must be 1-65535, or 0 for no gRPC, got {s.grpc_port}")
    if s.grpc_port == s.port:
        raise bad("grpc-port", f"must differ from --port ({s.port})")
    if s.workers < 1:
        raise bad("workers", f"must be at least 1, got {s.workers}")
    if s.max_batch_size < 1:
        raise bad("max-batch-size", f"must be at least 1, got {s.max_batch_size}")
    if s.max_batch_wait_ms < 0:
        raise bad("max-batch-wait-ms", f"must be >= 0, got {s.max_batch_wait_ms}")
    for flag in ("max_body_bytes", "max_header_bytes", "max_concurrent_requests", "shadow_queue_bytes"):
        if getattr(s, flag) < 1:
            raise bad(flag.replace("_", "-"), f"must be positive, got {getattr(s, flag)}")
    if s.feedback_window_rows < 0:
        raise bad("feedback-window-rows", f"must be >= 0 (0: no feedback window), got {s.feedback_window_rows}")
    for flag in ("header_timeout_seconds", "body_timeout_seconds", "keep_alive_seconds", "grace_seconds",
                 "feedback_max_age_seconds"):  # fmt: skip
        if not getattr(s, flag) > 0:
            raise bad(flag.replace("_", "-"), f"must be positive, got {getattr(s, flag)}")
    if s.pod_ip is not None:
        try:
            ipaddress.ip_address(s.pod_ip)
        except ValueError:
            raise bad("pod-ip", f"must be an IP address (the Pod's, status.podIP), got {s.pod_ip!r}") from None
    if s.feedback_key is not None and len(s.feedback_key.encode()) < MIN_KEY_BYTES:
        # the value is never echoed: it is a secret, even when it is a bad one
        raise bad("feedback-key", f"must be at least {MIN_KEY_BYTES} bytes long")
    if s.format is not None and s.format not in MODEL_FORMATS:
        raise bad("format", f"must be one of {', '.join(MODEL_FORMATS)}, got {s.format!r}")
    try:
        parse_digest(s.digest)
    except ValueError as e:
        raise bad("digest", str(e)) from None
