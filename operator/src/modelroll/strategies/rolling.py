"""The Rolling strategy: one Deployment ``NAME-stable`` updated in place (pure).

Kubernetes' own rolling update (maxSurge / maxUnavailable from the spec) moves the Pods;
this module only reports it honestly: the previous revision stays ``stable`` until every
Pod of the new one is Ready, and the new one is shown as ``canary`` meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelroll_contract import TRACK_STABLE

from .. import conditions as c
from ..children import build_deployment, build_hpa, revision_of
from ..observed import pod_failure, pods_of_revision
from .context import Context
from .outcome import Outcome
from .tracks import identity, track_status


def plan_rolling(ctx: Context) -> Outcome:
    spec, owner, observed, previous = ctx.spec, ctx.owner, ctx.observed, ctx.status
    template = ctx.template(TRACK_STABLE)
    revision = revision_of(template)
    want = spec.replicas
    children = [build_deployment(spec, owner, TRACK_STABLE, template, want)]
    if spec.autoscaling:
        children.append(build_hpa(spec, owner))

    target = identity(spec, revision)
    before: Mapping[str, Any] = previous.get("stable") or {}
    first_rollout = not before or before.get("revision") == revision
    progress = ctx.progress(TRACK_STABLE, revision)
    label = spec.model.version or revision
    common: dict[str, Any] = {
        "children": children,
        "replicas": progress.replicas,
        "ready_replicas": progress.ready,
        "desired_replicas": want,
    }

    if progress.complete(want):
        history = previous.get("history") or [{}]
        promoted = None if history[0].get("revision") == revision else target
        reason = c.SCALED_TO_ZERO if want == 0 else c.ALL_READY
        message = f"{label} serving on {want}/{want} ready replicas" if want else f"{label} scaled to zero"
        return Outcome(
            **common,
            phase=c.HEALTHY,
            reason=c.ROLLOUT_COMPLETE,
            message=message,
            stable=track_status(target, observed, TRACK_STABLE),
            promoted=promoted,
            conditions=[
                c.condition(c.READY, True, reason, message),
                c.condition(c.PROGRESSING_COND, False, c.ROLLOUT_COMPLETE, f"revision {revision} rolled out"),
                c.condition(c.DEGRADED_COND, False, c.AS_EXPECTED, "no problems found"),
                c.condition(
                    c.MODEL_VERIFIED,
                    True if want else None,
                    c.DIGEST_VERIFIED if want else c.SCALED_TO_ZERO,
                    f"{spec.model.digest[:19]}… loaded and ready" if want else "no replicas to verify",
                ),
            ],
        )

    stable = (
        track_status(target, observed, TRACK_STABLE) if first_rollout else track_status(before, observed, TRACK_STABLE)
    )
    canary = None if first_rollout else track_status(target, observed, TRACK_STABLE)
    new_ready = track_status(target, observed)["readyReplicas"]
    failure = pod_failure(pods_of_revision(observed.pods, revision))
    verified = True if new_ready else (False if failure and failure[0] == c.INTEGRITY_MISMATCH else None)
    verified_cond = c.condition(
        c.MODEL_VERIFIED,
        verified,
        c.DIGEST_VERIFIED if new_ready else (failure[0] if failure else c.WAITING_FOR_PODS),
        f"{new_ready} Pod(s) of {revision} loaded the verified model"
        if new_ready
        else (failure[1] if failure else "waiting for a Pod of the new revision to load the model"),
    )
    old_note = "" if first_rollout else f"; {before.get('version') or before.get('revision')} keeps serving"

    if progress.deadline_exceeded:
        reason, detail = failure or (c.DEADLINE_EXCEEDED, "no Pod of the new revision became Ready")
        message = (
            f"rollout of {label} not Ready within {spec.progress_deadline_seconds}s: "
            f"{new_ready}/{want} ready; {detail}{old_note}"
        )
        return Outcome(
            **common,
            phase=c.DEGRADED,
            reason=reason,
            message=message,
            stable=stable,
            canary=canary,
            conditions=[
                c.condition(c.READY, False, reason, message),
                c.condition(c.PROGRESSING_COND, False, c.DEADLINE_EXCEEDED, message),
                c.condition(c.DEGRADED_COND, True, reason, message),
                verified_cond,
            ],
        )

    if not progress.exists:
        message = f"creating Deployment {owner.name}-{TRACK_STABLE} for {label}"
    else:
        message = (
            f"rolling out {label}: {progress.updated}/{want} updated, {new_ready}/{want} ready"
            f"{'; ' + failure[1] if failure else ''}{old_note}"
        )
    reason = c.CREATING if not progress.exists else c.ROLLING_OUT
    return Outcome(
        **common,
        phase=c.PROGRESSING,
        reason=reason,
        message=message,
        stable=stable,
        canary=canary,
        conditions=[
            c.condition(c.READY, False, c.WAITING_FOR_PODS, message),
            c.condition(c.PROGRESSING_COND, True, reason, message),
            c.condition(c.DEGRADED_COND, False, c.AS_EXPECTED, "no problems found"),
            verified_cond,
        ],
    )
