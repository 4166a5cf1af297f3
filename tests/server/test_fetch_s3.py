"""``modelroll-server fetch s3://…`` against moto's S3 server with IAM authentication on.

moto recomputes every SigV4 signature and checks the access key, the session token of an
assumed role and the policy, so a fetch succeeds only if the credential chain really produced
valid credentials and obstore really signed with them. The credential endpoints a cloud
provides (STS for IRSA, the EKS Pod Identity agent, the instance metadata service) are small
loopback servers here that hand out credentials moto's STS issued.
"""

from __future__ import annotations

import hashlib
import json
import random
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fetch_emulators import (
    DEAD,
    REGION,
    LoopbackServer,
    Moto,
    Request,
    Response,
    Route,
    assert_failed,
    assert_fetched,
    aws_credentials_json,
    cut_first,
    fetch_env,
    forward,
    make_ca,
    run_fetch,
)

pytestmark = pytest.mark.server

PAYLOAD = random.Random(7).randbytes(3_000_000)
DIGEST = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
KEY = "fraud/v7/model file.joblib"
DOTTED = "models.example.com"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    m = Moto(tmp_path_factory.mktemp("moto"), {("models", KEY): PAYLOAD, (DOTTED, KEY): PAYLOAD})
    yield m
    m.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


def s3_env(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return fetch_env(tmp, {"AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint, **extra})


def keys(moto: Moto) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": moto.key_id, "AWS_SECRET_ACCESS_KEY": moto.secret}


def test_static_keys_path_style_and_a_bucket_with_dots(moto, tmp_path):
    env = s3_env(tmp_path, moto.url, **keys(moto))
    for i, bucket in enumerate(["models", DOTTED]):
        dest = tmp_path / f"out{i}" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"s3://{bucket}/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
    # AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, as in the AWS SDKs.
    env = s3_env(tmp_path, f"http://{DEAD}", AWS_ENDPOINT_URL_S3=moto.url, **keys(moto))
    dest = tmp_path / "out-s3-endpoint" / "model.joblib"
    assert_fetched(run_fetch(tmp_path, f"s3://{DOTTED}/{KEY}", dest, DIGEST, env), dest, PAYLOAD)


def test_a_wrong_secret_or_an_unknown_key_is_refused_by_the_store(moto, tmp_path):
    """moto recomputes the SigV4 signature: proof that requests are really signed with the keys."""
    dest = tmp_path / "out" / "model.joblib"
    env = s3_env(tmp_path, moto.url, AWS_ACCESS_KEY_ID=moto.key_id, AWS_SECRET_ACCESS_KEY="not-the-secret")
    reason = assert_failed(run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, env), dest)
    assert "HTTP 403" in reason and "SignatureDoesNotMatch" in reason and "AWS_ACCESS_KEY_ID" in reason
    env = s3_env(tmp_path, moto.url, AWS_ACCESS_KEY_ID="AKIAUNKNOWN000000000", AWS_SECRET_ACCESS_KEY="x")
    reason = assert_failed(run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, env), dest)
    assert "InvalidAccessKeyId" in reason


def test_a_missing_key_is_a_404_naming_the_uri(moto, tmp_path):
    dest = tmp_path / "out" / "model.joblib"
    r = run_fetch(
        tmp_path, "s3://models/fraud/v7/missing.joblib", dest, DIGEST, s3_env(tmp_path, moto.url, **keys(moto))
    )
    reason = assert_failed(r, dest)
    assert "s3://models/fraud/v7/missing.joblib" in reason and "HTTP 404" in reason and "NoSuchKey" in reason


def sts_front(moto: Moto, token: str) -> Route:
    """STS as AWS serves it, over HTTPS: AssumeRoleWithWebIdentity with the token checked, then
    answered by moto's STS (the credentials it issues are the ones moto's S3 then accepts)."""

    def route(req: Request) -> Response:
        params = {**req.query, **dict(urllib.parse.parse_qsl(req.body.decode()))}
        if params.get("Action") != "AssumeRoleWithWebIdentity":
            return Response(400, body=b"not an AssumeRoleWithWebIdentity call")
        if params.get("WebIdentityToken") != token:
            return Response(
                400,
                {"Content-Type": "text/xml"},
                b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                b"<Message>Incorrect token audience</Message></Error></ErrorResponse>",
            )
        return moto.sts_call(params)

    return route


def test_irsa_web_identity_token_through_sts_over_https(moto, ca, tmp_path):
    ca_pem, cert, key = ca
    token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig")
    with LoopbackServer(sts_front(moto, token_file.read_text()), tls=(cert, key)) as sts:
        irsa = {
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_ARN": moto.role_arn,
            "AWS_ENDPOINT_URL_STS": sts.url,
            "AWS_CA_BUNDLE": str(ca_pem),
        }
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(
            run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, moto.url, **irsa)), dest, PAYLOAD
        )
        [call] = sts.requests
        assert call.query["RoleArn"] == moto.role_arn and call.query["WebIdentityToken"] == token_file.read_text()

        # A token STS refuses: the reason says the credentials failed, and where they came from.
        token_file.write_text("a-stale-token")
        dest = tmp_path / "out2" / "model.joblib"
        r = run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, moto.url, **irsa))
        reason = assert_failed(r, dest)
        assert reason.startswith("cannot get credentials for s3://models/") and "web identity" in reason
        assert "HTTP 400" in reason and "InvalidIdentityToken" in reason

    # A token file that is not there is named, before any request.
    irsa["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(tmp_path / "nope" / "token")
    r = run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, moto.url, **irsa))
    assert "AWS_WEB_IDENTITY_TOKEN_FILE=" in assert_failed(r, dest) and "No such file" in r.reason


