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
    # How often an API that is not installed (the Gateway API's HTTPRoute) is looked for again:
    # the bound on noticing CRDs installed after the operator started.
    discovery_seconds: float = 10.0
    # Leader election on a Lease (off for local runs; the Helm chart turns it on).
    leader_election: bool = False
    leader_election_namespace: str = ""  # empty: the Pod's own namespace, else "default"
    leader_election_lease: str = "modelroll-operator"
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0

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
    lease = _number(env, "MODELROLL_LEADER_ELECTION_LEASE_SECONDS", 15.0, 2, 3600)
    deadline = _number(env, "MODELROLL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS", 10.0, 1, 3600)
    retry = _number(env, "MODELROLL_LEADER_ELECTION_RETRY_SECONDS", 2.0, 0.1, 3600)
    if not retry < deadline < lease:
        raise SettingsError(
            "MODELROLL_LEADER_ELECTION_RETRY_SECONDS < MODELROLL_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"
            f" < MODELROLL_LEADER_ELECTION_LEASE_SECONDS must hold (got {retry:g} < {deadline:g} < {lease:g})"
        )
    lease_name = env.get("MODELROLL_LEADER_ELECTION_LEASE", "").strip() or "modelroll-operator"
    return Settings(
        leader_election=_bool(env, "MODELROLL_LEADER_ELECTION", False),
        leader_election_namespace=env.get("MODELROLL_LEADER_ELECTION_NAMESPACE", "").strip(),
        leader_election_lease=lease_name,
        lease_seconds=lease,
        renew_deadline_seconds=deadline,
        retry_seconds=retry,
        namespaces=namespaces,
        server_image=image,
        resync_seconds=_number(env, "MODELROLL_RESYNC_SECONDS", 300.0, 0.5, 86400.0),
        log_level=level,
        log_json=_bool(env, "MODELROLL_LOG_JSON", False),
        metrics_port=int(_number(env, "MODELROLL_METRICS_PORT", 8081, 0, 65535)),
        workers=int(_number(env, "MODELROLL_WORKERS", 8, 1, 256)),
        prometheus_url=prometheus,
        discovery_seconds=_number(env, "MODELROLL_DISCOVERY_SECONDS", 10.0, 0.5, 3600.0),
    )
