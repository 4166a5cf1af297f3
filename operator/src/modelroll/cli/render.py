"""Text views of ModelDeployments for the kubectl plugin (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.verdict import describe_track


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *[[("" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def list_view(items: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for obj in items:
        meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
        rows.append(
            (
                meta["namespace"],
                meta["name"],
                status.get("phase", "Pending"),
                (spec.get("strategy") or {}).get("type", "Rolling"),
                (status.get("stable") or {}).get("version", ""),
                (status.get("canary") or {}).get("version", ""),
                (status.get("weights") or {}).get("canary", 0),
                status.get("ready", ""),
            )
        )
    return table(("NAMESPACE", "NAME", "PHASE", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "READY"), rows)


def _track(name: str, track: Mapping[str, Any] | None) -> tuple[Any, ...]:
    track = track or {}
    return (
        name,
        track.get("version", "-"),
        track.get("revision", "-"),
        f"{track.get('readyReplicas', 0)}/{track.get('replicas', 0)}",
        (track.get("digest") or "")[:19] + ("…" if track.get("digest") else ""),
    )


def _value(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def analysis_view(run: Mapping[str, Any]) -> list[str]:
    """The analysis run: one summary line, then every gate's latest value, threshold and verdict."""
    counts = [f"{run.get(k, 0)} {k}" for k in ("passed", "failed", "inconclusive", "errors")]
    if run.get("consecutiveInconclusive"):  # the streak inconclusiveLimit bounds
        counts[2] += f" ({run['consecutiveInconclusive']} in a row since {run.get('inconclusiveSince', '?')})"
    head = f"Analysis:  {run.get('phase', 'Running')} ({run.get('scope', '')} {run.get('revision', '')}; "
    head += ", ".join(counts)
    head += f"; last measured {run['lastMeasuredAt']})" if run.get("lastMeasuredAt") else ")"
    if run.get("outcome"):
        head += f"\nOutcome:   {run['outcome']}: {run.get('message', '')}"
    rows = [
        (
            g.get("name", ""),
            _value(g.get("value")),
            g.get("threshold", ""),
            str(g["samples"]) if "samples" in g else "",
            g.get("verdict", ""),
            (g.get("message") or "")[:90],
        )
        for g in run.get("gates") or []
    ]
    if not rows:
        return [head]
    out = [head, table(("GATE", "VALUE", "THRESHOLD", "SAMPLES", "VERDICT", "MESSAGE"), rows)]
    # the quality gates (featureDrift, liveAccuracy): both tracks' own numbers, a line per gate
    quality = [
        (g.get("name", ""), *(describe_track(g["tracks"].get(t) or {}) or "-" for t in ("canary", "stable")))
        for g in run.get("gates") or []
        if isinstance(g.get("tracks"), Mapping)
    ]
    if quality:
        out += ["", table(("QUALITY GATE", "CANARY", "STABLE"), quality)]
    return out


def status_view(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
    weights = status.get("weights") or {}
    lines = [
        f"Name:      {meta['namespace']}/{meta['name']}",
        f"Phase:     {status.get('phase', 'Pending')}" + (f" ({status['reason']})" if status.get("reason") else ""),
        f"Message:   {status.get('message', '')}",
        f"Strategy:  {(spec.get('strategy') or {}).get('type', 'Rolling')}",
        *(
            [f"Step:      {min(status.get('currentStep', 0) + 1, status['stepCount'])}/{status['stepCount']}"]
            if status.get("canary") and status.get("stepCount")
            else []
        ),
        f"Weights:   stable {weights.get('stable', 100)}% / canary {weights.get('canary', 0)}%",
        f"URL:       {status.get('url', '')}",
        *(
            f"Deferred:  {action} (waits for revision {held.get('revision', '?')})"
            for action, held in sorted((status.get("deferred") or {}).items())
        ),
        "",
        table(
            ("TRACK", "VERSION", "REVISION", "READY", "DIGEST"),
            [_track("stable", status.get("stable"))]
            + ([_track("canary", status["canary"])] if status.get("canary") else []),
        ),
        "",
        table(
            ("CONDITION", "STATUS", "REASON", "SINCE"),
            [
                (c["type"], c["status"], c.get("reason", ""), c.get("lastTransitionTime", ""))
                for c in status.get("conditions", [])
            ],
        ),
    ]
    if status.get("analysis"):
        lines += ["", *analysis_view(status["analysis"])]
    if status.get("history"):
        lines += [
            "",
            table(
                ("HISTORY", "VERSION", "REVISION", "PROMOTED"),
                [
                    (i, h.get("version", ""), h.get("revision", ""), h.get("promotedAt", ""))
                    for i, h in enumerate(status["history"])
                ],
            ),
        ]
    if events:
        lines += [
            "",
            table(
                ("LAST SEEN", "TYPE", "REASON", "MESSAGE"),
                [
                    (
                        e.get("lastTimestamp") or e.get("eventTime") or "",
                        e.get("type", ""),
                        e.get("reason", ""),
                        (e.get("message") or "")[:100],
                    )
                    for e in events[-8:]
                ],
            ),
        ]
    return "\n".join(lines)
