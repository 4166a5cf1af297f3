"""The server's settings: command-line flags, each also settable from MODELROLL_SERVER_* env.

Loaded once at startup; a bad value raises ``ConfigError`` naming the flag and its variable.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from modelroll_contract import (
    ENV_DIGEST,
    ENV_FORMAT,
    ENV_GRACE_SECONDS,
    ENV_HOST,
    ENV_LOG_LEVEL,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BATCH_WAIT_MS,
    ENV_MAX_BODY_BYTES,
    ENV_METHOD,
    ENV_MODEL,
    ENV_NAME,
    ENV_PORT,
    ENV_TERMINATION_LOG,
    ENV_TRACK,
    ENV_TRUSTED_TYPES,
    ENV_VERSION,
    ENV_WORKERS,
    SERVER_PORT,
    TERMINATION_LOG,
    TRACKS,
)

from .loading import FORMATS, parse_digest


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    model: str
    name: str
    version: str = "1"
    track: str = "stable"
    host: str = "0.0.0.0"
    port: int = SERVER_PORT
    workers: int = 1
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    method: str = "predict"
    digest: str | None = None
    format: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    trusted_types: tuple[str, ...] = field(default_factory=tuple)
    grace_seconds: float = 25.0
    termination_log: str = TERMINATION_LOG
    log_level: str = "INFO"


# flag -> (env variable, type, default); None default = required
_FLAGS: dict[str, tuple[str, type, object]] = {
    "model": (ENV_MODEL, str, None),
    "name": (ENV_NAME, str, None),
    "version": (ENV_VERSION, str, "1"),
    "track": (ENV_TRACK, str, "stable"),
    "host": (ENV_HOST, str, "0.0.0.0"),
    "port": (ENV_PORT, int, SERVER_PORT),
    "workers": (ENV_WORKERS, int, 1),
    "max_batch_size": (ENV_MAX_BATCH_SIZE, int, 64),
    "max_batch_wait_ms": (ENV_MAX_BATCH_WAIT_MS, float, 0.0),
    "method": (ENV_METHOD, str, "predict"),
    "digest": (ENV_DIGEST, str, ""),
    "format": (ENV_FORMAT, str, ""),
    "max_body_bytes": (ENV_MAX_BODY_BYTES, int, 16 * 1024 * 1024),
    "trusted_types": (ENV_TRUSTED_TYPES, str, ""),
    "grace_seconds": (ENV_GRACE_SECONDS, float, 25.0),
    "termination_log": (ENV_TERMINATION_LOG, str, TERMINATION_LOG),
    "log_level": (ENV_LOG_LEVEL, str, "INFO"),
}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    for flag, (env, typ, _default) in _FLAGS.items():
        p.add_argument(
            "--" + flag.replace("_", "-"),
            dest=flag,
            default=None,
            help=f"(env {env})",
            type=str if typ is not bool else str,
        )


def load_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over env, env over defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for flag, (var, typ, default) in _FLAGS.items():
        raw = getattr(args, flag, None)
        source = "--" + flag.replace("_", "-")
        if raw is None and env.get(var, "") != "":
            raw, source = env[var], var
        if raw is None:
            if default is None:
                raise ConfigError(f"--{flag.replace('_', '-')} (or {var}) is required")
            values[flag] = default
            continue
        try:
            values[flag] = typ(raw)
        except ValueError:
            raise ConfigError(f"{source}: expected {typ.__name__}, got {raw!r}") from None
    s = Settings(
        model=str(values["model"]),
        name=str(values["name"]),
        version=str(values["version"]),
        track=str(values["track"]),
        host=str(values["host"]),
        port=int(values["port"]),  # type: ignore[call-overload]
        workers=int(values["workers"]),  # type: ignore[call-overload]
        max_batch_size=int(values["max_batch_size"]),  # type: ignore[call-overload]
        max_batch_wait_ms=float(values["max_batch_wait_ms"]),  # type: ignore[arg-type]
        method=str(values["method"]),
        digest=str(values["digest"]) or None,
        format=str(values["format"]) or None,
        max_body_bytes=int(values["max_body_bytes"]),  # type: ignore[call-overload]
        trusted_types=tuple(t.strip() for t in str(values["trusted_types"]).split(",") if t.strip()),
        grace_seconds=float(values["grace_seconds"]),  # type: ignore[arg-type]
        termination_log=str(values["termination_log"]),
        log_level=str(values["log_level"]).upper(),
    )
    _validate(s)
    return s


def _validate(s: Settings) -> None:
    def bad(flag: str, msg: str) -> ConfigError:
        return ConfigError(f"--{flag} ({_FLAGS[flag.replace('-', '_')][0]}): {msg}")

    if s.track not in TRACKS:
        raise bad("track", f"must be one of {', '.join(TRACKS)}, got {s.track!r}")
    if s.method not in ("predict", "predict_proba"):
        raise bad("method", f"must be predict or predict_proba, got {s.method!r}")
    if not 0 < s.port < 65536:
        raise bad("port", f"must be 1-65535, got {s.port}")
    if s.workers < 1:
        raise bad("workers", f"must be at least 1, got {s.workers}")
    if s.max_batch_size < 1:
        raise bad("max-batch-size", f"must be at least 1, got {s.max_batch_size}")
    if s.max_batch_wait_ms < 0:
        raise bad("max-batch-wait-ms", f"must be >= 0, got {s.max_batch_wait_ms}")
    if s.max_body_bytes < 1:
        raise bad("max-body-bytes", f"must be positive, got {s.max_body_bytes}")
    if s.format is not None and s.format not in FORMATS:
        raise bad("format", f"must be one of {', '.join(FORMATS)}, got {s.format!r}")
    try:
        parse_digest(s.digest)
    except ValueError as e:
        raise bad("digest", str(e)) from None
