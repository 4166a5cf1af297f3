"""The routing a strategy asks for (pure data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Routing:
    """``canary_weight`` percent to the canary track (only counted once it has ready Pods);
    ``active`` is the track the main Service selects when the strategy switches tracks
    (blue-green), or None to select every ready Pod (replica ratio)."""

    canary_weight: int = 0
    active: str | None = None
    mirror_percent: int = 0
    preview: bool = False  # blue-green: also a NAME-preview Service for the new track
