"""The operator's configuration, read once at startup from ``MODELROLL_*`` variables.

A bad value stops startup with a message naming the variable, rather than surfacing
later as a confusing reconcile error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_SERVER_IMAGE = "ghcr.io/modelroll/modelroll-server:0.1.0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    server_image: str = DEFAULT_SERVER_IMAGE
    resync_seconds: float = 300.0
    log_level: str = "INFO"
    log_json: bool = False
    metrics_port: int = 8081  # /metrics and /healthz
    workers: int = 8  # concurrent reconciles
    prometheus_url: str | None = None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={raw!r} must be between {lo:g} and {hi:g}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be true or false")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    namespaces = tuple(n.strip() for n in env.get("MODELROLL_NAMESPACES", "").split(",") if n.strip())
    level = env.get("MODELROLL_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"MODELROLL_LOG_LEVEL={level!r} must be one of {', '.join(LOG_LEVELS)}")
    image = env.get("MODELROLL_SERVER_IMAGE", DEFAULT_SERVER_IMAGE).strip()
    if not image or any(ch.isspace() for ch in image):
        raise SettingsError(f"MODELROLL_SERVER_IMAGE={image!r} is not an image reference")
    prometheus = env.get("MODELROLL_PROMETHEUS_URL") or None
    if prometheus and not prometheus.startswith(("http://", "https://")):
        raise SettingsError(f"MODELROLL_PROMETHEUS_URL={prometheus!r} must be an http(s) URL")
    return Settings(
        namespaces=namespaces,
        server_image=image,
        resync_seconds=_number(env, "MODELROLL_RESYNC_SECONDS", 300.0, 0.5, 86400.0),
        log_level=level,
        log_json=_bool(env, "MODELROLL_LOG_JSON", False),
        metrics_port=int(_number(env, "MODELROLL_METRICS_PORT", 8081, 0, 65535)),
        workers=int(_number(env, "MODELROLL_WORKERS", 8, 1, 256)),
        prometheus_url=prometheus,
    )
