"""``successCondition``: a small, safe expression language over a query's ``result`` (pure).

The text comes from a user's object, so it is never handed to Python's ``eval``. It is parsed
with ``ast.parse(mode="eval")`` and then walked against a whitelist: only the node types below
are accepted, every value is a float, a bool or a list of them, and the length and nesting of
the text are bounded so hostile input costs microseconds and raises ``ConditionError``.

``result`` is a number when the query returned a scalar or exactly one series, and a list of
numbers when it returned several. Comparisons and arithmetic between a list and a number work
element by element (``result < 0.05`` on three series is a list of three bools), so a list
has to be folded with ``all(...)``, ``any(...)``, ``len``, ``min``, ``max`` or ``sum`` before
it can be the condition's answer.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Union

MAX_LENGTH = 512
MAX_DEPTH = 32
MAX_NODES = 200

Value = Union[float, bool, list[float], list[bool]]  # noqa: UP007 - a runtime alias


class ConditionError(ValueError):
    """The condition cannot be parsed or evaluated; the message says why in one line."""


def _fold(name: str, fn: Callable[[list[float]], float | bool]) -> Callable[[Value], Value]:
    def call(v: Value) -> Value:
        items = v if isinstance(v, list) else [v]
        if name in ("min", "max") and not items:
            raise ConditionError(f"{name}() of an empty list")
        return fn([float(x) for x in items])

    return call


FUNCTIONS: dict[str, Callable[[Value], Value]] = {
    "len": lambda v: float(len(v)) if isinstance(v, list) else 1.0,
    "all": _fold("all", lambda xs: all(xs)),
    "any": _fold("any", lambda xs: any(xs)),
    "min": _fold("min", min),
    "max": _fold("max", max),
    "sum": _fold("sum", lambda xs: math.fsum(xs)),
    "abs": lambda v: [abs(float(x)) for x in v] if isinstance(v, list) else abs(float(v)),
}
NAMES = ("result", "true", "false", "True", "False")

_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}


def _div(a: float, b: float) -> float:
    if b == 0:
        raise ConditionError("division by zero")
    return a / b


def _mod(a: float, b: float) -> float:
    if b == 0:
        raise ConditionError("modulo by zero")
    return a % b


_ARITH: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: _div,
    ast.Mod: _mod,
}


def parse_condition(text: str) -> ast.Expression:
    """Parse and check ``text``; raises ConditionError naming what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("successCondition is empty")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"successCondition is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ConditionError(f"successCondition is not an expression: {getattr(e, 'msg', e)}") from None
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:  # iterative, so deep nesting cannot exhaust Python's own stack here
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise ConditionError("successCondition is nested too deeply or too long")
        _check_node(node)
        children = node.args if isinstance(node, ast.Call) else ast.iter_child_nodes(node)  # a call's name is checked
        stack.extend((child, depth + 1) for child in children if not _is_operator(child))
    return tree


def _is_operator(node: ast.AST) -> bool:
    return isinstance(node, (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context))


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ConditionError(f"only numbers are allowed as literals, not {node.value!r}"[:120])
    elif isinstance(node, ast.Name):
        if node.id not in NAMES:
            raise ConditionError(f"unknown name {node.id!r}; the query's value is called 'result'")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ConditionError(f"only these functions are allowed: {', '.join(FUNCTIONS)}")
        if len(node.args) != 1 or node.keywords:
            raise ConditionError(f"{node.func.id}() takes exactly one argument")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITH:
            raise ConditionError(f"operator {type(node.op).__name__} is not allowed (use + - * / %)")
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            raise ConditionError("only -, + and not are allowed as unary operators")
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise ConditionError("only < <= > >= == != are allowed as comparisons")
    elif not isinstance(node, ast.BoolOp):
        raise ConditionError(f"{type(node).__name__} is not allowed in a successCondition")


def _pairwise(a: Value, b: Value, fn: Callable[[float, float], float | bool]) -> Value:
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ConditionError(f"cannot combine lists of {len(a)} and {len(b)} values")
        return [fn(float(x), float(y)) for x, y in zip(a, b, strict=True)]
    if isinstance(a, list):
        assert not isinstance(b, list)
        return [fn(float(x), float(b)) for x in a]
    if isinstance(b, list):
        return [fn(float(a), float(y)) for y in b]
    return fn(float(a), float(b))


def _truth(v: Value, what: str) -> bool:
    if isinstance(v, list):
        raise ConditionError(f"{what} is a list of {len(v)} values; fold it with all(), any() or len()")
    return bool(v)


def _eval(node: ast.AST, result: Value) -> Value:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # parse_condition admits numbers only
        return float(node.value)
    if isinstance(node, ast.Name):
        return result if node.id == "result" else node.id in ("true", "True")
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](_eval(node.args[0], result))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, result)
        if isinstance(node.op, ast.Not):
            return not _truth(v, "the operand of not")
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return [sign * float(x) for x in v] if isinstance(v, list) else sign * float(v)
    if isinstance(node, ast.BinOp):
        return _pairwise(_eval(node.left, result), _eval(node.right, result), _ARITH[type(node.op)])
    if isinstance(node, ast.Compare):
        left = _eval(node.left, result)
        out: Value = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, result)
            step = _pairwise(left, right, _COMPARE[type(op)])
            out = step if out is True else _pairwise(out, step, lambda x, y: bool(x) and bool(y))
            left = right
        return out
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        for value in node.values:
            truth = _truth(_eval(value, result), "an operand of and/or")
            if truth != is_and:  # short-circuit like Python: first False for and, first True for or
                return truth
        return is_and
    raise ConditionError(f"{type(node).__name__} is not allowed")  # unreachable after parse_condition


def evaluate_condition(text: str, result: float | list[float]) -> bool:
    """True if the condition holds for ``result``; ConditionError if it cannot be decided."""
    tree = parse_condition(text)
    try:
        value = _eval(tree.body, result)
    except ConditionError:
        raise
    except (OverflowError, ValueError, TypeError) as e:
        raise ConditionError(f"cannot evaluate successCondition: {e}") from None
    return _truth(value, "the condition's answer")
