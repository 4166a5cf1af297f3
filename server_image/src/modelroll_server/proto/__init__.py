"""The Open Inference Protocol's gRPC definition (inference.proto) and the modules generated from it
by scripts/generate_grpc_stubs.py (committed; tests/unit/test_grpc_stubs.py checks they are current)."""
