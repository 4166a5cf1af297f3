"""Condition types, reasons and phases in one place, and the condition-merge helper (pure).

Conditions use the ``metav1.Condition`` shape. ``lastTransitionTime`` only moves when a
condition's status flips, so a resync that changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelroll_contract import REASON_FETCH_FAILED, REASON_INTEGRITY_MISMATCH, REASON_MODEL_LOAD_FAILED

# Phases
PENDING = "Pending"
PROGRESSING = "Progressing"
PAUSED = "Paused"
HEALTHY = "Healthy"
DEGRADED = "Degraded"
FAILED = "Failed"

# Condition types
READY = "Ready"
PROGRESSING_COND = "Progressing"
DEGRADED_COND = "Degraded"
MODEL_VERIFIED = "ModelVerified"

# Reasons
CREATING = "Creating"
ROLLING_OUT = "RollingUpdate"
ROLLOUT_COMPLETE = "RolloutComplete"
ALL_READY = "AllReplicasReady"
WAITING_FOR_PODS = "WaitingForReadyPods"
SCALED_TO_ZERO = "ScaledToZero"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
INTEGRITY_MISMATCH = REASON_INTEGRITY_MISMATCH  # the server's exit codes name these (contract)
FETCH_FAILED = REASON_FETCH_FAILED
MODEL_LOAD_FAILED = REASON_MODEL_LOAD_FAILED
IMAGE_PULL_FAILED = "ImagePullFailed"
INVALID_SPEC = "InvalidSpec"
UNSUPPORTED = "Unsupported"
DIGEST_VERIFIED = "DigestVerified"
AS_EXPECTED = "AsExpected"


def condition(type_: str, status: bool | None, reason: str, message: str) -> dict[str, Any]:
    """A condition without its timestamps; ``merge_conditions`` adds them."""
    value = "Unknown" if status is None else ("True" if status else "False")
    return {"type": type_, "status": value, "reason": reason, "message": message}


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[dict[str, Any]],
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    """``wanted`` with ``lastTransitionTime`` carried over from ``previous`` unless the
    status flipped, and ``observedGeneration`` set."""
    before = {c.get("type"): c for c in previous or ()}
    merged = []
    for cond in wanted:
        old = before.get(cond["type"])
        since = old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": since or now, "observedGeneration": generation})
    return merged
