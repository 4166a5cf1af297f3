"""The committed gRPC modules are what the .proto compiles to, and the .proto keeps the wire
contract of the Open Inference Protocol (the names and numbers KServe, MLServer and Triton
clients send)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "server_image" / "src" / "modelroll_server" / "proto"
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def test_generated_modules_match_the_proto(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_grpc_stubs.py"), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    for name in GENERATED:
        fresh = (tmp_path / "modelroll_server" / "proto" / name).read_text()
        committed = (PROTO_DIR / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/generate_grpc_stubs.py"


def _pb():
    from modelroll_server.proto import inference_pb2

    return inference_pb2


# (message, field) -> number, as the protocol's specification defines them
WIRE = {
    ("ModelInferRequest", "model_name"): 1,
    ("ModelInferRequest", "model_version"): 2,
    ("ModelInferRequest", "id"): 3,
    ("ModelInferRequest", "parameters"): 4,
    ("ModelInferRequest", "inputs"): 5,
    ("ModelInferRequest", "outputs"): 6,
    ("ModelInferRequest", "raw_input_contents"): 7,
    ("ModelInferRequest.InferInputTensor", "name"): 1,
    ("ModelInferRequest.InferInputTensor", "datatype"): 2,
    ("ModelInferRequest.InferInputTensor", "shape"): 3,
    ("ModelInferRequest.InferInputTensor", "parameters"): 4,
    ("ModelInferRequest.InferInputTensor", "contents"): 5,
    ("ModelInferRequest.InferRequestedOutputTensor", "name"): 1,
    ("ModelInferResponse", "model_name"): 1,
    ("ModelInferResponse", "model_version"): 2,
    ("ModelInferResponse", "id"): 3,
    ("ModelInferResponse", "outputs"): 5,
    ("ModelInferResponse", "raw_output_contents"): 6,
    ("ModelInferResponse.InferOutputTensor", "contents"): 5,
    ("InferTensorContents", "bool_contents"): 1,
    ("InferTensorContents", "int_contents"): 2,
    ("InferTensorContents", "int64_contents"): 3,
    ("InferTensorContents", "uint_contents"): 4,
    ("InferTensorContents", "uint64_contents"): 5,
    ("InferTensorContents", "fp32_contents"): 6,
    ("InferTensorContents", "fp64_contents"): 7,
    ("InferTensorContents", "bytes_contents"): 8,
    ("InferParameter", "bool_param"): 1,
    ("InferParameter", "int64_param"): 2,
    ("InferParameter", "string_param"): 3,
    ("ModelMetadataResponse", "versions"): 2,
    ("ModelMetadataResponse", "platform"): 3,
    ("ModelMetadataResponse", "inputs"): 4,
    ("ModelMetadataResponse", "outputs"): 5,
    ("ModelMetadataResponse.TensorMetadata", "shape"): 3,
    ("ModelReadyRequest", "version"): 2,
    ("ServerMetadataResponse", "extensions"): 3,
}


@pytest.mark.parametrize(("message", "field"), sorted(WIRE))
def test_wire_numbers(message, field):
    desc = _pb().DESCRIPTOR.message_types_by_name[message.split(".")[0]]
    for nested in message.split(".")[1:]:
        desc = desc.nested_types_by_name[nested]
    assert desc.full_name == "inference." + message
    assert desc.fields_by_name[field].number == WIRE[(message, field)]


def test_service_and_methods():
    service = _pb().DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    for rpc in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"):
        assert methods[rpc] == (f"{rpc}Request", f"{rpc}Response")
