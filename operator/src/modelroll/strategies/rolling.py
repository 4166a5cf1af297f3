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
    spec, observed, previous = ctx.spec, ctx.observed, ctx.status
    template = ctx.template(TRACK_STABLE)
    revision, want = revision_of(template), spec.replicas
    children = [build_deployment(spec, ctx.owner, TRACK_STABLE, template, want)]
    if spec.autoscaling:
        children.append(build_hpa(spec, ctx.owner))

    target = identity(spec, revision)
    before: Mapping[str, Any] = previous.get("stable") or {}
    first_rollout = not before or before.get("revision") == revision
    progress = ctx.progress(TRACK_STABLE, revision)
    label = spec.model.version or revision
    stable = track_status(target if first_rollout else before, observed, TRACK_STABLE)
    canary = None if first_rollout else track_status(target, observed, TRACK_STABLE)
    promoted = None
    new_ready = track_status(target, observed)["readyReplicas"]
    failure = pod_failure(pods_of_revision(observed.pods, revision))
    verified: tuple[bool | None, str, str]
    if new_ready:
        verified = (True, c.DIGEST_VERIFIED, f"{new_ready} Pod(s) of {revision} loaded the verified model")
    elif failure:
        verified = (False if failure[0] == c.INTEGRITY_MISMATCH else None, *failure)
    else:
        verified = (None, c.WAITING_FOR_PODS, "waiting for a Pod of the new revision to load the model")
    old_note = "" if first_rollout else f"; {before.get('version') or before.get('revision')} keeps serving"
    trouble = (c.AS_EXPECTED, "no problems found")

    if progress.complete(want):
        history = previous.get("history") or [{}]
        stable, canary = track_status(target, observed, TRACK_STABLE), None
        promoted = None if history[0].get("revision") == revision else target
        message = f"{label} serving on {want}/{want} ready replicas" if want else f"{label} scaled to zero"
        phase, reason, ready = c.HEALTHY, c.ROLLOUT_COMPLETE, (True, c.SCALED_TO_ZERO if want == 0 else c.ALL_READY)
        progressing = (False, c.ROLLOUT_COMPLETE, f"revision {revision} rolled out")
        verified = (True, c.DIGEST_VERIFIED, f"{spec.model.digest[:19]}… loaded and ready")
        if not want:
            verified = (None, c.SCALED_TO_ZERO, "no replicas to verify")
    elif progress.deadline_exceeded:
        reason, detail = failure or (c.DEADLINE_EXCEEDED, "no Pod of the new revision became Ready")
        message = (
            f"rollout of {label} not Ready within {spec.progress_deadline_seconds}s: "
            f"{new_ready}/{want} ready; {detail}{old_note}"
        )
        phase, ready, trouble = c.DEGRADED, (False, reason), (reason, message)
        progressing = (False, c.DEADLINE_EXCEEDED, message)
    else:
        if not progress.exists:
            message = f"creating Deployment {ctx.name(TRACK_STABLE)} for {label}"
        else:
            message = (
                f"rolling out {label}: {progress.updated}/{want} updated, {new_ready}/{want} ready"
                f"{'; ' + failure[1] if failure else ''}{old_note}"
            )
        phase, reason = c.PROGRESSING, c.CREATING if not progress.exists else c.ROLLING_OUT
        ready, progressing = (False, c.WAITING_FOR_PODS), (True, reason, message)
    return Outcome(
        children=children,
        phase=phase,
        reason=reason,
        message=message,
        conditions=[
            c.condition(c.READY, *ready, message),
            c.condition(c.PROGRESSING_COND, *progressing),
            c.condition(c.DEGRADED_COND, phase == c.DEGRADED, *trouble),
            c.condition(c.MODEL_VERIFIED, *verified),
        ],
        stable=stable,
        canary=canary,
        replicas=progress.replicas,
        ready_replicas=progress.ready,
        desired_replicas=want,
        promoted=promoted,
    )
