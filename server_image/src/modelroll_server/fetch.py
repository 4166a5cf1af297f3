"""The storage initializer: copy a model artifact to a local path, verified (network I/O).

Runs as the Pod's init container. Sources: ``file://`` and plain paths (a mounted volume),
``http(s)://`` and ``s3://`` (any S3-compatible store; credentials and endpoint from the
standard AWS variables a Secret provides). The bytes stream into a temporary file beside the
destination while being hashed, and the file is renamed into place only if the digest
matches, so the server never sees a partial or unverified artifact. Standard library only:
the image stays small.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .loading import parse_digest

CHUNK = 1024 * 1024
ATTEMPTS = 3
TIMEOUT_S = 60.0


class FetchError(Exception):
    """One line the operator shows as the reason the model could not be fetched."""


# --- sources --------------------------------------------------------------------------------
def _open_file(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise FetchError(f"cannot open {path}: {e.strerror or e}") from e


def _open_http(url: str, headers: dict[str, str] | None = None) -> BinaryIO:
    req = urllib.request.Request(url, headers=headers or {})
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            last = e
            if e.code < 500:  # retrying cannot help a 403 or a 404
                break
        except (urllib.error.URLError, OSError) as e:
            last = e
        if attempt + 1 < ATTEMPTS:
            time.sleep(0.5 * 2**attempt)
    if isinstance(last, urllib.error.HTTPError):
        raise FetchError(f"GET {_redact(url)} failed: HTTP {last.code} {last.reason}")
    reason = getattr(last, "reason", last)
    raise FetchError(f"GET {_redact(url)} failed: {reason}")


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def s3_request(
    bucket: str, key: str, environ: dict[str, str], now: datetime.datetime | None = None
) -> tuple[str, dict[str, str]]:
    """URL and headers for a SigV4-signed GET of s3://bucket/key (pure given ``now``)."""
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    path_key = "/" + urllib.parse.quote(key, safe="/~")
    if endpoint:  # S3-compatible stores (MinIO, Ceph, ...) want path-style addressing
        ep = urllib.parse.urlsplit(endpoint.rstrip("/"))
        host = ep.netloc
        path = ep.path + "/" + urllib.parse.quote(bucket, safe="") + path_key
        url = f"{ep.scheme}://{host}{path}"
    else:
        host = f"{bucket}.s3.{region}.amazonaws.com"
        path = path_key
        url = f"https://{host}{path}"
    access = environ.get("AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return url, {}  # a public bucket
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload_hash = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    token = environ.get("AWS_SESSION_TOKEN")
    if token:
        headers["x-amz-security-token"] = token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["GET", path, "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash]  # fmt: skip
    )
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # urllib sets it from the URL
    return url, headers


def open_source(uri: str, environ: dict[str, str] | None = None) -> BinaryIO:
    env = dict(os.environ) if environ is None else environ
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _open_http(uri)
    if scheme == "s3":
        if not parts.netloc or not parts.path.strip("/"):
            raise FetchError(f"s3 URI must look like s3://bucket/key, got {uri!r}")
        url, headers = s3_request(parts.netloc, parts.path.lstrip("/"), env)
        return _open_http(url, headers)
    if scheme == "file":
        return _open_file(urllib.parse.unquote(parts.path))
    if scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return _open_file(uri)
    raise FetchError(f"unsupported URI scheme {scheme!r} in {uri!r} (file, http, https, s3)")


# --- the copy -------------------------------------------------------------------------------
def _chunks(src: BinaryIO) -> Iterator[bytes]:
    while True:
        b = src.read(CHUNK)
        if not b:
            return
        yield b


def fetch(uri: str, dest: str, digest: str | None, environ: dict[str, str] | None = None) -> str:
    """Copy uri to dest atomically; return the sha256 hex; raise FetchError on any failure."""
    try:
        expected = parse_digest(digest)
    except ValueError as e:
        raise FetchError(str(e)) from e
    target = Path(dest)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create {target.parent}: {e.strerror or e}") from e
    h = hashlib.sha256()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise FetchError(f"cannot write in {target.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as out:
            with open_source(uri, environ) as src:
                try:
                    for chunk in _chunks(src):
                        h.update(chunk)
                        out.write(chunk)
                except OSError as e:
                    raise FetchError(f"reading {_redact(uri)} failed: {e}") from e
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise FetchError(f"digest mismatch for {_redact(uri)}: expected sha256:{expected}, got sha256:{actual}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return actual
