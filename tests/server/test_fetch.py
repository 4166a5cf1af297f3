"""``modelroll-server fetch``: local paths, file://, http, s3 (when moto is installed),
wrong digests and failing URLs, each with the one-line reason the operator surfaces."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import free_port, server_env, wait_until

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
    assert r.returncode == 1
    reason = tl.read_text()
    assert "digest mismatch" in reason and DIGEST in reason and reason.count("\n") == 1
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_fetch_failing_urls(source, tmp_path):
    tl = tmp_path / "tl"
    with http_server(source.parent) as base:
        r = fetch(f"{base}/missing.joblib", str(tmp_path / "a"), "--termination-log", str(tl))
    assert r.returncode == 1 and "HTTP 404" in tl.read_text()
    port = free_port()  # nothing listens there
    r = fetch(f"http://127.0.0.1:{port}/m.joblib", str(tmp_path / "b"), "--termination-log", str(tl))
    assert r.returncode == 1 and "refused" in tl.read_text().lower()
    r = fetch(str(tmp_path / "nope.joblib"), str(tmp_path / "c"), "--termination-log", str(tl))
    assert r.returncode == 1 and "cannot open" in tl.read_text()
    r = fetch("ftp://example/m", str(tmp_path / "d"), "--termination-log", str(tl))
    assert r.returncode == 1 and "unsupported URI scheme 'ftp'" in tl.read_text()
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
        assert r.returncode == 1 and "HTTP 404" in tl.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_s3_signature_matches_botocore():
    """moto accepts any signature, so the SigV4 arithmetic is checked against botocore's."""
    pytest.importorskip("botocore")
    import datetime

    import botocore.auth
    import botocore.credentials
    from botocore.awsrequest import AWSRequest
    from modelroll_server.fetch import s3_request

    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
           "AWS_REGION": "eu-west-1", "AWS_SESSION_TOKEN": "tok+en/="}  # fmt: skip
    for endpoint in ("http://127.0.0.1:9000", None):
        e = dict(env, AWS_ENDPOINT_URL=endpoint) if endpoint else env
        url, _ = s3_request("models", "fraud/v7/model file+1.joblib", e)
        req = AWSRequest(method="GET", url=url)
        creds = botocore.credentials.Credentials(env["AWS_ACCESS_KEY_ID"],
                                                 env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"])  # fmt: skip
        botocore.auth.S3SigV4Auth(creds, "s3", "eu-west-1").add_auth(req)
        when = datetime.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        url2, ours = s3_request("models", "fraud/v7/model file+1.joblib", e, when)
        assert url2 == url
        assert ours["authorization"] == req.headers["Authorization"]
