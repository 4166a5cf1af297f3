"""Decode Open Inference Protocol (V2) and KServe V1 requests, encode responses (pure).

Validation is hand-written and vectorized on purpose: it runs once per request on the hot
path, so it costs a few numpy calls rather than a validation framework's per-field walk.
Every refusal raises ``InvalidInput`` with a message that names the problem. The tensor
checks (``check_one_input``, ``check_shape``, ``tensor_rows``, ``wanted_outputs``) are shared
with the gRPC transport (protocol_grpc.py), so both refuse the same input with the same words.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
from modelroll_contract import METHODS

from .errors import InvalidInput
from .loading import LoadedModel

_DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_NUMERIC_KINDS = frozenset("biuf")
_EXACT_FLOAT_INTS = 2.0**53  # every integer below this is exact in a float64
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes) -> Any:
    """Parse JSON; NaN/Infinity literals (which strict JSON lacks) parse so they can be named."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        try:
            return json.loads(body)
        except RecursionError:
            # orjson stops at 1024 levels; the fallback parser at the interpreter's limit.
            raise InvalidInput("malformed JSON: nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"malformed JSON: {e}") from None


def _to_array(data: Any, where: str) -> np.ndarray:
    if isinstance(data, (int, float, bool)):
        data = [data]
    elif not isinstance(data, list):
        raise InvalidInput(f"{where} must be a list of numbers")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where} is ragged: rows of different lengths") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        if arr.size == 0:
            return arr.astype(np.float64)
        raise InvalidInput(f"{where} contains non-numeric values")
    return arr


def _check_finite(X: np.ndarray, model: LoadedModel, where: str) -> None:
    if X.dtype.kind != "f":
        return
    if np.isfinite(X).all():
        return
    if np.isinf(X).any():
        raise InvalidInput(f"{where} contains infinity, which no model accepts")
    if not model.allow_nan:
        raise InvalidInput(f"{where} contains NaN; this model does not accept missing values")


def _check_range(X: np.ndarray, model: LoadedModel, where: str) -> None:
    if model.float32_input and X.size and np.abs(X).max() > _FLOAT32_MAX:
        raise InvalidInput(
            f"{where}: values beyond float32's range (±{_FLOAT32_MAX:.4g}), in which "
            f"{type(model.estimator).__name__} computes"
        )


def _check_features(X: np.ndarray, model: LoadedModel, where: str) -> None:
    if X.shape[0] == 0:
        raise InvalidInput(f"{where}: empty batch: the input has no rows")
    if model.n_features is not None and X.shape[1] != model.n_features:
        raise InvalidInput(f"{where}: wrong number of features: the model expects {model.n_features}, got {X.shape[1]}")


def numpy_type(datatype: Any, name: str) -> Any:
    """The numpy type of a numeric datatype, or InvalidInput naming the input."""
    target = _DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if target is None:
        if datatype == "BYTES":
            raise InvalidInput(f"input {name!r}: datatype BYTES is not supported; send numbers")
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}")
    return target


def _cast(arr: np.ndarray, datatype: str, name: str) -> np.ndarray:
    target = numpy_type(datatype, name)
    kind = arr.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"input {name!r}: datatype BOOL but data is not true/false")
        return arr
    if datatype[0] in "IU":
        if kind == "f" and (not np.isfinite(arr).all() or not (arr == np.floor(arr)).all()):
            raise InvalidInput(f"input {name!r}: datatype {datatype} but data is not integral")
        if kind == "f" and arr.size and np.abs(arr).max() >= _EXACT_FLOAT_INTS:
            # The JSON parser turns an integer beyond 64 bits into a float, and numpy turns a
            # row mixing 2**63 with small ints into floats: such a value is no longer exact.
            raise InvalidInput(f"input {name!r}: values out of range for {datatype} (not exact as sent)")
        if kind in "fiu" and arr.size:
            info = np.iinfo(target)
            # Compared as Python ints: numpy compares uint64 2**63 with int64's max as floats,
            # which are equal, and the cast would then wrap it to -2**63.
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                raise InvalidInput(f"input {name!r}: values out of range for {datatype}")
        return arr.astype(target)
    if datatype != "FP64" and kind != "b":
        if kind == "f" and datatype[:2] == "FP" and arr.size:
            # A finite value beyond the datatype's range would become infinity in the cast.
            finite = arr[np.isfinite(arr)]
            if finite.size and np.abs(finite).max() > np.finfo(target).max:
                raise InvalidInput(f"input {name!r}: values out of range for {datatype}")
        return arr.astype(target).astype(np.float64)
    return arr


