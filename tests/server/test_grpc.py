"""The Open Inference Protocol over gRPC: a real server process, real gRPC on loopback.

Same models, batcher, validation and metrics as HTTP: answers are scikit-learn's bit for bit,
refusals carry the JSON path's messages, and requests are counted under protocol="grpc".
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from conftest import Models, Server, parse_metrics, running_server, spawn_server, wait_until
from modelroll_server.proto import inference_pb2 as pb
from modelroll_server.proto import inference_pb2_grpc as pb_grpc

from tests.helpers import free_port
from tests.helpers import stop_process as stop

pytestmark = pytest.mark.server

LIMIT = 1024 * 1024  # --max-body-bytes of the shared server: also its gRPC message limit
Tensor = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor


class GrpcServer:
    """A running server with a gRPC channel to it."""

    def __init__(self, srv: Server, port: int, version: str = "1") -> None:
        self.srv = srv
        self.port = port
        self.version = version
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def count(self, protocol: str, code: int) -> float:
        labels = f'model_name="{self.srv.name}",model_version="{self.version}",track="stable"'
        return self.srv.metrics().get(f'modelroll_requests_total{{{labels},protocol="{protocol}",code="{code}"}}', 0)

    def metric(self, name: str, extra: str = "") -> float:
        labels = f'model_name="{self.srv.name}",model_version="{self.version}",track="stable"{extra}'
        return self.srv.metrics().get(f"{name}{{{labels}}}", 0)


@contextlib.contextmanager
def grpc_server(
    tmp: Path, model: Path, name: str, args: list[str] | None = None, version: str = "1"
) -> Iterator[GrpcServer]:
    port = free_port()
    with running_server(tmp, model, name, ["--version", version, "--grpc-port", str(port), *(args or [])]) as srv:
        g = GrpcServer(srv, port, version)
        try:
            yield g
        finally:
            g.channel.close()


@pytest.fixture(scope="module")
def lr(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    with grpc_server(tmp_path_factory.mktemp("grpc"), models.paths["lr"], "lr",
                     ["--max-body-bytes", str(LIMIT)], version="v7") as g:  # fmt: skip
        yield g


def request(
    X: np.ndarray, *, raw: bool = False, datatype: str = "FP64", field: str = "fp64_contents",
    outputs: tuple[str, ...] = (), model: str = "lr", version: str = "", rid: str = "",
) -> pb.ModelInferRequest:  # fmt: skip
    """A ModelInferRequest with one input 'x' holding X, typed or as raw little-endian bytes."""
    X = np.asarray(X)
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=rid,
                               outputs=[Output(name=n) for n in outputs])  # fmt: skip
    tensor = Tensor(name="x", datatype=datatype, shape=list(X.shape))
    if raw:
        req.raw_input_contents.append(X.astype(X.dtype.newbyteorder("<")).tobytes())
    else:
        getattr(tensor.contents, field).extend(X.ravel().tolist())
    req.inputs.append(tensor)
    return req


def refusal(call, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(req, timeout=10)
    return info.value


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --- health and metadata --------------------------------------------------------------------
def test_live_ready_and_model_ready(lr):
    s = lr.stub
    assert s.ServerLive(pb.ServerLiveRequest()).live is True
    assert s.ServerReady(pb.ServerReadyRequest()).ready is True
    assert s.ModelReady(pb.ModelReadyRequest(name="lr")).ready is True
    assert s.ModelReady(pb.ModelReadyRequest(name="lr", version="v7")).ready is True
    e = refusal(s.ModelReady, pb.ModelReadyRequest(name="nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "model 'nope' not found"
    e = refusal(s.ModelReady, pb.ModelReadyRequest(name="lr", version="v1"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "version 'v1' of model 'lr' not found"


def test_metadata_equals_the_http_metadata(lr):
    http = lr.srv.get("/v2/models/lr").json()
    m = lr.stub.ModelMetadata(pb.ModelMetadataRequest(name="lr"))
    assert (m.name, list(m.versions), m.platform) == (http["name"], http["versions"], http["platform"]) == (
        "lr", ["v7"], "sklearn")  # fmt: skip
    for got, want in ((m.inputs, http["inputs"]), (m.outputs, http["outputs"])):
        assert [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in got] == want
    assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [
        ("predict", "INT64", [-1]), ("predict_proba", "FP64", [-1, 3])]  # fmt: skip
    server = lr.stub.ServerMetadata(pb.ServerMetadataRequest())
    assert {"name": server.name, "version": server.version, "extensions": list(server.extensions)} == lr.srv.get(
        "/v2").json()  # fmt: skip
    e = refusal(lr.stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_repository_rpcs_are_unimplemented(lr):
    e = refusal(lr.stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="lr"))
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED


# --- inference --------------------------------------------------------------------------------
def test_typed_contents_answer_as_sklearn_bit_for_bit(lr, models):
    X = models.X[:7]
    resp = lr.stub.ModelInfer(request(X, outputs=("predict", "predict_proba"), rid="req-42"), timeout=10)
    assert (resp.model_name, resp.model_version, resp.id) == ("lr", "v7", "req-42")
    assert not resp.raw_output_contents
    pred, proba = resp.outputs
    assert (pred.name, pred.datatype, list(pred.shape)) == ("predict", "INT64", [7])
    assert same_bits(np.array(pred.contents.int64_contents, dtype=np.int64), models.lr.predict(X))
    assert (proba.name, proba.datatype, list(proba.shape)) == ("predict_proba", "FP64", [7, 3])
    got = np.array(proba.contents.fp64_contents, dtype=np.float64).reshape(7, 3)
    assert same_bits(got, models.lr.predict_proba(X))


def test_raw_contents_answer_raw_bit_for_bit(lr, models):
    X = models.X[10:15]
    resp = lr.stub.ModelInfer(request(X, raw=True, outputs=("predict_proba", "predict"), rid="raw-1"), timeout=10)
    assert resp.id == "raw-1"
    assert [o.name for o in resp.outputs] == ["predict", "predict_proba"]
    assert all(not o.contents.ListFields() for o in resp.outputs)  # raw in, raw out
    pred = np.frombuffer(resp.raw_output_contents[0], dtype="<i8")
    proba = np.frombuffer(resp.raw_output_contents[1], dtype="<f8").reshape(5, 3)
    assert same_bits(pred.astype(np.int64), models.lr.predict(X))
    assert same_bits(proba.astype(np.float64), models.lr.predict_proba(X))


def test_default_output_and_other_datatypes(lr, models):
    X = models.X[:3]
    resp = lr.stub.ModelInfer(request(X), timeout=10)  # no outputs asked: the server's --method
    assert [o.name for o in resp.outputs] == ["predict"] and resp.id  # none sent: one generated (feedback.py)
    X32 = X.astype(np.float32)
    resp = lr.stub.ModelInfer(request(X32, datatype="FP32", field="fp32_contents"), timeout=10)
    assert list(resp.outputs[0].contents.int64_contents) == models.lr.predict(X32.astype(np.float64)).tolist()
    Xi = np.rint(X * 3).astype(np.int64)
    for raw in (False, True):
        resp = lr.stub.ModelInfer(request(Xi, datatype="INT64", field="int64_contents", raw=raw), timeout=10)
        got = np.frombuffer(resp.raw_output_contents[0], "<i8") if raw else resp.outputs[0].contents.int64_contents
        assert list(got) == models.lr.predict(Xi.astype(np.float64)).tolist()


NAN_ROW = [float("nan")] + [0.5] * 19
# name -> (gRPC request, the same request as V2 JSON, words of the message)
SAME_AS_JSON = {
    "wrong feature count": (
        request(np.full((1, 19), 0.5)),
        b'{"inputs":[{"name":"x","shape":[1,19],"datatype":"FP64","data":[' + b",".join([b"0.5"] * 19) + b"]}]}",
        "input 'x': wrong number of features: the model expects 20, got 19",
    ),
    "NaN": (
        request(np.array([NAN_ROW])),
        b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"FP64","data":[NaN' + b",0.5" * 19 + b"]}]}",
        "input 'x' contains NaN; this model does not accept missing values",
    ),
    "unknown datatype": (
        request(np.full((1, 20), 0.5), datatype="FP128"),
        b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"FP128","data":[' + b",".join([b"0.5"] * 20) + b"]}]}",
        "input 'x': unknown datatype 'FP128'",
    ),
    "INT64 out of range": (
        request(np.full((1, 20), 2**63, dtype=np.uint64), datatype="INT64", field="uint64_contents"),
        b'{"inputs":[{"name":"x","shape":[1,20],"datatype":"INT64","data":['
        + b",".join([b"9223372036854775808"] * 20)
        + b"]}]}",
        "input 'x': values out of range for INT64",
    ),
    "shape and data disagree": (
        pb.ModelInferRequest(
            model_name="lr",
            inputs=[
                Tensor(
                    name="x", datatype="FP64", shape=[2, 20], contents=pb.InferTensorContents(fp64_contents=[0.5] * 20)
                )
            ],
        ),
        b'{"inputs":[{"name":"x","shape":[2,20],"datatype":"FP64","data":[' + b",".join([b"0.5"] * 20) + b"]}]}",
        "input 'x': shape [2, 20] needs 40 values, data has 20",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(SAME_AS_JSON))
def test_invalid_input_is_refused_with_the_json_paths_message(lr, case):
    req, body, message = SAME_AS_JSON[case]
    e = refusal(lr.stub.ModelInfer, req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == message
    http = lr.srv.post("/v2/models/lr/infer", data=body, headers={"content-type": "application/json"})
    assert http.status_code == 400 and http.json()["error"] == message


def test_grpc_only_encoding_errors_name_the_input(lr):
    X = np.full((1, 20), 0.5)
    short = request(X, raw=True)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-3]
    both = request(X, raw=True)
    both.inputs[0].contents.fp64_contents.extend(X.ravel().tolist())
    two_fields = request(X)
    two_fields.inputs[0].contents.int64_contents.append(1)
    strings = request(X)
    strings.inputs[0].contents.ClearField("fp64_contents")
    strings.inputs[0].contents.bytes_contents.extend([b"a"] * 20)
    cases = {
        "raw_input_contents has 157 bytes, not a whole number of FP64 values": short,
        "both contents and raw_input_contents are set": both,
        "values in several contents fields (int64_contents, fp64_contents)": two_fields,
        "data contains non-numeric values": strings,
    }
    for words, req in cases.items():
        e = refusal(lr.stub.ModelInfer, req)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, words
        assert e.details().startswith("input 'x'") and words in e.details(), e.details()


def test_unknown_model_or_version_is_not_found_and_counted(lr):
    before = lr.count("grpc", 404)
    e = refusal(lr.stub.ModelInfer, request(np.zeros((1, 20)), model="nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "model 'nope' not found"
    e = refusal(lr.stub.ModelInfer, request(np.zeros((1, 20)), version="v1"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "version 'v1' of model 'lr' not found"
    assert lr.stub.ModelInfer(request(np.zeros((1, 20)), version="v7"), timeout=10).model_version == "v7"
    assert lr.count("grpc", 404) - before == 2


def test_requests_are_counted_under_protocol_grpc(lr, models):
    before = {c: lr.count("grpc", c) for c in (200, 400)}
    latency_before = lr.metric("modelroll_request_duration_seconds_count", ',protocol="grpc"')
    http_before = lr.count("v2", 200)
    for i in range(3):
        lr.stub.ModelInfer(request(models.X[i : i + 1]), timeout=10)
    refusal(lr.stub.ModelInfer, request(np.full((1, 19), 0.5)))
    assert lr.count("grpc", 200) - before[200] == 3
    assert lr.count("grpc", 400) - before[400] == 1
    assert lr.metric("modelroll_request_duration_seconds_count", ',protocol="grpc"') - latency_before == 4
    assert lr.count("v2", 200) == http_before  # nothing counted twice


def test_a_message_over_the_limit_is_refused_and_the_server_still_serves(lr, models):
    rows = LIMIT // (20 * 8) + 10
    e = refusal(lr.stub.ModelInfer, request(np.zeros((rows, 20)), raw=True))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert lr.stub.ModelInfer(request(models.X[:1]), timeout=10).outputs[0].name == "predict"
    assert lr.srv.get("/v2/health/live").status_code == 200
    # the largest allowed message is served
    fits = (LIMIT - 1024) // (20 * 8)
    resp = lr.stub.ModelInfer(request(np.zeros((fits, 20)), raw=True), timeout=30)
    assert list(resp.outputs[0].shape) == [fits]


def test_a_model_failure_is_internal_and_counted(models, tmp_path):
    with grpc_server(tmp_path, models.paths["faulty"], "faulty") as g:
        before = g.count("grpc", 500)
        e = refusal(g.stub.ModelInfer, request(np.array([[666.0] + [0.0] * 19]), model="faulty"))
        assert e.code() == grpc.StatusCode.INTERNAL
        assert e.details() == "model raised RuntimeError: feature 0 is cursed"
        assert g.count("grpc", 500) - before == 1
        ok = g.stub.ModelInfer(request(np.zeros((1, 20)), model="faulty"), timeout=10)
        assert list(ok.outputs[0].contents.int64_contents) == [1]


# --- batching, workers, shutdown ---------------------------------------------------------------
def test_grpc_and_http_requests_share_batches(models, tmp_path):
    k = 4  # requests per transport, all sent at once; a batch of more than k rows holds both
    with grpc_server(tmp_path, models.paths["lr"], "lr", ["--max-batch-wait-ms", "300"]) as g:
        # an idle connection: the batcher cannot conclude that every client is already in
        idle = socket.create_connection(("127.0.0.1", g.srv.port))
        sessions = [requests.Session() for _ in range(k)]
        for s in sessions:
            s.get(g.srv.url + "/v2/health/live", timeout=10)
        batches_before = g.metric("modelroll_batch_size_count")
        small_before = g.metric("modelroll_batch_size_bucket", f',le="{k}"')
        start = threading.Barrier(2 * k)
        X = models.X[: 2 * k]
        body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": None}]}

        def over_http(i: int) -> list[int]:
            body_i = {"inputs": [{**body["inputs"][0], "data": X[i].tolist()}]}
            start.wait()
            r = sessions[i].post(g.srv.url + "/v2/models/lr/infer", json=body_i, timeout=10)
            assert r.status_code == 200, r.text
            return r.json()["outputs"][0]["data"]

        def over_grpc(i: int) -> list[int]:
            req = request(X[k + i : k + i + 1])
            start.wait()
            return list(g.stub.ModelInfer(req, timeout=10).outputs[0].contents.int64_contents)

        with ThreadPoolExecutor(2 * k) as pool:
            futures = [pool.submit(over_http, i) for i in range(k)] + [pool.submit(over_grpc, i) for i in range(k)]
            answers = [f.result() for f in futures]
        idle.close()
        assert sum(answers, []) == models.lr.predict(X).tolist()
        batches = g.metric("modelroll_batch_size_count") - batches_before
        mixed = batches - (g.metric("modelroll_batch_size_bucket", f',le="{k}"') - small_before)
        assert batches < 2 * k and mixed >= 1, (batches, mixed)
        assert g.count("v2", 200) == k and g.count("grpc", 200) == k


def test_with_a_batch_wait_a_lone_caller_is_not_held_and_concurrent_calls_are_batched(models, tmp_path):
    wait_ms = 200  # a lone caller's batch looks for others once every 20 waits (4 s)
    port = free_port()
    # no HTTP client at all: an open HTTP connection would hold every batch (HTTP's rule)
    args = ["--model", str(models.paths["lr"]), "--name", "lr", "--grpc-port", str(port),
            "--max-batch-wait-ms", str(wait_ms)]  # fmt: skip
    proc, http_port, _ = spawn_server(tmp_path, args)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        wait_until(lambda: proc.poll() is None and _grpc_ready(stub), what="gRPC ServerReady")

        def batches() -> float:
            r = requests.get(f"http://127.0.0.1:{http_port}/metrics", headers={"connection": "close"}, timeout=10)
            return parse_metrics(r.text)['modelroll_batch_size_count{model_name="lr",model_version="1",track="stable"}']

        X = models.X[:8]
        held = 0
        for i in range(10):
            t0 = time.perf_counter()
            stub.ModelInfer(request(X[i % 8 : i % 8 + 1]), timeout=10)
            held += time.perf_counter() - t0 >= wait_ms / 1000
        assert held <= 1  # the first call may be the one that looks
        before = batches()
        time.sleep(20 * wait_ms / 1000)  # the next lone batch looks again: the burst finds it
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: list(stub.ModelInfer(request(X[i : i + 1]), timeout=10)
                                                   .outputs[0].contents.int64_contents), range(8)))  # fmt: skip
        assert sum(answers, []) == models.lr.predict(X).tolist()
        assert batches() - before < 8
    finally:
        channel.close()
        stop(proc)


def _grpc_ready(stub: pb_grpc.GRPCInferenceServiceStub) -> bool:
    try:
        return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready)
    except grpc.RpcError:
        return False


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _established(port: int) -> set[int]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01":
                    inodes.add(int(f[9]))
    return inodes


def _sockets_of(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


def test_two_workers_both_answer_on_the_shared_port(models, tmp_path):
    with grpc_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as g:
        parent = g.srv.proc.pid
        workers = _children(parent)
        assert len(workers) == 2
        # the parent loaded gRPC's modules (shared with the workers) but runs no thread, gRPC's
        # or any other, that a fork would lose; each worker runs its own gRPC threads
        assert "cygrpc" in Path(f"/proc/{parent}/maps").read_text()
        assert len(list(Path(f"/proc/{parent}/task").iterdir())) == 1
        for w in workers:
            threads = [(t / "comm").read_text().strip() for t in Path(f"/proc/{w}/task").iterdir()]
            assert "grpc_global_tim" in threads, threads
        # separate connections (a local subchannel pool each), which SO_REUSEPORT spreads
        channels = [
            grpc.insecure_channel(f"127.0.0.1:{g.port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(16)
        ]
        try:
            for ch in channels:
                resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(request(models.X[:2]), timeout=10)
                assert list(resp.outputs[0].contents.int64_contents) == models.lr.predict(models.X[:2]).tolist()
            connections = _established(g.port)
            served = {w: len(_sockets_of(w) & connections) for w in workers}
            assert sum(served.values()) >= 16 and all(served.values()), served  # + the fixture's channel
        finally:
            for ch in channels:
                ch.close()
        assert g.count("grpc", 200) == 16


def test_sigterm_answers_grpc_calls_in_flight(models, tmp_path):
    # a long batch wait holds the calls in the batcher, where the server has taken them on
    with grpc_server(tmp_path, models.paths["lr"], "lr", ["--max-batch-wait-ms", "1000"]) as g:
        X = models.X[:3]
        calls = [g.stub.ModelInfer.future(request(X[i : i + 1]), timeout=30) for i in range(3)]
        wait_until(lambda: g.metric("modelroll_inflight_requests") == 3, interval=0.01, what="calls in flight")
        g.srv.proc.send_signal(signal.SIGTERM)
        answers = [list(call.result().outputs[0].contents.int64_contents) for call in calls]
        assert sum(answers, []) == models.lr.predict(X).tolist()
        assert g.srv.proc.wait(timeout=30) == 0
        e = refusal(g.stub.ModelInfer, request(X[:1]))
        assert e.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_port_from_the_environment_and_a_clash_refused(models, tmp_path):
    port = free_port()
    with running_server(tmp_path, models.paths["lr"], "lr", env={"MODELROLL_SERVER_GRPC_PORT": str(port)}) as srv:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert pb_grpc.GRPCInferenceServiceStub(ch).ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert srv.get("/v2/health/live").status_code == 200
    http = free_port()
    proc, _, log = spawn_server(tmp_path, ["--model", str(models.paths["lr"]), "--name", "lr",
                                           "--grpc-port", str(http)], port=http)  # fmt: skip
    assert proc.wait(timeout=30) == 2
    assert f"--grpc-port (MODELROLL_SERVER_GRPC_PORT): must differ from --port ({http})" in log.read_text()
