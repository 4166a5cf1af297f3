"""``modelroll-server fetch gs://…`` against fake-gcs-server.

fake-gcs-server does not check credentials, so it sits behind a front on loopback that does
what Cloud Storage does with the bearer token: the front refuses a request whose token is not
the one the credential source issued (the GCE metadata server of GKE Workload Identity, served
here) or not a JWT signed by the service-account key in use.
"""

from __future__ import annotations

import hashlib
import json
import random
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fetch_emulators import (
    DEAD,
    FakeGcs,
    LoopbackServer,
    Request,
    Response,
    Route,
    assert_failed,
    assert_fetched,
    cut_first,
    emulator_dir,
    fetch_env,
    forward,
    run_fetch,
    service_account_key,
    verify_jwt,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(1800)]  # a cold cache builds fake-gcs-server

PAYLOAD = random.Random(11).randbytes(3_000_000)
DIGEST = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
KEY = "fraud/v7/model file.joblib"
DOTTED = "models.example.com"
ACCESS_TOKEN = "ya29.workload-identity-token"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    g = FakeGcs(
        tmp_path_factory.mktemp("gcs"), emulator_dir() / "bin", {("models", KEY): PAYLOAD, (DOTTED, KEY): PAYLOAD}
    )
    yield g
    g.stop()


def checking_front(gcs: FakeGcs, accept: Callable[[str | None], bool]) -> Route:
    """Cloud Storage's side of authentication: 401 unless ``accept(Authorization header)``."""

    def route(req: Request) -> Response:
        if not accept(req.headers.get("authorization")):
            return Response(
                401,
                {"Content-Type": "application/xml"},
                b"<Error><Code>AuthenticationRequired</Code><Message>Bad token</Message></Error>",
            )
        return forward(gcs.url, req, keep_host=False)

    return route


def gs_env(tmp: Path, base_url: str, **extra: str) -> dict[str, str]:
    return fetch_env(tmp, {"GOOGLE_BASE_URL": base_url, **extra})


def test_workload_identity_token_from_the_metadata_server(gcs, tmp_path):
    def metadata(req: Request) -> Response:  # the GKE metadata server
        path = urllib.parse.urlsplit(req.path).path
        if req.headers.get("metadata-flavor") != "Google":
            return Response(403)
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            body = {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            return Response(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
        return Response(404)

    with (
        LoopbackServer(metadata) as md,
        LoopbackServer(checking_front(gcs, lambda auth: auth == f"Bearer {ACCESS_TOKEN}")) as front,
    ):
        env = gs_env(tmp_path, front.url, GCE_METADATA_HOST=f"127.0.0.1:{md.port}")
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert len(md.requests) == 1 and [r.method for r in front.requests] == ["GET"]


def test_service_account_key_signs_the_token(gcs, tmp_path):
    info, public_key = service_account_key()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(info))
    claims: list[dict[str, object]] = []

    def accept(auth: str | None) -> bool:
        if not auth or not auth.startswith("Bearer "):
            return False
        try:
            claims.append(verify_jwt(auth.removeprefix("Bearer "), public_key))
        except Exception:
            return False
        return True

    with LoopbackServer(checking_front(gcs, accept)) as front:
        env = gs_env(tmp_path, front.url, GOOGLE_APPLICATION_CREDENTIALS=str(key_file))
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"gs://{DOTTED}/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert claims and claims[0]["iss"] == info["client_email"]

        # A key the store does not know (another service account's) is refused, and said so.
        other, _ = service_account_key()
        key_file.write_text(json.dumps(other))
        dest = tmp_path / "out2" / "model.joblib"
        reason = assert_failed(run_fetch(tmp_path, f"gs://{DOTTED}/{KEY}", dest, DIGEST, env), dest)
        assert "HTTP 401" in reason and "GOOGLE_APPLICATION_CREDENTIALS" in reason


def test_storage_emulator_host_and_a_bearer_token(gcs, tmp_path):
    with LoopbackServer(checking_front(gcs, lambda auth: auth == "Bearer static-token")) as front:
        env = fetch_env(tmp_path, {"STORAGE_EMULATOR_HOST": front.url, "GOOGLE_BEARER_TOKEN": "static-token"})
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        dest = tmp_path / "out2" / "model.joblib"
        reason = assert_failed(run_fetch(tmp_path, "gs://models/fraud/v7/missing.joblib", dest, DIGEST, env), dest)
        assert reason.startswith("GET gs://models/fraud/v7/missing.joblib failed: HTTP 404")


def test_no_credentials_names_the_variables_and_sends_nothing(gcs, tmp_path):
    with LoopbackServer(checking_front(gcs, lambda auth: True)) as front:
        dest = tmp_path / "out" / "model.joblib"
        reason = assert_failed(
            run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, gs_env(tmp_path, front.url)), dest
        )
        assert front.requests == []
    assert reason.startswith("cannot get credentials for gs://models/") and f"metadata server at {DEAD}" in reason
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_SKIP_SIGNATURE"):
        assert var in reason
    missing = str(tmp_path / "nope.json")
    env = gs_env(tmp_path, f"http://{DEAD}", GOOGLE_APPLICATION_CREDENTIALS=missing)
    reason = assert_failed(run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, env), dest)
    assert reason.startswith(f"GOOGLE_APPLICATION_CREDENTIALS={missing} cannot be read")


def test_a_public_bucket_is_read_unsigned_only_when_asked(gcs, tmp_path):
    with LoopbackServer(checking_front(gcs, lambda auth: auth is None)) as front:
        env = gs_env(tmp_path, front.url, GOOGLE_SKIP_SIGNATURE="true")
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)


def test_a_stream_cut_mid_way_resumes(gcs, tmp_path):
    with LoopbackServer(cut_first(gcs.url, times=1, keep_host=False)) as front:
        env = gs_env(tmp_path, front.url, GOOGLE_BEARER_TOKEN="t")
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"gs://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert len(front.requests) == 2 and front.requests[1].headers["range"].startswith("bytes=")
