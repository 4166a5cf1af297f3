"""``modelroll-server fetch az://…`` and ``https://ACCOUNT.blob.core.windows.net/…`` against Azurite.

Azurite recomputes every SharedKey signature, so a fetch succeeds only if obstore really signed
with the account key it was given. AKS workload identity is tested against an Azurite over
HTTPS that accepts OAuth tokens, with the Entra ID token endpoint served on loopback.
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
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    DEAD,
    Azurite,
    LoopbackServer,
    Request,
    Response,
    assert_failed,
    assert_fetched,
    cut_first,
    emulator_dir,
    entra_access_token,
    fetch_env,
    forward,
    make_ca,
    run_fetch,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(1800)]  # a cold cache installs Azurite

PAYLOAD = random.Random(13).randbytes(3_000_000)
DIGEST = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
KEY = "fraud/v7/model file.joblib"
BLOB_URL = f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/models/{urllib.parse.quote(KEY)}"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    a = Azurite(tmp_path_factory.mktemp("azurite"), emulator_dir())
    try:
        a.create_container("models")
        a.put("models", KEY, PAYLOAD)
        yield a
    finally:
        a.stop()


def az_env(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return fetch_env(tmp, {"AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT, "AZURE_STORAGE_ENDPOINT": endpoint, **extra})


@pytest.mark.parametrize("uri", [f"az://models/{KEY}", BLOB_URL], ids=["az", "blob-url"])
def test_account_key_with_both_uri_forms(azurite, tmp_path, uri):
    env = az_env(tmp_path, azurite.endpoint, AZURE_STORAGE_ACCOUNT_KEY=AZURITE_KEY)
    if uri == BLOB_URL:  # the account comes from the host
        del env["AZURE_STORAGE_ACCOUNT_NAME"]
    dest = tmp_path / "out" / "model.joblib"
    assert_fetched(run_fetch(tmp_path, uri, dest, DIGEST, env), dest, PAYLOAD)


def test_a_wrong_key_is_refused_by_the_store(azurite, tmp_path):
    """Azurite recomputes the SharedKey signature: proof that requests are signed with the key."""
    wrong = "AAAA" + AZURITE_KEY[4:]
    dest = tmp_path / "out" / "model.joblib"
    env = az_env(tmp_path, azurite.endpoint, AZURE_STORAGE_ACCOUNT_KEY=wrong)
    reason = assert_failed(run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, env), dest)
    assert "HTTP 403" in reason and "AuthorizationFailure" in reason and "AZURE_STORAGE_ACCOUNT_KEY" in reason
    env = az_env(tmp_path, azurite.endpoint, AZURE_STORAGE_ACCOUNT_KEY=AZURITE_KEY)
    reason = assert_failed(run_fetch(tmp_path, "az://models/fraud/missing.joblib", dest, DIGEST, env), dest)
    assert reason.startswith("GET az://models/fraud/missing.joblib failed: HTTP 404") and "BlobNotFound" in reason


def test_no_credentials_names_the_variables_and_sends_nothing(azurite, tmp_path):
    with LoopbackServer(lambda req: forward(azurite.url, req)) as front:
        dest = tmp_path / "out" / "model.joblib"
        env = az_env(tmp_path, f"{front.url}/{AZURITE_ACCOUNT}")
        reason = assert_failed(run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, env), dest)
        assert front.requests == []
    assert (
        reason.startswith("cannot get credentials for az://models/") and f"managed identity at http://{DEAD}" in reason
    )
    for var in (
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_SKIP_SIGNATURE",
    ):
        assert var in reason


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "AZURE_STORAGE_ACCOUNT_NAME is not set"),
        (
            {
                "AZURE_STORAGE_ACCOUNT_NAME": "acct",
                "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/t",
                "AZURE_TENANT_ID": "t",
            },
            "AZURE_CLIENT_ID is not set but AZURE_FEDERATED_TOKEN_FILE is",
        ),
        (
            {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c"},
            "AZURE_TENANT_ID is not set but AZURE_CLIENT_SECRET is",
        ),
    ],
)
def test_missing_settings_are_named(tmp_path, env, missing):
    dest = tmp_path / "out" / "model.joblib"
    r = run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, fetch_env(tmp_path, env))
    assert assert_failed(r, dest).startswith(missing)


def test_a_stream_cut_mid_way_resumes(azurite, tmp_path):
    with LoopbackServer(cut_first(azurite.url, times=1)) as front:
        env = az_env(tmp_path, f"{front.url}/{AZURITE_ACCOUNT}", AZURE_STORAGE_ACCOUNT_KEY=AZURITE_KEY)
        dest = tmp_path / "out" / "model.joblib"
        assert_fetched(run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
        assert len(front.requests) == 2 and "range" in front.requests[1].headers


def test_aks_workload_identity(tmp_path):
    """The AKS webhook's variables: the federated token goes to Entra ID's token endpoint (served
    here over HTTPS), whose access token Azurite then accepts as a bearer token."""
    ca, cert, key = make_ca(tmp_path)
    azurite = Azurite(tmp_path, emulator_dir(), tls=(ca, cert, key))
    try:
        azurite.create_container("models")
        azurite.put("models", KEY, PAYLOAD)
        tenant, client_id = "72f988bf-0000-0000-0000-000000000001", "6e8f0e9a-client"
        trusted = "federated-service-account-token"  # what Entra ID trusts for this client
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(trusted)

        def entra(req: Request) -> Response:
            form = dict(urllib.parse.parse_qsl(req.body.decode()))
            if (
                req.path != f"/{tenant}/oauth2/v2.0/token"
                or form.get("client_id") != client_id
                or form.get("client_assertion") != trusted
            ):
                return Response(400, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}')
            body = {"access_token": entra_access_token(tenant), "expires_in": 3599, "token_type": "Bearer"}
            return Response(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        with LoopbackServer(entra, tls=(cert, key)) as idp:
            env = az_env(
                tmp_path,
                azurite.endpoint,
                AZURE_CLIENT_ID=client_id,
                AZURE_TENANT_ID=tenant,
                AZURE_FEDERATED_TOKEN_FILE=str(token_file),
                AZURE_AUTHORITY_HOST=idp.url,
                SSL_CERT_FILE=str(ca),
            )
            dest = tmp_path / "out" / "model.joblib"
            assert_fetched(run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, env), dest, PAYLOAD)
            assert len(idp.requests) == 1

            token_file.write_text("a-token-entra-does-not-trust")
            dest = tmp_path / "out2" / "model.joblib"
            reason = assert_failed(run_fetch(tmp_path, f"az://models/{KEY}", dest, DIGEST, env), dest)
            assert reason.startswith("cannot get credentials for az://models/") and "AKS workload identity" in reason
            assert "HTTP 400" in reason
    finally:
        azurite.stop()
