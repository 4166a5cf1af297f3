"""Validate and default a raw object against a structural OpenAPI v3 schema, as the API
server does at admission (pure).

What the CRD uses is covered: ``type`` (and ``x-kubernetes-int-or-string``), ``enum``,
``pattern``, ``minimum`` / ``maximum`` (``exclusiveMinimum`` / ``exclusiveMaximum``),
``minLength`` / ``maxLength``, ``minItems`` / ``maxItems``, ``minProperties`` /
``maxProperties``, ``required`` and ``default``. A null value counts as absent (the API server
prunes it), so its default applies. CEL rules are not evaluated here: spec.py checks those.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

MESSAGE = "x-modelroll-message"  # a friendlier message for a pattern (from the CRD's CEL rule)


class SpecError(ValueError):
    """A spec value the operator cannot honour; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    # Go's $ (the API server's regexp) matches only at the very end; Python's also before a
    # final newline.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return None if ok else f"must be an integer or a string, got {value!r}"
    kind = schema.get("type")
    ok = {
        "object": isinstance(value, Mapping),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": _is_number(value),
    }.get(kind or "", True)
    return None if ok else f"must be {'an' if kind in ('object', 'array', 'integer') else 'a'} {kind}, got {value!r}"


def _bound_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
        return f"must be {'greater than' if schema.get('exclusiveMinimum') else 'at least'} {lo:g}, got {value}"
    if hi is not None and (value >= hi if schema.get("exclusiveMaximum") else value > hi):
        return f"must be {'less than' if schema.get('exclusiveMaximum') else 'at most'} {hi:g}, got {value}"
    return None


def _size_error(size: int, schema: Mapping[str, Any], lo: str, hi: str, what: str) -> str | None:
    if lo in schema and size < schema[lo]:
        return f"must have at least {schema[lo]} {what}, has {size}"
    if hi in schema and size > schema[hi]:
        return f"must have at most {schema[hi]} {what}, has {size}"
    return None


def _pattern_error(value: str, schema: Mapping[str, Any], path: str) -> str | None:
    if "pattern" not in schema or _regex(schema["pattern"]).search(value):
        return None
    friendly = schema.get(MESSAGE)
    if friendly:  # the CEL message names its own field first: keep what follows
        return f"{friendly.split(' ', 1)[1]}; got {value!r}"
    return f"must match {schema['pattern']}, got {value!r}"


def check(value: Any, schema: Mapping[str, Any], path: str) -> Any:
    """``value`` with the schema's defaults filled in at every depth, or SpecError naming the
    first field the schema refuses."""
    error = _type_error(value, schema)
    if error is None and "enum" in schema and value not in schema["enum"]:
        error = f"must be one of {', '.join(map(str, schema['enum']))}, got {value!r}"
    if error is None and isinstance(value, str):
        error = _size_error(len(value), schema, "minLength", "maxLength", "characters")
        error = error or _pattern_error(value, schema, path)
    elif error is None and _is_number(value):
        error = _bound_error(value, schema)
    elif error is None and isinstance(value, list):
        error = _size_error(len(value), schema, "minItems", "maxItems", "items")
    elif error is None and isinstance(value, Mapping):
        error = _size_error(len(value), schema, "minProperties", "maxProperties", "entries")
    if error:
        raise SpecError(path, error)
    if isinstance(value, list) and "items" in schema:
        return [check(item, schema["items"], f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _check_object(value, schema, path)
    return value


def _check_object(value: Mapping[str, Any], schema: Mapping[str, Any], path: str) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        if value.get(key) is not None:
            out[key] = check(value[key], sub, f"{path}.{key}")
        elif "default" in sub:
            out[key] = check(copy.deepcopy(sub["default"]), sub, f"{path}.{key}")
    for key, item in value.items():
        if key not in properties and item is not None:
            out[key] = check(item, extra, f"{path}.{key}") if isinstance(extra, Mapping) else item
    for key in schema.get("required") or ():
        if key not in out:
            raise SpecError(f"{path}.{key}", "is required")
    return out


def schema_at(schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """The schema of the field at ``path`` (dotted from the root's name, ``name[]`` for the
    items of an array), e.g. ``spec.strategy.canary.steps[].setWeight``."""
    node = schema
    for part in path.split(".")[1:]:
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


def default_of(schema: Mapping[str, Any], path: str) -> Any:
    """The default the schema gives the field at ``path`` (dotted, ``name[]`` for the items of
    an array), with the defaults of its own fields filled in; ``{}`` filled in for an object
    without a default of its own."""
    node = schema_at(schema, path)
    return _fill(copy.deepcopy(node.get("default", {} if node.get("type") == "object" else None)), node)


def _fill(value: Any, schema: Mapping[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value
    for key, sub in (schema.get("properties") or {}).items():
        if value.get(key) is None and "default" in sub:
            value[key] = _fill(copy.deepcopy(sub["default"]), sub)
        elif isinstance(value.get(key), dict):
            value[key] = _fill(value[key], sub)
    return value
