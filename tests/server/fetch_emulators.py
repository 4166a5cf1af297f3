"""Object-store emulators and small loopback servers for the fetch tests (I/O: processes, sockets).

- ``Moto``: moto's server (S3, STS, IAM) as a subprocess, with a user, a role and buckets, then
  IAM authentication switched on, so a request signed with a wrong key or without the session
  token of an assumed role is refused exactly as AWS would.
- ``FakeGcs``: fake-gcs-server (built by scripts/install-store-emulators.sh), seeded from a
  directory; ``Azurite``: Microsoft's Azure Storage emulator (same script), which checks
  SharedKey signatures.
- ``LoopbackServer``: an HTTP(S) server on 127.0.0.1 run by a route function, for the credential
  endpoints a cloud provides (instance metadata, the EKS Pod Identity agent, the GCE metadata
  server, an STS front) and for fronts that check a bearer token or cut a body mid-way.

Every process listens on 127.0.0.1 only and is stopped by its pid.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelroll_contract import EXIT_FETCH_FAILED, REASON_BY_EXIT_CODE, termination_detail

from tests.helpers import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-store-emulators.sh"
REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"  # moto's default account
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEAD = "127.0.0.1:9"  # nothing listens on the discard port: a credential endpoint that refuses


def emulator_dir() -> Path:
    """The cache dir of fake-gcs-server and Azurite; installs them if missing (seconds when cached)."""
    r = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1500)
    if r.returncode != 0:
        raise AssertionError(f"{INSTALL_SCRIPT.name} failed:\n{r.stderr[-4000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def wait_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60, host: str = "127.0.0.1"
) -> float:
    """Seconds until something accepts on host:port; fail with the log if the process exits."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what} did not listen on {host}:{port} within {timeout}s:\n{log.read_text()[-3000:]}")


class Emulator:
    """A subprocess listening on host:port (loopback unless a test's Pods must reach it);
    ``startup_s`` is how long it took to listen."""

    name = "emulator"

    def __init__(
        self, cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.port, self.host = port, host
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            self.startup_s = wait_port(port, self.proc, self.name, log, host=host)
        except BaseException:
            self.stop()
            raise
        print(f"{self.name} listening on {host}:{port} after {self.startup_s:.2f} s (pid {self.proc.pid})")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


# --- S3 -------------------------------------------------------------------------------------
class Moto(Emulator):
    """moto's server with IAM user ``reader`` (key in ``key_id``/``secret``), role
    ``model-reader`` (``role_arn``), both allowed s3:GetObject, and ``objects`` put in place."""

    name = "moto server"

    def __init__(
        self, tmp: Path, objects: dict[tuple[str, str], bytes], auth: bool = True, host: str = "127.0.0.1"
    ) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
        super().__init__(cmd, port, tmp / f"moto-{port}.log", host=host)
        import boto3

        kw = {
            "endpoint_url": self.url,
            "region_name": REGION,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        self.boto = lambda service: boto3.client(service, **kw)
        iam, s3 = self.boto("iam"), self.boto("s3")
        read = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
        arn = iam.create_policy(PolicyName="read-models", PolicyDocument=json.dumps(read))["Policy"]["Arn"]
        assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]}
        sts_arn = iam.create_policy(PolicyName="assume", PolicyDocument=json.dumps(assume))["Policy"]["Arn"]
        iam.create_user(UserName="reader")
        iam.attach_user_policy(UserName="reader", PolicyArn=arn)
        iam.attach_user_policy(UserName="reader", PolicyArn=sts_arn)
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Federated": "*"}, "Action": "sts:AssumeRoleWithWebIdentity"},
            ],
        }
        self.role_arn = iam.create_role(RoleName="model-reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        iam.attach_role_policy(RoleName="model-reader", PolicyArn=arn)
        for bucket in sorted({b for b, _ in objects}):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        for (bucket, k), body in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=body)
        if auth:  # from here on every S3 request is authenticated and authorized
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("POST", "/moto-api/reset-auth", body=b"0")
            assert conn.getresponse().status == 200
            conn.close()

    def assume_role(self, session: str) -> dict[str, Any]:
        """Temporary credentials of the role, issued by moto's STS (as a credential agent would)."""
        import boto3

        sts = boto3.client(
            "sts",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )
        creds: dict[str, Any] = sts.assume_role(RoleArn=self.role_arn, RoleSessionName=session)["Credentials"]
        return creds

    def sts_call(self, params: dict[str, str]) -> Response:
        """POST an STS query to moto, signed as ``reader``: moto authenticates every STS action
        once IAM authentication is on, even AssumeRoleWithWebIdentity, which AWS serves unsigned."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = urllib.parse.urlencode(params)
        req = AWSRequest(
            "POST",
            f"{self.url}/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        SigV4Auth(Credentials(self.key_id, self.secret), "sts", REGION).add_auth(req)
        headers = {k.lower(): str(v) for k, v in req.headers.items()}
        return forward(self.url, Request("POST", "/", headers, body.encode()))


def aws_credentials_json(creds: dict[str, Any]) -> bytes:
    """The JSON an instance metadata service or the Pod Identity agent answers with."""
    expiration = creds["Expiration"]
    return json.dumps(
        {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": creds["AccessKeyId"],
            "SecretAccessKey": creds["SecretAccessKey"],
            "Token": creds["SessionToken"],
            "Expiration": expiration.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ).encode()


# --- Google Cloud Storage -------------------------------------------------------------------
class FakeGcs(Emulator):
    """fake-gcs-server serving ``objects`` ({(bucket, name): bytes}) from a seeded directory."""

    name = "fake-gcs-server"

    def __init__(self, tmp: Path, bin_dir: Path, objects: dict[tuple[str, str], bytes]) -> None:
        data = tmp / "gcs-data"
        for (bucket, name), body in objects.items():
            p = data / bucket / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(body)
        port = free_port()
        cmd = [
            str(bin_dir / "fake-gcs-server"),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-public-host",
            f"127.0.0.1:{port}",
            "-backend",
            "memory",
            "-data",
            str(data),
            "-log-level",
            "warn",
        ]
        super().__init__(cmd, port, tmp / f"fake-gcs-{port}.log")


def service_account_key(email_: str = "fetcher@modelroll-test.iam.gserviceaccount.com") -> tuple[dict[str, str], Any]:
    """A Google service-account key file's content, and the public key that checks its JWTs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "modelroll-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email_,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info, key.public_key()


