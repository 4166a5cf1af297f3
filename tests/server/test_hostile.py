"""Clients an attacker (or a broken proxy) would be: each test fails on a server that trusts them.

Raw sockets on purpose: HTTP client libraries would hide the framing under test.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import running_server, spawn_server, wait_until
from modelroll_server.config import Settings

pytestmark = pytest.mark.server

LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\n\r\n"


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


class Stream:
    """Responses read off one connection (content-length framing: all the server sends)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {self.buf!r}")
        self.buf += chunk

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = 0 if head else int(headers["content-length"])
        while len(self.buf) < size:
            self._more()
        body, self.buf = self.buf[:size], self.buf[size:]
        return int(lines[0].split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return Stream(sock).response()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (data before is ignored)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def accept_queue(port: int) -> int:
    """Connections waiting in the listen queue of 127.0.0.1:port (rx_queue of a LISTEN socket)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(queues.split(":")[1], 16)
    return 0


def v2_body(rows: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}]}


# --- framing --------------------------------------------------------------------------------
def test_head_is_answered_without_a_body(lr_server):
    with connect(lr_server.port) as s:
        s.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: m\r\n\r\n" + LIVE)
        stream = Stream(s)
        status, headers, _ = stream.response(head=True)
        assert (status, headers["content-length"]) == (200, "13")
        # had a body been sent, it would now be read as the next response's status line
        assert stream.response() == (200, {"content-type": "application/json", "content-length": "13"},
                                     b'{"live":true}')  # fmt: skip
    r = requests.head(lr_server.url + "/v2/health/live", timeout=5)
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "13", b"")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxyz",
        b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
    ],
    ids=["websocket", "h2c", "connect"],
)
def test_one_response_per_request_whatever_the_headers(lr_server, request_bytes):
    with connect(lr_server.port) as s:
        s.sendall(request_bytes)
        out = read_until_closed(s)
    assert out.count(b"HTTP/1.1 ") == 1, out


def test_absolute_form_targets_route_by_their_path(lr_server):
    with connect(lr_server.port) as s:
        s.sendall(b"GET http://model.example:8080/v2/health/live?x=1 HTTP/1.1\r\nHost: model.example\r\n\r\n")
        status, _, body = read_response(s)
    assert (status, body) == (200, b'{"live":true}')


# --- size caps ------------------------------------------------------------------------------
def test_request_line_and_headers_are_capped(models, tmp_path):
    with running_server(tmp_path, models.paths["lr"], "lr", ["--max-header-bytes", "8192"]) as srv:
        with connect(srv.port) as s:
            s.sendall(b"GET /v2/health/live?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: m\r\n\r\n")
            assert read_response(s)[0] == 414
        with connect(srv.port) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
            assert read_response(s)[0] == 431
        # a header that never ends: refused and closed after the cap, not buffered forever
        before = rss_bytes(srv.proc.pid)
        with connect(srv.port) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\nX-Endless: ")
            sent = 0
            with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
                while sent < 64 * 1024 * 1024:
                    s.sendall(b"c" * 65536)
                    sent += 65536
            assert sent < 16 * 1024 * 1024, "the server kept reading an endless header"
        assert rss_bytes(srv.proc.pid) - before < 16 * 1024 * 1024
        assert srv.get("/v2/health/live").status_code == 200


# --- timeouts -------------------------------------------------------------------------------
def test_idle_half_sent_and_stalled_connections_are_closed(models, tmp_path):
    args = ["--header-timeout-seconds", "1", "--body-timeout-seconds", "1", "--keep-alive-seconds", "1"]
    with running_server(tmp_path, models.paths["lr"], "lr", args) as srv:
        with connect(srv.port) as idle:  # keep-alive after an answer
            idle.sendall(LIVE)
            assert read_response(idle)[0] == 200
            assert closed_within(idle, 5)
        with connect(srv.port) as silent:  # connected, never sends
            assert closed_within(silent, 5)
        with connect(srv.port) as half_head:
            half_head.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: m\r\n")
            assert read_until_closed(half_head).startswith(b"HTTP/1.1 408 ")
        with connect(srv.port) as half_body:
            half_body.sendall(
                b"POST /v2/models/lr/infer HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"inputs"'
            )
            assert read_until_closed(half_body).startswith(b"HTTP/1.1 408 ")
        # a connection in use is not cut: three requests a little apart on one keep-alive connection
        with connect(srv.port) as busy:
            for _ in range(3):
                busy.sendall(LIVE)
                assert read_response(busy)[0] == 200
                assert not closed_within(busy, 0.5)


def test_sigterm_is_not_held_by_a_half_sent_request(models, tmp_path):
    proc, port, _ = spawn_server(tmp_path, ["--model", str(models.paths["lr"]), "--name", "lr"])
    try:
        wait_until(lambda: _answers(port), what="the server")
        with connect(port) as s:
            s.sendall(b"POST /v2/models/lr/infer HTTP/1.1\r\nHost: m\r\nContent-Length: 100\r\n\r\n{")
            wait_until(lambda: _open_connections(port) >= 1, what="the connection to be taken")
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5, "the grace period (25 s) was spent on a silent client"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _open_connections(port: int) -> int:
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].split(":")[1], 16) == port:
            n += 1
    return n


# --- back-pressure and admission ------------------------------------------------------------
def test_a_client_that_pipelines_and_never_reads_cannot_grow_memory(lr_server):
    """Each /metrics request is ~40 bytes and its answer kilobytes: without flow control the
    server reads on and buffers every answer (once 3.8 MB sent grew it by ~900 MB)."""
    before = rss_bytes(lr_server.proc.pid)
    request = b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n"
    chunk = request * (65536 // len(request))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", lr_server.port))
    s.setblocking(False)
    sent = 0
    try:
        while sent < 256 * 1024 * 1024:
            _, writable, _ = select.select([], [s], [], 3)
            if not writable:
                break  # the server stopped reading: what a bounded server does
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                continue
        grown = rss_bytes(lr_server.proc.pid) - before
    finally:
        s.close()
    assert sent < 64 * 1024 * 1024, f"the server read {sent} bytes of requests it could not answer"
    assert grown < 64 * 1024 * 1024, f"server memory grew by {grown / 1e6:.0f} MB"
    assert lr_server.get("/v2/health/live").status_code == 200


def test_requests_beyond_the_concurrency_limit_get_503_and_probes_still_answer(models, tmp_path):
    # a long batch wait holds admitted requests, so all five are in progress together
    args = ["--max-concurrent-requests", "2", "--max-batch-wait-ms", "1500"]
    with running_server(tmp_path, models.paths["lr"], "slow", args) as srv:
        body = v2_body(np.zeros((1, 20)))
        codes: list[int] = []
        barrier = threading.Barrier(6)  # five clients and this thread

        def call() -> None:
            with requests.Session() as http:
                barrier.wait(timeout=10)
                r = http.post(f"{srv.url}/v2/models/slow/infer", json=body, timeout=30)
                codes.append(r.status_code)
                if r.status_code == 503:
                    assert "busy" in r.json()["error"]

        threads = [threading.Thread(target=call) for _ in range(5)]
        for t in threads:
            t.start()
        barrier.wait(timeout=10)
        assert srv.get("/v2/health/live").status_code == 200
        for t in threads:
            t.join(timeout=30)
        assert sorted(set(codes)) == [200, 503], codes
        assert codes.count(200) == 2
        m = srv.metrics()
        assert m[
            'modelroll_requests_total{model_name="slow",model_version="1",track="stable",protocol="v2",code="503"}'
        ] == codes.count(503)


# --- the event loop stays free --------------------------------------------------------------
def test_probes_answer_within_100ms_while_the_largest_request_is_predicted(tmp_path):
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    path = tmp_path / "forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y), path)
    limit = Settings("m", "n").max_body_bytes  # the default --max-body-bytes
    rows = np.random.default_rng(0).normal(size=(60_000, 20))
    per_row = len(requests.models.complexjson.dumps(v2_body(rows[:1000]))) / 1000
    rows = rows[: int(limit * 0.97 / per_row)]
    payload = requests.models.complexjson.dumps(v2_body(rows)).encode()
    assert limit * 0.9 < len(payload) <= limit
    with running_server(tmp_path, path, "forest") as srv, connect(srv.port) as big:
        big.sendall(b"POST /v2/models/forest/infer HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(payload) + payload)  # fmt: skip
        latencies: list[float] = []
        while not select.select([big], [], [], 0)[0]:
            for path_ in ("/v2/health/live", "/v2/health/ready"):
                c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)  # a new one each, like kubelet
                start = time.perf_counter()
                c.request("GET", path_)
                assert c.getresponse().status == 200
                latencies.append(time.perf_counter() - start)
                c.close()
        status, _, body = read_response(big)
        assert status == 200
        assert len(requests.models.complexjson.loads(body)["outputs"][0]["data"]) == len(rows)
    assert len(latencies) >= 6, "the prediction was too quick to overlap any probe"
    assert max(latencies) < 0.1, f"slowest probe {max(latencies) * 1000:.0f} ms"


# --- workers and shutdown -------------------------------------------------------------------
def test_a_killed_worker_costs_only_its_own_requests(models, tmp_path):
    """Under load, SIGKILL one of two workers: no 5xx, nothing fails but what was inside it, and
    the replacement takes connections only once it can answer them."""
    with running_server(tmp_path, models.paths["lr"], "lr", ["--workers", "2"]) as srv:
        body = v2_body(models.X[:1])
        stop = threading.Event()
        codes: list[int] = []
        failures: list[str] = []
        clients = 4

        def client() -> None:
            while not stop.is_set():
                try:  # a fresh connection each time, so both workers and the replacement get some
                    r = requests.post(f"{srv.url}/v2/models/lr/infer", json=body, timeout=10,
                                      headers={"connection": "close"})  # fmt: skip
                    codes.append(r.status_code)
                except requests.ConnectionError as e:
                    failures.append(str(e))

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(codes) >= 200, what="load")
            workers = children(srv.proc.pid)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(children(srv.proc.pid) - {victim}) == 2, what="a replacement worker")
            replacement = (children(srv.proc.pid) - workers).pop()
            seen = len(codes)
            wait_until(lambda: len(codes) >= seen + 400, what="load after the replacement")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert set(codes) == {200}, sorted(set(codes))
        assert len(failures) <= clients, failures  # at most the requests inside the victim
        assert replacement in children(srv.proc.pid)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_connections_waiting_in_the_listen_queue(models, tmp_path, workers):
    """Connections the kernel accepted but no worker took yet were promised a server."""
    proc, port, _ = spawn_server(tmp_path, ["--model", str(models.paths["lr"]), "--name", "lr",
                                            "--workers", str(workers)])  # fmt: skip
    waiting = 6
    socks: list[socket.socket] = []
    try:
        wait_until(lambda: _answers(port), what="the server")
        pids = children(proc.pid) if workers > 1 else {proc.pid}
        for pid in pids:  # nobody accepts now
            os.kill(pid, signal.SIGSTOP)
        request = (b"POST /v2/models/lr/infer HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n")  # fmt: skip
        payload = requests.models.complexjson.dumps(v2_body(models.X[:1])).encode()
        for _ in range(waiting):
            s = connect(port)
            s.sendall(request % len(payload) + payload)
            socks.append(s)
        wait_until(lambda: accept_queue(port) == waiting, what="connections in the listen queue")
        proc.send_signal(signal.SIGTERM)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        statuses = [read_response(s)[0] for s in socks]
        assert statuses == [200] * waiting
        assert proc.wait(timeout=30) == 0
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
