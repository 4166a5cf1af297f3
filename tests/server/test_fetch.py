"""``modelroll-server fetch``: local paths, file://, http (including a body cut mid-way), s3
(when moto is installed), wrong digests and failing URLs, each with the one-line reason the
operator surfaces. The object stores' credential chains: test_fetch_s3/_gcs/_azure.py."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import free_port, server_env, wait_until
from fetch_emulators import LoopbackServer, Request, Response, Route
from modelroll_contract import EXIT_FETCH_FAILED, EXIT_INTEGRITY_MISMATCH

pytestmark = pytest.mark.server

PAYLOAD = b"model bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def fetch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelroll_server.cli", "fetch", *args],
                          env=server_env(env), capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "model.joblib"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


@contextlib.contextmanager
def http_server(root: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_local_path_and_file_uri(source, tmp_path):
    for i, uri in enumerate([str(source), source.as_uri()]):
        dest = tmp_path / "out" / f"m{i}.joblib"
        r = fetch(uri, str(dest), "--digest", DIGEST, "--termination-log", str(tmp_path / "tl"))
        assert r.returncode == 0, r.stderr
        assert dest.read_bytes() == PAYLOAD
        assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []


def test_fetch_http(source, tmp_path):
    dest = tmp_path / "models" / "model.joblib"
    with http_server(source.parent) as base:
        r = fetch(f"{base}/model.joblib", str(dest), "--digest", DIGEST)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == PAYLOAD


def test_fetch_wrong_digest_leaves_nothing(source, tmp_path):
    dest = tmp_path / "models" / "model.joblib"
    tl = tmp_path / "termination-log"
    wrong = "sha256:" + "f" * 64
    with http_server(source.parent) as base:
        r = fetch(f"{base}/model.joblib", str(dest), "--digest", wrong, "--termination-log", str(tl))
    assert r.returncode == EXIT_INTEGRITY_MISMATCH  # the exit code says why, not words in the message
    reason = tl.read_text()
    assert reason.startswith("IntegrityMismatch: digest mismatch") and DIGEST in reason and reason.count("\n") == 1
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_fetch_failing_urls(source, tmp_path):
    tl = tmp_path / "tl"
    with http_server(source.parent) as base:
        r = fetch(f"{base}/missing.joblib", str(tmp_path / "a"), "--termination-log", str(tl))
    assert r.returncode == EXIT_FETCH_FAILED and "HTTP 404" in tl.read_text()
    port = free_port()  # nothing listens there
    r = fetch(f"http://127.0.0.1:{port}/m.joblib", str(tmp_path / "b"), "--termination-log", str(tl))
    assert r.returncode == EXIT_FETCH_FAILED and "refused" in tl.read_text().lower()
    r = fetch(str(tmp_path / "nope.joblib"), str(tmp_path / "c"), "--termination-log", str(tl))
    assert r.returncode == EXIT_FETCH_FAILED and "cannot open" in tl.read_text()
    r = fetch("ftp://example/m", str(tmp_path / "d"), "--termination-log", str(tl))
    assert r.returncode == EXIT_FETCH_FAILED and "unsupported URI scheme 'ftp'" in tl.read_text()
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_fetch_s3_from_a_local_s3_server(source, tmp_path):
    pytest.importorskip("moto", reason="moto[server] provides the local S3-compatible server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        endpoint = f"http://127.0.0.1:{port}"
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                 "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": endpoint}  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing-secret")  # fmt: skip

        def up() -> bool:
            try:
                s3.list_buckets()
                return True
            except Exception:
                return False

        wait_until(up, timeout=30, what="the local S3 server")
        s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="models", Key="fraud/v7/model file.joblib", Body=PAYLOAD)
        dest = tmp_path / "s3" / "model.joblib"
        r = fetch("s3://models/fraud/v7/model file.joblib", str(dest), "--digest", DIGEST, env=creds)
        assert r.returncode == 0, r.stderr
        assert dest.read_bytes() == PAYLOAD
        tl = tmp_path / "tl"
        r = fetch("s3://models/fraud/v7/missing.joblib", str(tmp_path / "x"),
                  "--termination-log", str(tl), env=creds)  # fmt: skip
        assert r.returncode == EXIT_FETCH_FAILED and "HTTP 404" in tl.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def ranged(payload: bytes, cut: list[bool], honour_range: bool = True) -> Route:
    """A file server that answers ``Range`` (206) unless told not to, and cuts a body in half
    each time the next value of ``cut`` is True (a connection that drops mid-download)."""

    def route(req: Request) -> Response:
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", req.headers.get("range", ""))
        headers = {"ETag": '"v1"', "Content-Type": "application/octet-stream"}
        status = 200
        if m and honour_range and req.headers.get("if-range") in (None, '"v1"'):
            start, status = int(m.group(1)), 206
            headers["Content-Range"] = f"bytes {start}-{len(payload) - 1}/{len(payload)}"
        body = payload[start:]
        return Response(status, headers, body, cut_at=len(body) // 2 if cut and cut.pop(0) else None)

    return route


BIG = random.Random(3).randbytes(2_000_000)
BIG_DIGEST = "sha256:" + hashlib.sha256(BIG).hexdigest()


def test_fetch_http_resumes_a_body_cut_mid_way(tmp_path):
    with LoopbackServer(ranged(BIG, [True, False])) as srv:
        dest = tmp_path / "models" / "model.joblib"
        r = fetch(f"{srv.url}/model.joblib", str(dest), "--digest", BIG_DIGEST)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == BIG and [p.name for p in dest.parent.iterdir()] == ["model.joblib"]
    first, second = srv.requests
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={len(BIG) // 2}-" and second.headers["if-range"] == '"v1"'
    assert "resuming" in r.stderr


def test_fetch_http_starts_over_when_the_server_cannot_resume(tmp_path):
    with LoopbackServer(ranged(BIG, [True, False], honour_range=False)) as srv:
        dest = tmp_path / "models" / "model.joblib"
        r = fetch(f"{srv.url}/model.joblib", str(dest), "--digest", BIG_DIGEST)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == BIG  # not the first half twice
    assert len(srv.requests) == 2


def test_fetch_http_that_keeps_breaking_fails_with_one_line(tmp_path):
    tl = tmp_path / "tl"
    with LoopbackServer(ranged(BIG, [True] * 10)) as srv:
        dest = tmp_path / "models" / "model.joblib"
        r = fetch(f"{srv.url}/model.joblib?sig=secret", str(dest), "--digest", BIG_DIGEST, "--termination-log", str(tl))
    assert r.returncode == EXIT_FETCH_FAILED
    reason = tl.read_text()
    assert reason.startswith(f"FetchFailed: reading {srv.url}/model.joblib failed 3 times") and reason.count("\n") == 1
    assert "connection closed after" in reason and "secret" not in reason
    assert len(srv.requests) == 3 and list(dest.parent.iterdir()) == []
