"""Write the gRPC service a peer's package compiles in as a protoset file for ghz.

``python protoset.py MODULE OUT`` (run with the peer's own Python: MLServer and KServe ship
their ``inference`` service as generated ``*_pb2`` modules, without the ``.proto``) writes the
module's file descriptor and those it imports as a ``FileDescriptorSet``.
"""

import importlib
import sys

from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet


def protoset(module: str) -> FileDescriptorSet:
    out, seen = FileDescriptorSet(), set()

    def add(d: FileDescriptor) -> None:
        if d.name in seen:
            return
        seen.add(d.name)
        for dep in d.dependencies:  # imports first, as protoc writes them
            add(dep)
        p = FileDescriptorProto()
        d.CopyToProto(p)
        out.file.append(p)

    add(importlib.import_module(module).DESCRIPTOR)
    return out


if __name__ == "__main__":
    with open(sys.argv[2], "wb") as f:
        f.write(protoset(sys.argv[1]).SerializeToString())
