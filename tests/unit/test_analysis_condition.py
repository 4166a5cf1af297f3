"""successCondition: what it accepts, what it computes, and hostile input it refuses."""

import time

import pytest
from modelroll.analysis.condition import ConditionError, evaluate_condition, parse_condition


@pytest.mark.parametrize(
    ("text", "result", "want"),
    [
        ("result < 0.05", 0.01, True),
        ("result < 0.05", 0.05, False),
        ("result <= 0.05", 0.05, True),
        ("result >= 1 and result < 2", 1.5, True),
        ("result >= 1 and result < 2", 2.5, False),
        ("result < 1 or result > 9", 10.0, True),
        ("not result > 3", 2.0, True),
        ("0 < result < 1", 0.5, True),
        ("0 < result < 1", 1.5, False),
        ("result * 100 < 5", 0.04, True),
        ("(result - 1) / 2 == 0.5", 2.0, True),
        ("result % 2 == 1", 3.0, True),
        ("-result < 0", 1.0, True),
        ("abs(result - 10) <= 0.5", 10.4, True),
        ("result != 0", 0.0, False),
        ("true", 0.0, True),
        ("1e-3 < result", 0.01, True),
        # several series: element-wise, folded by all/any/len/min/max/sum
        ("all(result < 0.05)", [0.01, 0.02], True),
        ("all(result < 0.05)", [0.01, 0.2], False),
        ("any(result > 0.1)", [0.01, 0.2], True),
        ("len(result) == 3", [1.0, 2.0, 3.0], True),
        ("max(result) < 5 and min(result) > 0", [1.0, 4.0], True),
        ("sum(result) / len(result) < 2", [1.0, 2.0], True),
        ("all(result * 2 < 10)", [1.0, 4.0], True),
        ("len(result) == 1", 7.0, True),  # a single number counts as one value
    ],
)
def test_conditions_evaluate(text, result, want):
    assert evaluate_condition(text, result) is want


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("result <", "not an expression"),
        ("__import__('os').system('true')", "only these functions"),
        ("result.__class__", "not allowed"),
        ("result[0] < 1", "not allowed"),
        ("(lambda: 1)()", "only these functions"),
        ("open('/etc/passwd')", "only these functions"),
        ("eval('1')", "only these functions"),
        ("x < 1", "unknown name 'x'"),
        ("'a' < 'b'", "only numbers"),
        ("result ** 99999999", "not allowed"),
        ("result << 2", "not allowed"),
        ("result in [1, 2]", "comparisons"),
        ("result is None", "comparisons"),
        ("[x for x in result]", "not allowed"),
        ("result if result else 0", "not allowed"),
        ("len(result, result)", "exactly one argument"),
        ("max(result, key=abs)", "exactly one argument"),
        ("~result", "unary"),
        ("1j < result", "only numbers"),
        ("f'{result}'", "not allowed"),
        ("result < 1; import os", "not an expression"),
        ("result := 1", "not an expression"),
        ("x" * 600, "longer than"),
        ("(" * 250 + "result" + ")" * 250 + " < 1", "not an expression"),
        ("not " * 60 + "result", "nested too deeply"),
        ("+".join(["result"] * 70) + " < 1", "nested too deeply"),
        ("-" * 40 + "result < 1", "nested too deeply"),
    ],
)
def test_hostile_or_bad_conditions_are_refused_quickly(text, needle):
    started = time.perf_counter()
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert needle in str(info.value)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    ("text", "result", "needle"),
    [
        ("result / 0 < 1", 1.0, "division by zero"),
        ("result % 0 < 1", 1.0, "modulo by zero"),
        ("result < 0.05", [0.01, 0.02], "fold it with all()"),
        ("result", [1.0], "fold it with all()"),
        ("result and true", [1.0, 2.0], "and/or"),
        ("not result", [1.0], "not"),
        ("result * 1e308 * 1e308 < 1", 10.0, ""),  # inf is a float, not an error: compares False
        ("max(result) < 1", [], "empty list"),
    ],
)
def test_conditions_that_cannot_be_decided_raise(text, result, needle):
    if text.startswith("result * 1e308"):
        assert evaluate_condition(text, result) is False
        return
    with pytest.raises(ConditionError) as info:
        evaluate_condition(text, result)
    assert needle in str(info.value)
