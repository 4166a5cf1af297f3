"""Decode the Open Inference Protocol's gRPC ModelInferRequest, encode ModelInferResponse (pure).

The gRPC twin of protocol.py's ``decode_v2``/``encode_v2``: it only unpacks the protobuf
message into a numpy array (typed ``contents`` or little-endian ``raw_input_contents``); every
check on the values is protocol.py's, so a request refused over JSON is refused over gRPC
with the same message. The answer mirrors the request: raw bytes in, raw bytes out.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from .errors import InvalidInput, NotFound
from .loading import LoadedModel
from .proto import inference_pb2 as pb
from .protocol import check_one_input, check_shape, datatype_of, numpy_type, tensor_rows, wanted_outputs

# typed contents field -> the numpy type its values arrive in
_CONTENTS_TYPES: dict[str, Any] = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}
# datatype -> the typed contents field that carries it (FP16 has none: sent as FP32)
_OUTPUT_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class Wishes(NamedTuple):
    """What the answer must carry besides the outputs: the request's id and its encoding."""

    id: str
    raw: bool


def check_model(name: str, version: str, model_name: str, model_version: str) -> None:
    """The request names this server's model (and its version, or none): else NotFound."""
    if name != model_name:
        raise NotFound(f"model {name!r} not found")
    if version not in ("", model_version):
        raise NotFound(f"version {version!r} of model {model_name!r} not found")


def decode_infer(
    body: bytes, model: LoadedModel, default: str, model_name: str, model_version: str
) -> tuple[np.ndarray, bool, bool, Wishes]:
    """Return (X as float64 [rows, features], want_predict, want_proba, wishes)."""
    try:
        req = pb.ModelInferRequest.FromString(body)
    except DecodeError as e:
        raise InvalidInput(f"malformed ModelInferRequest: {e}") from None
    check_model(req.model_name, req.model_version, model_name, model_version)
    check_one_input(len(req.inputs))
    t = req.inputs[0]
    name = t.name or "input-0"
    shape = check_shape(list(t.shape), name)
    datatype = t.datatype or "FP64"
    raw = req.raw_input_contents
    if raw:
        if len(raw) != 1:
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for 1 input")
        if t.contents.ListFields():
            raise InvalidInput(f"input {name!r}: both contents and raw_input_contents are set; send one")
        arr = _from_raw(raw[0], datatype, name)
    else:
        arr = _from_contents(t.contents, name)
    X = tensor_rows(arr, shape, datatype, name, model)
    names = [o.name for o in req.outputs] or None
    want_predict, want_proba = wanted_outputs(names, model, default)
    return X, want_predict, want_proba, Wishes(req.id, bool(raw))


def _from_contents(contents: Any, name: str) -> np.ndarray:
    fields = contents.ListFields()  # only the fields that hold values
    if not fields:
        return np.empty(0, dtype=np.float64)  # tensor_rows names what the shape needed
    if len(fields) > 1:
        used = ", ".join(f.name for f, _ in fields)
        raise InvalidInput(f"input {name!r}: values in several contents fields ({used}); send one")
    field, values = fields[0]
    if field.name == "bytes_contents":
        raise InvalidInput(f"input {name!r} data contains non-numeric values")
    return np.fromiter(values, dtype=_CONTENTS_TYPES[field.name], count=len(values))


def _from_raw(raw: bytes, datatype: str, name: str) -> np.ndarray:
    dtype = np.dtype(numpy_type(datatype, name))
    if len(raw) % dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: raw_input_contents has {len(raw)} bytes, not a whole number of "
            f"{datatype} values ({dtype.itemsize} bytes each)"
        )
    if dtype.kind == "b":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and octets.max() > 1:
            raise InvalidInput(f"input {name!r}: datatype BOOL but data is not true/false")
        return octets.astype(np.bool_)
    # a native, writable copy: the model may be handed this very array
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)


def encode_infer(
    model_name: str, model_version: str, wishes: Wishes, pred: np.ndarray | None, proba: np.ndarray | None
) -> bytes:
    resp = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=wishes.id)
    if pred is not None:
        _add_output(resp, "predict", pred, [len(pred)], wishes.raw)
    if proba is not None:
        _add_output(resp, "predict_proba", proba.astype(np.float64, copy=False), list(proba.shape), wishes.raw)
    return resp.SerializeToString()


def _add_output(resp: Any, name: str, arr: np.ndarray, shape: list[int], raw: bool) -> None:
    datatype = datatype_of(arr)
    if datatype == "FP16" and not raw:  # no typed field holds FP16
        arr, datatype = arr.astype(np.float32), "FP32"
    out = resp.outputs.add(name=name, datatype=datatype, shape=shape)
    flat = arr.ravel()
    if datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]
        if raw:
            resp.raw_output_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in items))
        else:
            out.contents.bytes_contents.extend(items)
    elif raw:
        resp.raw_output_contents.append(flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes())
    else:
        getattr(out.contents, _OUTPUT_FIELDS[datatype]).extend(flat.tolist())


# --- the client side, for shadowing (shadow.py): our rows to another server, its labels back
def build_predict_request(model_name: str, X: np.ndarray) -> Any:
    """A ModelInferRequest for the ``predict`` output of ``X``'s rows, sent as raw FP64."""
    return pb.ModelInferRequest(
        model_name=model_name,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(X.shape))],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict")],
        raw_input_contents=[np.ascontiguousarray(X, dtype="<f8").tobytes()],
    )


def read_predict_output(resp: Any) -> np.ndarray:
    """The ``predict`` output of a ModelInferResponse (ValueError if it has none or it is malformed)."""
    for i, out in enumerate(resp.outputs):
        if out.name != "predict":
            continue
        if len(resp.raw_output_contents) > i:
            raw = resp.raw_output_contents[i]
            if out.datatype == "BYTES":
                return np.array(_split_bytes(raw), dtype=object)
            return np.frombuffer(raw, dtype=np.dtype(numpy_type(out.datatype, out.name)).newbyteorder("<"))
        fields = out.contents.ListFields()
        if len(fields) != 1:
            raise ValueError("the predict output carries no values")
        return np.array(list(fields[0][1]), dtype=object if fields[0][0].name == "bytes_contents" else None)
    raise ValueError("the answer has no predict output")


def _split_bytes(raw: bytes) -> list[bytes]:
    """Raw BYTES: each element is a 4-byte little-endian length and that many bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ValueError("truncated BYTES output")
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + n > len(raw):
            raise ValueError("truncated BYTES output")
        items.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return items
