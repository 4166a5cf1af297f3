"""The pure half of fetch.py: which store a URI names, and which credential source each store's
chain picks from a given environment (no network, no files)."""

from __future__ import annotations

import pytest
from modelroll_server.fetch import FetchError, azure_settings, gcs_settings, parse_uri, redact, s3_settings


@pytest.mark.parametrize(
    ("uri", "kind", "bucket", "path", "account"),
    [
        ("/models/m.joblib", "file", "", "/models/m.joblib", ""),
        ("file:///models/my%20model.joblib", "file", "", "/models/my model.joblib", ""),
        ("https://example.com/m.joblib?sig=1", "http", "", "", ""),
        (
            "s3://models.example.com/fraud/v7/model%20file.joblib",
            "s3",
            "models.example.com",
            "fraud/v7/model file.joblib",
            "",
        ),
        ("gs://models/fraud/v7/m.joblib", "gs", "models", "fraud/v7/m.joblib", ""),
        ("az://models/fraud/v7/m.joblib", "azure", "models", "fraud/v7/m.joblib", ""),
        ("https://acct.blob.core.windows.net/models/fraud/v7/m.joblib", "azure", "models", "fraud/v7/m.joblib", "acct"),
        # With a query string the URL carries its own credential (SAS): plain HTTPS reads it.
        ("https://acct.blob.core.windows.net/models/m.joblib?sv=2024&sig=x", "http", "", "", ""),
    ],
)
def test_parse_uri(uri, kind, bucket, path, account):
    loc = parse_uri(uri)
    assert (loc.kind, loc.bucket, loc.account) == (kind, bucket, account)
    if kind != "http":
        assert loc.path == path


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://models", "s3 URI must look like s3://bucket/key"),
        ("gs:///m.joblib", "gs URI must look like gs://bucket/object"),
        ("az://models/", "az URI must look like az://container/blob"),
        ("https://acct.blob.core.windows.net/models", "Azure blob URL must look like"),
        ("ftp://host/m", "unsupported URI scheme 'ftp'"),
    ],
)
def test_malformed_uris_are_named(uri, message):
    with pytest.raises(FetchError, match=message):
        parse_uri(uri)


def test_redact_drops_secrets_from_urls():
    assert redact("https://user:pw@host/m.joblib?X-Amz-Signature=abc#f") == "https://host/m.joblib"


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"AWS_SKIP_SIGNATURE": "true", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "no credentials"),
        (
            {
                "AWS_ACCESS_KEY_ID": "a",
                "AWS_SECRET_ACCESS_KEY": "b",
                "AWS_ROLE_ARN": "r",
                "AWS_WEB_IDENTITY_TOKEN_FILE": "/t",
            },
            "static keys",
        ),
        (
            {
                "AWS_ROLE_ARN": "r",
                "AWS_WEB_IDENTITY_TOKEN_FILE": "/t",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://x",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/p",
            },
            "web identity",
        ),
        (
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://x", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/p"},
            "EKS Pod Identity",
        ),
        ({}, "the instance metadata service at http://169.254.169.254"),
    ],
)
def test_the_aws_chain_picks_the_first_configured_source(env, source):
    assert s3_settings(env).source.startswith(source)


def test_an_http_endpoint_is_allowed_because_it_was_named():
    assert s3_settings({"AWS_ENDPOINT_URL": "http://minio:9000"}).client.get("allow_http") is True
    assert "allow_http" not in s3_settings({"AWS_ENDPOINT_URL": "https://minio:9000"}).client
    assert s3_settings({"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b"}).config == {
        "endpoint": "http://b"
    }


def test_the_google_and_azure_chains():
    assert gcs_settings({"GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}).token_files == (
        ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
    )
    assert gcs_settings({"STORAGE_EMULATOR_HOST": "http://gcs:4443/"}).config == {"base_url": "http://gcs:4443"}
    assert gcs_settings({}).source.startswith("the metadata server at metadata.google.internal")
    assert azure_settings({"AZURE_STORAGE_ACCOUNT_KEY": "k"}, "acct").source == (
        "the account key (AZURE_STORAGE_ACCOUNT_KEY)"
    )
    env = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_FEDERATED_TOKEN_FILE": "/t"}
    assert azure_settings(env, "acct").source.startswith("AKS workload identity")
    assert azure_settings({"AZURE_STORAGE_USE_EMULATOR": "1"}, "").config == {"account_name": "devstoreaccount1"}
    with pytest.raises(FetchError, match="AZURE_STORAGE_ACCOUNT_NAME is not set"):
        azure_settings({}, "")
