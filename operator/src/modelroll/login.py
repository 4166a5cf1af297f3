"""Where kopf's own requests (watches, discovery) go: the same API server, reached the same way,
as the lightkube client's (``KubeConfig.from_env()``: in-cluster first, then KUBECONFIG).

kopf's built-in in-cluster login names ``https://kubernetes.default.svc``, which only resolves
with cluster DNS; client-go and lightkube use the ``KUBERNETES_SERVICE_HOST`` / ``_PORT`` the
kubelet puts into every container (the ``kubernetes`` Service's ClusterIP), which need none.
Without this, an operator Pod on a cluster without DNS (or with DNS down) elects a leader
through lightkube but never sees a single watch event.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster(
    trust_env: bool = False, env: Mapping[str, str] | None = None, account: Path = SERVICE_ACCOUNT
) -> kopf.ConnectionInfo | None:
    """The Pod's ServiceAccount and the ``kubernetes`` Service's address, or None outside a Pod.

    The token is read at every call: kopf logs in again on a 401, and the kubelet rotates the
    projected token file."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    try:
        token = (account / "token").read_text().strip()
    except OSError:
        return None
    if not host or not port or not token:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        namespace = (account / "namespace").read_text().strip() or None
    except OSError:
        namespace = None
    ca = account / "ca.crt"
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(ca) if ca.is_file() else None,
        token=token,
        default_namespace=namespace,
        trust_env=trust_env,
    )


def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf login handler: in-cluster as above, else kopf's own KUBECONFIG login."""
    info = in_cluster(settings.networking.trust_env)
    if info is not None:
        return info
    return kopf.login_with_kubeconfig(settings=settings, **kwargs)