def _output_names(requested: Any) -> list[str | None] | None:
    """The output names a JSON request asks for (None: the default)."""
    if requested is None:
        return None
    if not isinstance(requested, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    return [o.get("name") if isinstance(o, dict) else None for o in requested]


def wanted_outputs(names: list[Any] | None, model: LoadedModel, default: str) -> tuple[bool, bool]:
    """Which outputs to return, (predict, predict_proba), from the names a request asks for."""
    for n in names or ():
        if n not in METHODS:
            raise InvalidInput(f"unknown output {n!r}; available: predict, predict_proba")
    if not names:
        names = [default]
    want_proba = "predict_proba" in names
    if want_proba and not model.has_proba:
        raise InvalidInput("this model has no predict_proba output")
    return "predict" in names, want_proba


def check_one_input(count: int) -> None:
    """The model takes one tensor, [rows, features]."""
    if count == 0:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    if count != 1:
        raise InvalidInput(f"expected exactly one input tensor, got {count}")


def check_shape(shape: Any, name: str) -> list[int]:
    """A tensor's shape: [rows, features] or [features], non-negative integers."""
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if len(shape) > 2:
        raise InvalidInput(f"input {name!r}: shape {shape} has rank {len(shape)}; expected [rows, features]")
    return shape


def tensor_rows(arr: np.ndarray, shape: list[int], datatype: Any, name: str, model: LoadedModel) -> np.ndarray:
    """One input tensor's values (any numeric dtype, flat or nested) as the model's rows.

    Shared by every transport (JSON, gRPC): the values must fill ``shape`` exactly, fit
    ``datatype``, have the model's width, and be finite and in range where the model needs it.
    Returns float64 [rows, features].
    """
    expected = math.prod(shape)
    if arr.size != expected:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {expected} values, data has {arr.size}")
    arr = _cast(arr, datatype, name)
    X = arr.reshape(shape if len(shape) == 2 else (1, shape[0]))
    if X.dtype != np.float64:
        X = X.astype(np.float64)
    where = f"input {name!r}"
    _check_features(X, model, where)
    _check_finite(X, model, where)
    _check_range(X, model, where)
    return X


def decode_v2(body: bytes, model: LoadedModel, default: str) -> tuple[np.ndarray, bool, bool, Any]:
    """Return (X as float64 [rows, features], want_predict, want_proba, request id)."""
    req = loads(body)
    if not isinstance(req, dict):
        raise InvalidInput("request body must be a JSON object with 'inputs'")
    inputs = req.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    check_one_input(len(inputs))
    t = inputs[0]
    if not isinstance(t, dict):
        raise InvalidInput("each input must be an object with name, shape, datatype and data")
    name = t.get("name", "input-0")
    shape = check_shape(t.get("shape"), name)
    if "data" not in t:
        raise InvalidInput(f"input {name!r} has no 'data'")
    X = tensor_rows(_to_array(t["data"], f"input {name!r} data"), shape, t.get("datatype", "FP64"), name, model)
    want_predict, want_proba = wanted_outputs(_output_names(req.get("outputs")), model, default)
    return X, want_predict, want_proba, req.get("id")


def decode_v1(body: bytes, model: LoadedModel) -> np.ndarray:
    req = loads(body)
    if not isinstance(req, dict):
        raise InvalidInput("request body must be a JSON object with 'instances'")
    instances = req.get("instances", req.get("inputs"))
    if instances is None:
        raise InvalidInput("request has no 'instances'")
    arr = _to_array(instances, "'instances'")
    if arr.size == 0:
        raise InvalidInput("empty batch: 'instances' has no rows")
    if arr.ndim != 2:
        raise InvalidInput("'instances' must be a list of rows, each a list of feature values")
    X = arr.astype(np.float64) if arr.dtype != np.float64 else arr
    _check_features(X, model, "'instances'")
    _check_finite(X, model, "'instances'")
    _check_range(X, model, "'instances'")
    return X


def datatype_of(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    if kind == "f":
        return "FP64" if arr.dtype.itemsize == 8 else f"FP{arr.dtype.itemsize * 8}"
    if kind == "i":
        return f"INT{arr.dtype.itemsize * 8}"
    if kind == "u":
        return f"UINT{arr.dtype.itemsize * 8}"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def _jsonable(arr: np.ndarray) -> Any:
    return arr if arr.dtype.kind in "fiub" else arr.tolist()


def encode_v2(
    model_name: str,
    model_version: str,
    request_id: Any,
    pred: np.ndarray | None,
    proba: np.ndarray | None,
) -> bytes:
    outputs = []
    if pred is not None:
        outputs.append(
            {
                "name": "predict",
                "shape": [len(pred)],
                "datatype": datatype_of(pred),
                "data": _jsonable(pred),
            }  # fmt: skip
        )
    if proba is not None:
        outputs.append(
            {
                "name": "predict_proba",
                "shape": list(proba.shape),
                "datatype": "FP64",
                "data": proba.ravel(),
            }  # fmt: skip
        )
    resp: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        resp["id"] = request_id
    resp["outputs"] = outputs
    return orjson.dumps(resp, option=_DUMPS_OPTS)


def encode_v1(pred: np.ndarray | None, proba: np.ndarray | None) -> bytes:
    out = proba if proba is not None else pred
    return orjson.dumps({"predictions": _jsonable(out)}, option=_DUMPS_OPTS)  # type: ignore[arg-type]
