"""The storage initializer: copy a model artifact to a local path, verified (network and file I/O).

Runs as the Pod's init container. Sources:

- plain paths and ``file://`` (a mounted volume), ``http(s)://`` (the standard library);
- ``s3://BUCKET/KEY``, ``gs://BUCKET/OBJECT``, ``az://CONTAINER/BLOB`` and
  ``https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB`` through obstore (Rust's
  ``object_store``), which signs requests and walks each cloud's standard credential chain:
  static keys, IRSA web identity, EKS Pod Identity and instance metadata on AWS; service-account
  keys, application default credentials and the metadata server (GKE Workload Identity) on
  Google Cloud; account keys, SAS tokens, AKS workload identity and managed identity on Azure.

The bytes stream into a temporary file beside the destination while being hashed, and the file
is renamed into place only if the digest matches, so the server never sees a partial or
unverified artifact. A stream that breaks mid-way resumes from the bytes already written
(a range request; from the start if the source cannot resume). Every failure is one line,
a ``FetchError``, that names what is wrong; a missing credential names the variables that
would provide it. Nothing is ever sent unsigned unless the user opted in
(``AWS_SKIP_SIGNATURE`` / ``GOOGLE_SKIP_SIGNATURE`` / ``AZURE_SKIP_SIGNATURE``).

The ``*_settings`` and ``parse_uri`` functions are pure (they read the mapping they are given);
``fetch`` and the sources do the I/O.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .loading import parse_digest

log = logging.getLogger("modelroll.fetch")

CHUNK = 1024 * 1024
ATTEMPTS = 3  # opens of a stream (the first and two resumes); HTTP opens retried as often
TIMEOUT_S = 60.0
BACKOFF_S = 0.5

# obstore: its own retries cover requests (5xx, connection errors, timeouts) and a body that
# breaks mid-way (it resumes with a range request); these bound how long that may take.
STORE_RETRY: dict[str, Any] = {
    "max_retries": 4,
    "retry_timeout": datetime.timedelta(seconds=60),
    "backoff": {
        "init_backoff": datetime.timedelta(milliseconds=200),
        "max_backoff": datetime.timedelta(seconds=5),
        "base": 2,
    },
}
# The default overall timeout (30 s) would cut a large model; a stalled read is caught instead.
STORE_CLIENT: dict[str, Any] = {"connect_timeout": "10s", "read_timeout": "60s", "timeout": "1h"}

AWS_IMDS = "http://169.254.169.254"
AZURE_BLOB_HOST = ".blob.core.windows.net"
TRUE = ("1", "true", "yes", "on")


class FetchError(Exception):
    """One line the operator shows as the reason the model could not be fetched."""

    def __init__(self, message: str, integrity: bool = False) -> None:
        super().__init__(message)
        self.integrity = integrity  # the bytes arrived, and they are not the pinned artifact


class StreamBroken(Exception):
    """The bytes stopped before the end; opening the source again at the offset may help."""


# --- where the bytes are (pure) -------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """A parsed source URI. ``kind`` is file, http, s3, gs or azure."""

    kind: str
    uri: str  # for messages: no query string, no user info
    path: str = ""  # file path, object key, blob name
    bucket: str = ""  # bucket or container
    account: str = ""  # Azure storage account ("" for az://: from AZURE_STORAGE_ACCOUNT_NAME)


def redact(url: str) -> str:
    """The URL without user info, query or fragment (SAS tokens, presigned signatures)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_uri(uri: str) -> Location:
    """Classify a source URI; raise FetchError for a malformed or unsupported one."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    shown = redact(uri)
    if scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return Location("file", uri, path=uri)
    if scheme == "file":
        return Location("file", uri, path=urllib.parse.unquote(parts.path))
    if scheme in ("s3", "gs", "az"):
        bucket, key = parts.netloc, urllib.parse.unquote(parts.path.lstrip("/"))
        if not bucket or not key:
            noun = {"s3": "bucket/key", "gs": "bucket/object", "az": "container/blob"}[scheme]
            raise FetchError(f"{scheme} URI must look like {scheme}://{noun}, got {shown!r}")
        return Location({"az": "azure"}.get(scheme, scheme), shown, path=key, bucket=bucket)
    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        # A blob URL with a query carries its own credential (a SAS token): plain HTTPS reads it.
        if scheme == "https" and host.endswith(AZURE_BLOB_HOST) and not parts.query:
            account = host[: -len(AZURE_BLOB_HOST)]
            container, _, blob = urllib.parse.unquote(parts.path.lstrip("/")).partition("/")
            if not account or "." in account or not container or not blob:
                raise FetchError(
                    f"Azure blob URL must look like https://ACCOUNT{AZURE_BLOB_HOST}/container/blob, got {shown!r}"
                )
            return Location("azure", shown, path=blob, bucket=container, account=account)
        return Location("http", uri)
    raise FetchError(f"unsupported URI scheme {scheme!r} in {shown!r} (file, http, https, s3, gs, az)")


# --- each store's settings and credential source (pure) -------------------------------------
@dataclass(frozen=True)
class StoreSettings:
    """What obstore is given, and which credential source the chain will use (for messages).

    ``markers`` are substrings of an obstore error that show the credential source failed
    (rather than the object request); ``hint`` says what to set when it did."""

    config: dict[str, Any]
    client: dict[str, Any]
    source: str
    markers: tuple[str, ...] = ()
    hint: str = ""
    token_files: tuple[tuple[str, str], ...] = field(default=())  # (variable, path) to check


def _set(env: Mapping[str, str], *names: str) -> str | None:
    """The value of the first of ``names`` that is set and not empty."""
    return next((env[n] for n in names if env.get(n)), None)


def _truthy(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in TRUE


def _pair(env: Mapping[str, str], a: str, b: str, what: str) -> bool:
    """True if both are set, False if neither; FetchError naming the missing one otherwise."""
    has_a, has_b = bool(env.get(a)), bool(env.get(b))
    if has_a != has_b:
        given, missing = (a, b) if has_a else (b, a)
        raise FetchError(f"{missing} is not set but {given} is: {what} needs both")
    return has_a


def _client(endpoint: str | None, ca_bundle: str | None) -> dict[str, Any]:
    client = dict(STORE_CLIENT)
    if endpoint and endpoint.lower().startswith("http://"):
        client["allow_http"] = True  # the user named a plain-HTTP endpoint (MinIO, an emulator)
    if ca_bundle:
        client["root_certificate_file"] = ca_bundle  # read by the I/O layer
    return client


AWS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (static keys), AWS_WEB_IDENTITY_TOKEN_FILE and "
    "AWS_ROLE_ARN (IRSA), or AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "
    "(EKS Pod Identity), or run where the instance metadata service answers; for a public bucket set "
    "AWS_SKIP_SIGNATURE=true"
)


def s3_settings(env: Mapping[str, str]) -> StoreSettings:
    """S3 settings and the credential source, in object_store's order of precedence."""
    endpoint = _set(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    config: dict[str, Any] = {"endpoint": endpoint} if endpoint else {}
    client = _client(endpoint, _set(env, "AWS_CA_BUNDLE", "SSL_CERT_FILE"))
    if _truthy(env, "AWS_SKIP_SIGNATURE"):
        return StoreSettings(config, client, "no credentials (AWS_SKIP_SIGNATURE=true)")
    if _pair(env, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "static AWS credentials"):
        return StoreSettings(config, client, "static keys (AWS_ACCESS_KEY_ID)")
    if _pair(env, "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "web identity (IRSA)"):
        region = _set(env, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        sts = env.get("AWS_ENDPOINT_URL_STS") or f"https://sts.{region}.amazonaws.com"
        return StoreSettings(
            config,
            client,
            f"web identity (AWS_ROLE_ARN={env['AWS_ROLE_ARN']}, STS at {redact(sts)})",
            markers=("POST", "token file", "AssumeRoleWithWebIdentity"),
            hint="check AWS_ROLE_ARN, the token in AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ENDPOINT_URL_STS",
            token_files=(("AWS_WEB_IDENTITY_TOKEN_FILE", env["AWS_WEB_IDENTITY_TOKEN_FILE"]),),
        )
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return StoreSettings(
            config,
            client,
            "the ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)",
            markers=("169.254.170.2",),
            hint="check the task's IAM role",
        )
    what = "EKS Pod Identity"
    if _pair(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", what):
        uri = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        return StoreSettings(
            config,
            client,
            f"{what} (AWS_CONTAINER_CREDENTIALS_FULL_URI={redact(uri)})",
            markers=(redact(uri), "token file", "credentials"),
            hint="check the Pod Identity association and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_files=(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]),),
        )
    imds = env.get("AWS_METADATA_ENDPOINT") or AWS_IMDS
    return StoreSettings(
        config,
        client,
        f"the instance metadata service at {redact(imds)} (no AWS credentials are configured)",
        markers=("/latest/api/token", "/latest/meta-data/"),
        hint=AWS_HINT,
    )


GOOGLE_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS (a service-account key file), GOOGLE_SERVICE_ACCOUNT_KEY or "
    "GOOGLE_BEARER_TOKEN, or run where the metadata server answers (GKE Workload Identity); for a public "
    "bucket set GOOGLE_SKIP_SIGNATURE=true"
)


def gcs_settings(env: Mapping[str, str]) -> StoreSettings:
    """GCS settings and the credential source, in object_store's order of precedence."""
    # STORAGE_EMULATOR_HOST is the variable Google's own client libraries read.
    base = _set(env, "GOOGLE_BASE_URL", "STORAGE_EMULATOR_HOST")
    config: dict[str, Any] = {"base_url": base.rstrip("/")} if base else {}
    client = _client(base, _set(env, "SSL_CERT_FILE"))
    if _truthy(env, "GOOGLE_SKIP_SIGNATURE"):
        return StoreSettings(config, client, "no credentials (GOOGLE_SKIP_SIGNATURE=true)")
    if env.get("GOOGLE_BEARER_TOKEN"):
        return StoreSettings(config, client, "a bearer token (GOOGLE_BEARER_TOKEN)")
    markers = ("token request", "token", "credentials")
    hint = "check the service account's key and its access to the bucket"
    for var in ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH", "SERVICE_ACCOUNT"):
        if env.get(var):
            return StoreSettings(
                config, client, f"the service-account key in {var}", markers, hint, token_files=((var, env[var]),)
            )
    if env.get("GOOGLE_SERVICE_ACCOUNT_KEY"):
        return StoreSettings(config, client, "the service-account key in GOOGLE_SERVICE_ACCOUNT_KEY", markers, hint)
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        path = env["GOOGLE_APPLICATION_CREDENTIALS"]
        return StoreSettings(
            config,
            client,
            f"application default credentials (GOOGLE_APPLICATION_CREDENTIALS={path})",
            markers,
            hint,
            token_files=(("GOOGLE_APPLICATION_CREDENTIALS", path),),
        )
    host = env.get("GCE_METADATA_HOST") or env.get("GCE_METADATA_ROOT") or "metadata.google.internal"
    return StoreSettings(
        config,
        client,
        f"the metadata server at {host} (no Google credentials are configured; "
        "~/.config/gcloud/application_default_credentials.json is read if present)",
        markers=markers,
        hint=GOOGLE_HINT,
    )


AZURE_HINT = (
    "set AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN, AZURE_CLIENT_ID + "
    "AZURE_TENANT_ID + AZURE_FEDERATED_TOKEN_FILE (AKS workload identity) or AZURE_CLIENT_ID + "
    "AZURE_TENANT_ID + AZURE_CLIENT_SECRET, or run where managed identity answers; for a public container "
    "set AZURE_SKIP_SIGNATURE=true"
)


def azure_settings(env: Mapping[str, str], account: str) -> StoreSettings:
    """Azure Blob settings and the credential source, in object_store's order of precedence."""
    emulator = _truthy(env, "AZURE_STORAGE_USE_EMULATOR")
    account = account or env.get("AZURE_STORAGE_ACCOUNT_NAME", "") or ("devstoreaccount1" if emulator else "")
    if not account:
        raise FetchError("AZURE_STORAGE_ACCOUNT_NAME is not set: an az://container/blob URI needs the account")
    endpoint = _set(env, "AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT")
    config: dict[str, Any] = {"account_name": account}
    if endpoint:
        config["endpoint"] = endpoint
    client = _client(endpoint, _set(env, "SSL_CERT_FILE"))
    if emulator:
        return StoreSettings(config, client, "the Azurite emulator's account (AZURE_STORAGE_USE_EMULATOR)")
    if _truthy(env, "AZURE_SKIP_SIGNATURE"):
        return StoreSettings(config, client, "no credentials (AZURE_SKIP_SIGNATURE=true)")
    if env.get("AZURE_STORAGE_TOKEN"):
        return StoreSettings(config, client, "a bearer token (AZURE_STORAGE_TOKEN)")
    key = next((n for n in ("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY") if env.get(n)), None)
    if key:
        return StoreSettings(config, client, f"the account key ({key})")
    markers = ("token request", "token file", "token")
    if env.get("AZURE_FEDERATED_TOKEN_FILE") or env.get("AZURE_CLIENT_SECRET"):
        what = "AKS workload identity" if env.get("AZURE_FEDERATED_TOKEN_FILE") else "a client secret"
        for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
            if not env.get(var):
                given = "AZURE_FEDERATED_TOKEN_FILE" if env.get("AZURE_FEDERATED_TOKEN_FILE") else "AZURE_CLIENT_SECRET"
                raise FetchError(f"{var} is not set but {given} is: {what} needs AZURE_CLIENT_ID and AZURE_TENANT_ID")
        if env.get("AZURE_FEDERATED_TOKEN_FILE"):
            return StoreSettings(
                config,
                client,
                f"{what} (AZURE_CLIENT_ID={env['AZURE_CLIENT_ID']})",
                markers,
                "check the federated identity credential of AZURE_CLIENT_ID and AZURE_AUTHORITY_HOST",
                token_files=(("AZURE_FEDERATED_TOKEN_FILE", env["AZURE_FEDERATED_TOKEN_FILE"]),),
            )
        return StoreSettings(
            config,
            client,
            f"{what} (AZURE_CLIENT_ID={env['AZURE_CLIENT_ID']})",
            markers,
            "check AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET",
        )
    sas = next((n for n in ("AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY") if env.get(n)), None)
    if sas:
        return StoreSettings(config, client, f"a SAS token ({sas})")
    msi = env.get("AZURE_MSI_ENDPOINT") or env.get("IDENTITY_ENDPOINT") or "http://169.254.169.254"
    return StoreSettings(
        config,
        client,
        f"managed identity at {redact(msi)} (no Azure credentials are configured)",
        markers=markers,
        hint=AZURE_HINT,
    )


# --- sources (I/O) --------------------------------------------------------------------------
class Source(Protocol):
    """Bytes of one artifact. ``open(offset)`` returns the offset it really starts at (the one
    asked for, or 0 when the source cannot resume) and the chunks from there; a chunk
    iterator raises StreamBroken if the bytes stop early, FetchError if retrying cannot help."""

    def open(self, offset: int) -> tuple[int, Iterator[bytes]]: ...


class FileSource:
    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, offset: int) -> tuple[int, Iterator[bytes]]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as e:
            raise FetchError(f"cannot open {self.path}: {e.strerror or e}") from e
        f.seek(offset)
        return offset, self._chunks(f)

    def _chunks(self, f: Any) -> Iterator[bytes]:
        with f:
            while chunk := f.read(CHUNK):
                yield chunk


class HttpSource:
    """http(s):// with the standard library; resumes with ``Range`` + ``If-Range``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.validator: str | None = None  # a strong ETag or Last-Modified of the first answer

    def open(self, offset: int) -> tuple[int, Iterator[bytes]]:
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        resp = self._urlopen(headers)
        start = 0
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                resp.close()
                raise StreamBroken(
                    f"asked for bytes from {offset}, got Content-Range {resp.headers.get('Content-Range')}"
                )
            start = offset
        if start == 0:
            etag = resp.headers.get("ETag", "")
            self.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        length = resp.headers.get("Content-Length")
        return start, self._chunks(resp, start, int(length) if length and length.isdigit() else None)

    def _urlopen(self, headers: dict[str, str]) -> Any:
        req = urllib.request.Request(self.url, headers=headers)
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            try:
                return urllib.request.urlopen(req, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as e:
                last = e
                if e.code < 500 and e.code != 429:  # retrying cannot help a 403 or a 404
                    break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = e
            if attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_S * 2**attempt)
        if isinstance(last, urllib.error.HTTPError):
            raise FetchError(f"GET {redact(self.url)} failed: HTTP {last.code} {last.reason}")
        reason = getattr(last, "reason", last)
        raise FetchError(f"GET {redact(self.url)} failed: {reason}")

    def _chunks(self, resp: Any, start: int, length: int | None) -> Iterator[bytes]:
        got = 0
        with resp:
            try:
                while chunk := resp.read(CHUNK):
                    got += len(chunk)
                    yield chunk
            except (OSError, http.client.HTTPException) as e:
                raise StreamBroken(f"{type(e).__name__}: {e}") from e
        # http.client reports a connection closed before Content-Length as a clean end.
        if length is not None and got < length:
            raise StreamBroken(f"connection closed after {start + got} of {start + length} bytes")


class StoreSource:
    """An object in S3, GCS or Azure Blob through obstore."""

    def __init__(self, loc: Location, settings: StoreSettings) -> None:
        self.loc = loc
        self.settings = settings
        self.store = self._build()

    def _build(self) -> Any:
        try:
            from obstore.store import AzureStore, GCSStore, S3Store
        except ImportError as e:  # pragma: no cover - the server image always has it
            raise FetchError(f"{self.loc.kind} URIs need the obstore package: {e}") from e
        for var, path in self.settings.token_files:
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise FetchError(f"{var}={path} cannot be read: {e.strerror or e}") from e
        client = dict(self.settings.client)
        ca = client.pop("root_certificate_file", None)
        if ca:
            try:
                client["root_certificate"] = Path(ca).read_text()
            except OSError as e:
                raise FetchError(f"CA bundle {ca} cannot be read: {e.strerror or e}") from e
        kind = {"s3": S3Store, "gs": GCSStore, "azure": AzureStore}[self.loc.kind]
        try:
            return kind(self.loc.bucket, config=self.settings.config, client_options=client, retry_config=STORE_RETRY)
        except Exception as e:  # a bad configuration value, e.g. a malformed key
            raise FetchError(f"cannot use {self.loc.uri}: {_reason(e)}") from e

    def open(self, offset: int) -> tuple[int, Iterator[bytes]]:
        import obstore

        options: Any = {"range": {"offset": offset}} if offset else {}  # obstore's GetOptions
        try:
            result = obstore.get(self.store, self.loc.path, options=options or None)
        except Exception as e:
            raise self._error(e) from e
        start = int(result.range[0]) if offset else 0
        return start, self._chunks(result.stream(min_chunk_size=CHUNK))

    def _chunks(self, stream: Any) -> Iterator[bytes]:
        try:
            yield from stream
        except Exception as e:
            raise StreamBroken(_reason(e)) from e

    def _error(self, e: Exception) -> FetchError:
        return store_error(e, "GET", self.loc.uri, self.settings)


def store_error(e: Exception, verb: str, uri: str, s: StoreSettings) -> FetchError:
    """One line for an obstore error on ``verb uri`` (GET here, PUT in ``modelroll push``)."""
    name = type(e).__name__
    text = str(e)
    if name in ("NotFoundError", "FileNotFoundError"):
        return FetchError(f"{verb} {uri} failed: {_reason(e)}")
    if name in ("PermissionDeniedError", "UnauthenticatedError"):
        return FetchError(f"{verb} {uri} failed: {_reason(e)} (credentials: {s.source})")
    if s.markers and any(m in text for m in s.markers):
        return FetchError(f"cannot get credentials for {uri} from {s.source}: {_reason(e)}; {s.hint}")
    return FetchError(f"{verb} {uri} failed: {_reason(e)}")


def _reason(e: Exception) -> str:
    """One line from an obstore error: the status and the store's own code and message, or the
    innermost cause (connection refused, a DNS error), without the XML body or debug dump."""
    text = str(e)
    head = text.split("\n\nDebug source:")[0]
    status = re.search(r"non-2xx status code: (\d{3}) ([A-Za-z ]+)", head)
    code = re.search(r"<Code>([^<]+)</Code>", head)
    message = re.search(r"<Message>([^<\n]+)", head)
    if status:
        out = f"HTTP {status.group(1)} {status.group(2).strip()}"
        if code:
            out += f" {code.group(1)}"
        if message:
            out += f": {message.group(1).strip()}"
        return out
    # A transport error: object_store's summary, plus the innermost cause from the debug dump.
    summary = re.sub(r"^Generic \w+ error: ", "", head.strip())
    summary = re.sub(r" in [\d.]+m?s(?=[, -])", "", summary)
    summary = re.sub(r"\s+", " ", summary)
    causes = re.findall(r'(?:error|message): "([^"]+)"', text)
    connect = re.findall(r'ConnectError\(\s*"([^"]+)"', text)
    cause = ": ".join(c for c in (connect[-1] if connect else "", causes[-1] if causes else "") if c)
    if cause and cause.lower() not in summary.lower():
        summary += f" ({cause})"
    return summary[:600]


def open_source(uri: str, env: Mapping[str, str] | None = None) -> Source:
    """The Source for a URI, with settings read from ``env`` (default: the process environment,
    which obstore also reads for the keys it knows)."""
    env = os.environ if env is None else env
    loc = parse_uri(uri)
    if loc.kind == "file":
        return FileSource(loc.path)
    if loc.kind == "http":
        return HttpSource(uri)
    if loc.kind == "s3":
        return StoreSource(loc, s3_settings(env))
    if loc.kind == "gs":
        return StoreSource(loc, gcs_settings(env))
    return StoreSource(loc, azure_settings(env, loc.account))


# --- the copy -------------------------------------------------------------------------------
def _copy(source: Source, out: Any, shown: str) -> str:
    """Stream the source into ``out`` while hashing; resume a broken stream. The sha256 hex."""
    h = hashlib.sha256()
    written = 0
    last: StreamBroken | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            log.warning(
                "reading %s broke after %d bytes (%s); resuming (attempt %d of %d)",
                shown,
                written,
                last,
                attempt + 1,
                ATTEMPTS,
            )
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            start, chunks = source.open(written)
            if start != written:  # the source could not resume: start over
                out.seek(0)
                out.truncate()
                h, written = hashlib.sha256(), 0
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
                written += len(chunk)
            return h.hexdigest()
        except StreamBroken as e:
            last = e
    raise FetchError(f"reading {shown} failed {ATTEMPTS} times, last after {written} bytes: {last}")


def fetch(uri: str, dest: str, digest: str | None) -> str:
    """Copy uri to dest atomically; return the sha256 hex; raise FetchError on any failure."""
    try:
        expected = parse_digest(digest)
    except ValueError as e:
        raise FetchError(str(e)) from e
    shown = redact(uri)
    source = open_source(uri)
    target = Path(dest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create {target.parent}: {e.strerror or e}") from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise FetchError(f"cannot write in {target.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _copy(source, out, shown)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and actual != expected:
            raise FetchError(
                f"digest mismatch for {shown}: expected sha256:{expected}, got sha256:{actual}", integrity=True
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return actual
