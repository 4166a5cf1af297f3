"""In-memory copies of ModelDeployments and their children, fed by watch events.

The planner reads observed state from here instead of the API, so reconciling an
unchanged object costs no request. Objects are stored without ``managedFields`` to keep
memory small with thousands of objects. No I/O.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from modelroll_contract import LABEL_NAME

from .observed import Observed

Key = tuple[str, str]  # (namespace, ModelDeployment name)


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def _newer_or_equal(incoming: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether ``incoming`` is not older than ``current`` (etcd resourceVersions are integers)."""
    if current is None:
        return True
    try:
        return int(incoming["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return True


class Cache:
    def __init__(self) -> None:
        self.parents: dict[Key, dict[str, Any]] = {}
        self.children: dict[Key, dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))

    def put_parent(self, obj: dict[str, Any], deleted: bool = False) -> Key:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if deleted:
            self.parents.pop(key, None)
            self.children.pop(key, None)
        elif _newer_or_equal(obj, self.parents.get(key)):
            self.parents[key] = _slim(obj)
        return key

    def put_child(self, kind: str, obj: dict[str, Any], deleted: bool = False) -> Key | None:
        """Record a child; returns its parent's key, or None if it has no modelroll owner label."""
        meta = obj.get("metadata", {})
        parent = (meta.get("labels") or {}).get(LABEL_NAME)
        if not parent:
            return None
        key = (meta["namespace"], parent)
        bucket = self.children[key][kind]
        if deleted:
            bucket.pop(meta["name"], None)
        elif _newer_or_equal(obj, bucket.get(meta["name"])):
            bucket[meta["name"]] = _slim(obj)
        return key

    def observed(self, key: Key) -> Observed:
        kids = self.children.get(key, {})
        return Observed(
            deployments=dict(kids.get("Deployment", {})),
            services=dict(kids.get("Service", {})),
            autoscalers=dict(kids.get("HorizontalPodAutoscaler", {})),
            routes=dict(kids.get("HTTPRoute", {})),
            configmaps=dict(kids.get("ConfigMap", {})),
            secrets=dict(kids.get("Secret", {})),
            pods=tuple(kids.get("Pod", {}).values()),
        )

    def phases(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for obj in self.parents.values():
            counts[(obj.get("status") or {}).get("phase") or "Pending"] += 1
        return counts
