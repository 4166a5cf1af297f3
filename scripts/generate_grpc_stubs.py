"""Regenerate the Python modules of the Open Inference Protocol's gRPC service.

    .venv/bin/python scripts/generate_grpc_stubs.py [--out DIR]

Compiles server_image/src/modelroll_server/proto/inference.proto with grpcio-tools (the
`dev` extra) into inference_pb2.py, inference_pb2.pyi and inference_pb2_grpc.py beside it,
or under DIR (tests/unit/test_grpc_stubs.py compares a fresh build with the committed files).
The modules are committed so the server image needs no code generator at build time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "server_image" / "src"
PROTO = "modelroll_server/proto/inference.proto"  # relative to SRC: it names the module path
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    """Write the generated modules under ``out`` (as ``out``/modelroll_server/proto/...)."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{SRC}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", PROTO]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return [out / Path(PROTO).parent / name for name in GENERATED]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=SRC, help="root to write under (default: the source tree)")
    for path in generate(p.parse_args().out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