def test_eks_pod_identity_agent(moto, tmp_path):
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("pod-identity-token-123")

    def agent(req: Request) -> Response:  # what the EKS Pod Identity agent on 169.254.170.23 does
        if req.path != "/v1/credentials" or req.headers.get("authorization") != token_file.read_text():
            return Response(401, body=b'{"message":"bad token"}')
        return Response(200, {"Content-Type": "application/json"}, aws_credentials_json(moto.assume_role("pod")))

    with LoopbackServer(agent) as srv:
        env = s3_env(
            tmp_path,
            moto.url,
            AWS_CONTAINER_CREDENTIALS_FULL_URI=f"{srv.url}/v1/credentials",
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
        )
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"s3://{DOTTED}/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert [r.headers["authorization"] for r in srv.requests] == ["pod-identity-token-123"]


def test_instance_metadata_imdsv2(moto, tmp_path):
    session = "imds-session-token"

    def imds(req: Request) -> Response:
        if req.method == "PUT" and req.path == "/latest/api/token":
            ok = req.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
            return Response(200, body=session.encode()) if ok else Response(400)
        if req.headers.get("x-aws-ec2-metadata-token") != session:
            return Response(401)  # IMDSv2 only, as EKS nodes are configured
        if req.path == "/latest/meta-data/iam/security-credentials/":
            return Response(200, body=b"model-reader")
        if req.path == "/latest/meta-data/iam/security-credentials/model-reader":
            return Response(200, {"Content-Type": "text/plain"}, aws_credentials_json(moto.assume_role("node")))
        return Response(404)

    with LoopbackServer(imds) as srv:
        env = s3_env(tmp_path, moto.url, AWS_METADATA_ENDPOINT=srv.url)
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert [(r.method, r.path) for r in srv.requests] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            ("GET", "/latest/meta-data/iam/security-credentials/model-reader"),
        ]


def test_no_credentials_names_the_variables_and_sends_nothing_unsigned(moto, tmp_path):
    with LoopbackServer(lambda req: forward(moto.url, req)) as front:
        dest = tmp_path / "out" / "model.joblib"
        r = run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, front.url))
        reason = assert_failed(r, dest)
        assert front.requests == []  # the store never saw a request, signed or not
    assert reason.startswith("cannot get credentials for s3://models/")
    assert f"instance metadata service at http://{DEAD}" in reason
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_SKIP_SIGNATURE",
    ):
        assert var in reason
    assert r.seconds < 30


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIAX"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": "x"}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r"}, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        ({"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token"}, "AWS_ROLE_ARN"),
        (
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"},
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ),
    ],
)
def test_half_a_credential_names_the_other_half(given, missing, tmp_path):
    dest = tmp_path / "out" / "model.joblib"
    r = run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, f"http://{DEAD}", **given))
    reason = assert_failed(r, dest)
    assert reason.startswith(f"{missing} is not set but {next(iter(given))} is")


def test_a_public_bucket_is_read_unsigned_only_when_asked(tmp_path):
    public = Moto(tmp_path, {("public-models", KEY): PAYLOAD}, auth=False)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::public-models/*"}
        ],
    }
    public.boto("s3").put_bucket_policy(Bucket="public-models", Policy=json.dumps(policy))
    try:
        with LoopbackServer(lambda req: forward(public.url, req)) as front:
            dest = tmp_path / "out" / "model.joblib"
            r = run_fetch(tmp_path, f"s3://public-models/{KEY}", dest, DIGEST, s3_env(tmp_path, front.url))
            assert "AWS_SKIP_SIGNATURE=true" in assert_failed(r, dest) and front.requests == []
            env = s3_env(tmp_path, front.url, AWS_SKIP_SIGNATURE="true")
            assert_fetched(run_fetch(tmp_path, f"s3://public-models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
            assert [r.method for r in front.requests] == ["GET"]
            assert "authorization" not in front.requests[0].headers
    finally:
        public.stop()


def test_a_stream_cut_mid_way_resumes_where_it_broke(moto, tmp_path):
    with LoopbackServer(cut_first(moto.url, times=1)) as front:
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(
            run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, front.url, **keys(moto))),
            dest,
            PAYLOAD,
        )
        first, second = front.requests
        assert "range" not in first.headers
        start = int(second.headers["range"].removeprefix("bytes=").split("-")[0])
        assert 0 < start <= len(PAYLOAD) // 2  # only the missing bytes are asked for again


def test_a_stream_that_keeps_breaking_fails_with_one_line(moto, tmp_path):
    with LoopbackServer(cut_first(moto.url, times=-1)) as front:
        dest = tmp_path / "out" / "model.joblib"
        r = run_fetch(tmp_path, f"s3://models/{KEY}", dest, DIGEST, s3_env(tmp_path, front.url, **keys(moto)))
    reason = assert_failed(r, dest)
    assert reason.startswith(f"reading s3://models/{KEY} failed 3 times")
    assert r.seconds < 90
