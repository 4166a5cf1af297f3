"""The status write is a JSON merge patch that must leave status exactly as planned."""

from __future__ import annotations

from typing import Any

import pytest
from modelroll.kube import exact_merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, section 2, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


CASES = {
    # Seen on the real node: a new canary after an analysis abort inherited the old run's
    # `outcome` and was failed at once ("analysis failed: waiting for the first measurement").
    "stale nested key": (
        {"phase": "Degraded", "analysis": {"revision": "a", "outcome": "Failed", "failed": 3, "gates": [1]}},
        {"phase": "Progressing", "analysis": {"revision": "b", "failed": 0, "gates": []}},
    ),
    "removed top-level key": ({"aborted": {"revision": "a"}, "phase": "Degraded"}, {"phase": "Healthy"}),
    "deeper": ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 1}}}),
    "object replaced by a scalar": ({"weights": {"stable": 100}}, {"weights": None}),
    "scalar replaced by an object": ({"canary": "x"}, {"canary": {"revision": "b"}}),
    "unchanged": ({"phase": "Healthy", "stable": {"revision": "a"}}, {"phase": "Healthy", "stable": {"revision": "a"}}),
}


@pytest.mark.parametrize("previous, desired", CASES.values(), ids=CASES.keys())
def test_the_patch_turns_previous_into_exactly_desired(previous, desired):
    expected = {k: v for k, v in desired.items() if v is not None}
    assert apply_merge_patch(previous, exact_merge_patch(previous, desired)) == expected
