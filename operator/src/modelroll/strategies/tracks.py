"""Helpers every strategy shares: revision identities and per-track Pod counts (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelroll_contract import LABEL_REVISION, LABEL_TRACK, TRACK_CANARY, TRACK_STABLE

from ..children import build_pod_template
from ..observed import Observed, pod_is_ready
from ..spec import ModelDeploymentSpec

if TYPE_CHECKING:
    from .context import Context

IDENTITY_KEYS = ("revision", "version", "digest", "uri", "format", "method")


def identity(spec: ModelDeploymentSpec, revision: str) -> dict[str, Any]:
    """What status records about a revision: enough to name it and to rebuild it."""
    return {"revision": revision} | {key: getattr(spec.model, key) for key in IDENTITY_KEYS[1:]}


def track_status(ident: Mapping[str, Any], observed: Observed, track: str | None = None) -> dict[str, Any]:
    """``ident`` with the live and ready Pod counts of its revision (on ``track`` if given)."""
    live = ready = 0
    for pod in observed.pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels", {}) or {}
        if meta.get("deletionTimestamp") or labels.get(LABEL_REVISION) != ident["revision"]:
            continue
        if track and labels.get(LABEL_TRACK) != track:
            continue
        live += 1
        ready += pod_is_ready(pod)
    return {**{k: ident[k] for k in IDENTITY_KEYS if k in ident}, "replicas": live, "readyReplicas": ready}


def ready_on_track(observed: Observed, track: str) -> int:
    return sum(
        1
        for pod in observed.pods
        if (pod.get("metadata", {}).get("labels", {}) or {}).get(LABEL_TRACK) == track and pod_is_ready(pod)
    )


def canary_floor(ctx: Context) -> int:
    """Canary Pods the ready count still needs: canary Pods only go (abort, undo, a new
    revision, promotion) once the stable track alone has ``replicas`` ready Pods."""
    live = ctx.observed.deployments.get(ctx.name(TRACK_CANARY))
    current = int(((live or {}).get("spec") or {}).get("replicas") or 0)
    return min(current, max(0, ctx.replicas - ready_on_track(ctx.observed, TRACK_STABLE)))


def running_revision(dep: Mapping[str, Any] | None) -> str | None:
    """The revision a Deployment's Pod template runs."""
    template = (dep or {}).get("spec", {}).get("template") or {}
    return (template.get("metadata", {}).get("labels", {}) or {}).get(LABEL_REVISION)


def spec_for(spec: ModelDeploymentSpec, ident: Mapping[str, Any]) -> ModelDeploymentSpec:
    """``spec`` running the model of ``ident`` instead (to rebuild an older revision)."""
    model = dataclasses.replace(
        spec.model,
        uri=ident.get("uri", spec.model.uri),
        digest=ident.get("digest", spec.model.digest),
        version=ident.get("version", spec.model.version),
        format=ident.get("format", spec.model.format),
        method=ident.get("method", spec.model.method),
    )
    return dataclasses.replace(spec, model=model)


def hold_or_rebuild(ctx: Context, track: str, ident: Mapping[str, Any]) -> dict[str, Any] | None:
    """None if Deployment ``name`` runs ``ident`` and should be held as it is; otherwise the
    Pod template to rebuild it with (it was deleted, or runs something else).

    While a new revision is tried, the stable track keeps exactly what it runs, whatever the
    spec says now, so it is held rather than re-applied.
    """
    if running_revision(ctx.observed.deployments.get(ctx.name(track))) == ident.get("revision"):
        return None
    return build_pod_template(spec_for(ctx.spec, ident), ctx.owner, track, ctx.image)
