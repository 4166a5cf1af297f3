"""spec.parse_spec: defaults and errors that name the field."""

import pytest
from modelroll.spec import SpecError, parse_spec

DIGEST = "sha256:" + "ab" * 32


def spec(**overrides):
    base = {"model": {"uri": "s3://models/fraud/v7/model.joblib", "digest": DIGEST, "version": "v7"}}
    base.update(overrides)
    return base


def test_defaults():
    parsed = parse_spec(spec())
    assert parsed.replicas == 1
    assert parsed.model.format == "joblib" and parsed.model.method == "predict"
    assert parsed.strategy.type == "Rolling"
    assert parsed.strategy.rolling.max_surge == "25%" and parsed.strategy.rolling.max_unavailable == 0
    assert parsed.progress_deadline_seconds == 600
    assert parsed.server.batching.max_batch_size == 64


def test_canary_steps_and_analysis():
    parsed = parse_spec(
        spec(
            strategy={
                "type": "Canary",
                "canary": {
                    "steps": [{"setWeight": 10}, {"pause": {"duration": "1m30s"}}, {"setWeight": 50}, {"pause": {}}],
                    "analysis": {"interval": "15s", "gates": [{"builtin": "errorRate", "max": 0.01}]},
                },
            }
        )
    )
    steps = parsed.strategy.canary.steps
    assert [s.set_weight for s in steps] == [10, None, 50, None]
    assert steps[1].pause_seconds == 90 and steps[3].pause and steps[3].pause_seconds is None
    assert parsed.strategy.canary.analysis.interval_seconds == 15


CANARY = {"type": "Canary", "canary": {"steps": [{"setWeight": 10}]}}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"replicas": 1}, "spec.model"),
        (spec(model={"uri": "s3://bucket/k", "digest": "md5:abc"}), "spec.model.digest"),
        (spec(model={"uri": "ftp://x/y", "digest": DIGEST}), "spec.model.uri"),
        (spec(model={"uri": "/abs/path", "digest": DIGEST}), "spec.model.uri"),
        (spec(model={"uri": "s3://bucket/k", "digest": DIGEST, "format": "onnx"}), "spec.model.format"),
        (spec(replicas=-1), "spec.replicas"),
        (spec(replicas="3"), "spec.replicas"),
        (spec(strategy={"type": "Rolling", "canary": {"steps": [{"setWeight": 10}]}}), "spec.strategy.canary"),
        (spec(strategy={"type": "Canary"}), "spec.strategy.canary.steps"),
        (
            spec(strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 150}]}}),
            "spec.strategy.canary.steps[0].setWeight",
        ),
        (
            spec(strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}]}}),
            "spec.strategy.canary.steps[1].setWeight",
        ),
        (
            spec(strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 5, "pause": {}}]}}),
            "spec.strategy.canary.steps[0]",
        ),
        (
            spec(strategy={"type": "Canary", "canary": {"steps": [{"pause": {"duration": "soon"}}]}}),
            "spec.strategy.canary.steps[0].pause.duration",
        ),
        (
            spec(
                strategy={**CANARY, "canary": {**CANARY["canary"], "analysis": {"gates": [{"builtin": "errorRate"}]}}}
            ),
            "spec.strategy.canary.analysis.gates[0].max",
        ),
        (spec(autoscaling={"minReplicas": 5, "maxReplicas": 2}), "spec.autoscaling.minReplicas"),
        (spec(strategy=CANARY, trafficRouting={"shadow": {"percent": 10}}), "spec.trafficRouting.shadow"),
        (spec(strategy={"type": "Rolling", "rolling": {"maxSurge": "150%"}}), "spec.strategy.rolling.maxSurge"),
        (spec(server={"workers": 0}), "spec.server.workers"),
    ],
)
def test_errors_name_the_field(raw, path):
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert info.value.path == path
    assert str(info.value).startswith(path + ":")


def _bounded(limit=None, action=None, where="canary"):
    analysis = {"gates": [{"builtin": "errorRate", "max": 0.01}]}
    analysis |= {k: v for k, v in (("inconclusiveLimit", limit), ("inconclusiveAction", action)) if v is not None}
    if where == "canary":
        return spec(strategy={**CANARY, "canary": {**CANARY["canary"], "analysis": analysis}})
    return spec(strategy={"type": "BlueGreen", "blueGreen": {where: analysis}})


@pytest.mark.parametrize(
    ("limit", "action", "count", "seconds", "act"),
    [
        (None, None, 10, None, "Pause"),  # the default: a count, never "forever"
        (3, None, 3, None, "Pause"),
        ("90s", "Abort", None, 90.0, "Abort"),
        ("1h30m", None, None, 5400.0, "Pause"),
        ("1s", None, None, 1.0, "Pause"),
    ],
)
def test_inconclusive_limit_is_a_count_or_a_duration(limit, action, count, seconds, act):
    canary = parse_spec(_bounded(limit, action)).strategy.canary
    blue_green = parse_spec(_bounded(limit, action, "prePromotionAnalysis")).strategy.blue_green
    post = parse_spec(_bounded(limit, action, "postPromotionAnalysis")).strategy.blue_green
    for analysis in (canary.analysis, blue_green.pre_promotion_analysis, post.post_promotion_analysis):
        got = (analysis.inconclusive_limit, analysis.inconclusive_seconds, analysis.inconclusive_action)
        assert got == (count, seconds, act)


@pytest.mark.parametrize(
    ("limit", "action", "field"),
    [
        (0, None, "inconclusiveLimit"),
        (10001, None, "inconclusiveLimit"),
        ("500ms", None, "inconclusiveLimit"),  # a duration of at least 1s
        ("0s", None, "inconclusiveLimit"),
        ("ten", None, "inconclusiveLimit"),
        (2.5, None, "inconclusiveLimit"),
        (None, "Wait", "inconclusiveAction"),
    ],
)
def test_inconclusive_limit_errors_name_the_field(limit, action, field):
    with pytest.raises(SpecError) as info:
        parse_spec(_bounded(limit, action))
    assert info.value.path == f"spec.strategy.canary.analysis.{field}"