def verify_jwt(token: str, public_key: Any) -> dict[str, Any]:
    """The claims of an RS256 JWT signed by ``public_key``; raises if the signature is wrong."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    header, claims, sig = token.split(".")
    assert json.loads(b64(header))["alg"] == "RS256"
    public_key.verify(b64(sig), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    result: dict[str, Any] = json.loads(b64(claims))
    return result


# --- Azure Blob -----------------------------------------------------------------------------
class Azurite(Emulator):
    """Azurite's blob service; with ``tls=(ca, cert, key)`` over HTTPS and accepting OAuth bearer
    tokens too (Azurite's "basic" check: issuer, audience and lifetime, not the signature)."""

    name = "azurite"

    def __init__(self, tmp: Path, bin_dir: Path, tls: tuple[Path, Path, Path] | None = None) -> None:
        port = free_port()
        self.tls = tls
        # Telemetry off: the tests send nothing beyond loopback. The API version check is off
        # because obstore may speak a newer version than this Azurite knows.
        cmd = [
            str(bin_dir / "azurite" / "node_modules" / ".bin" / "azurite-blob"),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        if tls:
            cmd += ["--cert", str(tls[1]), "--key", str(tls[2]), "--oauth", "basic"]
        super().__init__(cmd, port, tmp / f"azurite-{port}.log")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/{AZURITE_ACCOUNT}"

    def _connection(self) -> http.client.HTTPConnection:
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.tls[0]))
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def create_container(self, name: str) -> None:
        """PUT a container, signed with the account's SharedKey (obstore cannot create one)."""
        path = f"/{AZURITE_ACCOUNT}/{name}"
        date = email.utils.formatdate(usegmt=True)
        headers = {"x-ms-date": date, "x-ms-version": "2021-08-06", "Content-Length": "0"}
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
        to_sign = "PUT\n" + "\n" * 11 + canonical_headers + f"/{AZURITE_ACCOUNT}{path}\nrestype:container"
        sig = base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest())
        headers["Authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{sig.decode()}"
        conn = self._connection()
        conn.request("PUT", f"{path}?restype=container", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 201, (resp.status, body)

    def put(self, container: str, blob: str, data: bytes) -> None:
        import obstore
        from obstore.store import AzureStore

        config = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY, "endpoint": self.endpoint}
        client: dict[str, Any] = {"root_certificate": self.tls[0].read_text()} if self.tls else {"allow_http": True}
        store = AzureStore(container, config=config, client_options=client)
        obstore.put(store, blob, data)


def entra_access_token(tenant: str, lifetime_s: int = 3600) -> str:
    """An access token as Microsoft Entra ID issues it for Storage (claims only: the signature is
    a placeholder, which Azurite's basic OAuth check does not verify)."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime_s,
        "sub": "modelroll-fetch",
    }
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"


# --- loopback HTTP(S) servers run by a route function ---------------------------------------
@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cut_at: int | None = None  # send only this many body bytes, then drop the connection


Route = Callable[[Request], Response]


def forward(upstream: str, req: Request, keep_host: bool = True) -> Response:
    """The upstream's answer to ``req``, sent with the same Host header (SigV4 signs it) unless
    ``keep_host`` is False (fake-gcs-server routes by its own host)."""
    u = urllib.parse.urlsplit(upstream)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {k: v for k, v in req.headers.items() if k not in ("connection", "keep-alive")}
    if not keep_host:
        headers["host"] = u.netloc
    conn.request(req.method, req.path, body=req.body or None, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    out = {k: v for k, v in resp.getheaders() if k.lower() not in ("connection", "transfer-encoding", "keep-alive")}
    conn.close()
    return Response(resp.status, out, body)


class LoopbackServer:
    """A threading HTTP server on 127.0.0.1 (HTTPS with ``tls=(cert, key)``) that answers every
    request with ``route(request)`` and records the requests in ``requests``."""

    def __init__(self, route: Route, tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[Request] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(n) if n else b"",
                )
                outer.requests.append(req)
                resp = route(req)
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if req.method == "HEAD":
                    return
                if resp.cut_at is None:
                    self.wfile.write(resp.body)
                    return
                self.wfile.write(resp.body[: resp.cut_at])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cut_first(upstream: str, times: int, min_body: int = 1024, keep_host: bool = True) -> Route:
    """A front that forwards to ``upstream`` but cuts the first ``times`` large GET bodies in half
    (a connection that drops mid-download); ``times=-1`` cuts every one."""
    left = [times]

    def route(req: Request) -> Response:
        resp = forward(upstream, req, keep_host)
        if req.method == "GET" and len(resp.body) >= min_body and left[0] != 0:
            left[0] -= 1
            resp.cut_at = len(resp.body) // 2
        return resp

    return route


# --- a CA of the test's own, for HTTPS on 127.0.0.1 -----------------------------------------
def make_ca(d: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): a throwaway CA and a certificate for 127.0.0.1 it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: x509.Name, public: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("modelroll test CA", name("modelroll test CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        builder("127.0.0.1", ca.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = d / "ca.pem", d / "cert.pem", d / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


# --- running the init container's command ---------------------------------------------------
CLOUD_PREFIXES = (
    "AWS_",
    "GOOGLE_",
    "GCE_",
    "AZURE_",
    "AZURITE_",
    "MSI_",
    "IDENTITY_",
    "STORAGE_EMULATOR_HOST",
    "SSL_CERT_",
    "SERVICE_ACCOUNT",
    "MODELROLL_SERVER_",
)


def fetch_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The machine's environment without any cloud settings, every default credential endpoint
    pointed at a refusing loopback port (no test ever reaches a real metadata service), a HOME
    without gcloud files, then ``extra``."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(CLOUD_PREFIXES)}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        AWS_METADATA_ENDPOINT=f"http://{DEAD}",
        GCE_METADATA_HOST=DEAD,
        GCE_METADATA_IP=DEAD,
        AZURE_MSI_ENDPOINT=f"http://{DEAD}/msi/token",
    )
    env.update(extra or {})
    return env


@dataclass
class Fetched:
    returncode: int
    reason: str  # the termination log's detail: the one line the operator shows
    stderr: str
    seconds: float


def run_fetch(tmp: Path, uri: str, dest: Path, digest: str | None, env: dict[str, str]) -> Fetched:
    """``modelroll-server fetch`` as the init container runs it."""
    tl = tmp / f"termination-{time.monotonic_ns()}.log"
    args = [sys.executable, "-m", "modelroll_server.cli", "fetch", uri, str(dest), "--termination-log", str(tl)]
    if digest:
        args += ["--digest", digest]
    start = time.monotonic()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    reason = tl.read_text() if tl.exists() else ""
    if r.returncode:  # the exit code names the reason, and so does the message's first word
        assert reason.startswith(REASON_BY_EXIT_CODE[r.returncode] + ": "), (r.returncode, reason)
        reason = termination_detail(reason)
    return Fetched(r.returncode, reason, r.stderr, time.monotonic() - start)


def assert_fetched(r: Fetched, dest: Path, payload: bytes) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left


def assert_failed(r: Fetched, dest: Path) -> str:
    """A store failure: its exit code, one line of reason, and nothing written."""
    assert r.returncode == EXIT_FETCH_FAILED, r.stderr[-3000:]
    assert r.reason.count("\n") <= 1 and r.reason.strip(), r.reason
    assert not dest.exists() and (not dest.parent.exists() or list(dest.parent.iterdir()) == [])
    return str(r.reason)
