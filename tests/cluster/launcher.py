"""Local Kubernetes cluster for the tests and the demo: start, stop, report.

Runs real Kubernetes binaries built from their Go modules by ``build-tools.sh``: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler; one real node (containerd, kubelet,
kube-proxy on a contained Pod bridge, see ``node.py``) where Pods really run, with the images
``scripts/build-images.sh`` built; and kwok with a few fake nodes for scale and fault tests.
The kwok nodes carry the taint ``KWOK_TAINT``, so only Pods that tolerate it land there (labels
from ``kwok-stages.yaml`` make chosen fake Pods unready or crash-looping). The API server
listens on the Pod bridge's gateway address (Pods reach it through the ``kubernetes``
Service), everything else on free loopback ports; all state lives in one directory. The
processes are recorded by pid (with their start time, so a recycled pid is never signalled)
and ``down`` stops exactly those, undoes the real node's changes to the host and removes the
directory. ``<state dir>/host-ip`` holds the address Pods reach this host at.

    python tests/cluster/launcher.py up [--state-dir DIR]      # default DIR: <repo>/.devcluster
    python tests/cluster/launcher.py status [--state-dir DIR]
    python tests/cluster/launcher.py down [--state-dir DIR]

The pytest fixtures import this module and call ``up``/``down``/``is_healthy`` directly.
This module does I/O: files, subprocesses, HTTPS to the API server. Standard library only,
plus the ``openssl``, ``kubectl`` and (for the real node) ``ip``, ``iptables``, ``ctr`` commands.
It needs root for the real node.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import node

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.helpers import KWOK_NODE_SELECTOR, KWOK_TAINT  # noqa: E402 - the one owner of the kwok placement

DEFAULT_STATE_DIR = REPO / ".devcluster"
BUILD_SCRIPT = HERE / "build-tools.sh"
KWOK_STAGES = HERE / "kwok-stages.yaml"
IMAGES_SCRIPT = REPO / "scripts" / "build-images.sh"

KWOK_NODE_COUNT = 3
NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = "10.96.0.1"
# kwok hands out fake Pod IPs from this range and gives its nodes this IP; both are routed to
# the real node's sink, so a Service translated to a fake Pod goes nowhere.
KWOK_POD_CIDR = "10.244.0.1/16"
KWOK_NODE_IP = "10.243.0.1"
SINK_RANGES = (SERVICE_CIDR, str(ipaddress.ip_network(KWOK_POD_CIDR, strict=False)), f"{KWOK_NODE_IP}/32")
# Order matters: started in this order, stopped in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "containerd",
    "kubelet",
    "kube-proxy",
)
READY_TIMEOUT = 120.0
MARKER = ".modelroll-devcluster"


class ClusterError(RuntimeError):
    """A step of starting or stopping the control plane failed; the message names the step."""


@dataclass(frozen=True)
class ClusterInfo:
    state_dir: Path
    kubeconfig: Path
    server: str


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


# --- binaries ------------------------------------------------------------------------------


def bin_dir() -> Path:
    """The versioned cache directory build-tools.sh builds into (computed by the script)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def require_binaries() -> Path:
    bdir = bin_dir()
    if shutil.which("kubectl") is None:
        raise ClusterError("step 'find binaries': kubectl is not on PATH")
    built = [c for c in COMPONENTS if c != "containerd"]  # containerd is Debian's
    missing = [c for c in (*built, "helm", "crictl") if not os.access(bdir / c, os.X_OK)]
    if missing:
        raise ClusterError(
            f"step 'find binaries': {', '.join(missing)} missing in {bdir}; "
            "run `make cluster-tools` (tests/cluster/build-tools.sh) first"
        )
    try:
        node.preflight()
    except node.NodeError as e:
        raise ClusterError(str(e)) from None
    return bdir


def image_archives() -> dict[str, Path]:
    """The image archives scripts/build-images.sh builds (it prints `NAME PATH` lines)."""
    proc = subprocess.run(["bash", str(IMAGES_SCRIPT), "--print-archives"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"step 'find images': {IMAGES_SCRIPT} --print-archives failed: {proc.stderr.strip()}")
    archives = dict(line.split(maxsplit=1) for line in proc.stdout.splitlines() if line.strip())
    missing = [name for name in node.IMAGES if not Path(archives.get(name, "/nonexistent")).is_file()]
    if missing:
        raise ClusterError(f"step 'find images': {', '.join(missing)} not built; run `make images`")
    return {name: Path(path) for name, path in archives.items()}


# --- certificates --------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise ClusterError("step 'generate certificates': the openssl command is not installed")
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"step 'generate certificates': openssl {args[0]} failed: {proc.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _signed_cert(pki: Path, name: str, subject: str, extensions: list[str]) -> None:
    _ec_key(pki / f"{name}.key")
    ext_args: list[str] = []
    for ext in extensions:
        ext_args += ["-addext", ext]
    _openssl(
        "req", "-new", "-x509", "-days", "3650", "-subj", subject,
        "-key", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt"),
        "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-addext", "basicConstraints=critical,CA:FALSE",
        *ext_args,
    )  # fmt: skip


def generate_pki(pki: Path) -> None:
    """CA, API server and kubelet serving certs, client certs per component, service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    _ec_key(pki / "ca.key")
    _openssl(
        "req", "-new", "-x509", "-days", "3650", "-subj", "/CN=modelroll-devcluster-ca",
        "-key", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    san = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{node.GATEWAY}",
            f"IP:{FIRST_SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _signed_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        [
            f"subjectAltName={san}",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
        ],
    )
    client_ext = [
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
    ]
    # The RBAC bootstrap policy binds these user names; admin gets everything via its group.
    _signed_cert(pki, "admin", "/O=system:masters/CN=modelroll-admin", client_ext)
    _signed_cert(pki, "controller-manager", "/CN=system:kube-controller-manager", client_ext)
    _signed_cert(pki, "scheduler", "/CN=system:kube-scheduler", client_ext)
    # The API server's identity towards aggregated API servers (front proxy).
    _signed_cert(pki, "front-proxy-client", "/CN=front-proxy-client", client_ext)
    # The real node: the Node authorizer and the bootstrap RBAC know these names.
    _signed_cert(pki, "node", f"/O=system:nodes/CN=system:node:{node.NODE_NAME}", client_ext)
    _signed_cert(pki, "kube-proxy", "/CN=system:kube-proxy", client_ext)
    # The API server towards the kubelet (logs, exec, port-forward); the kubelet trusts our CA.
    _signed_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client_ext)
    _signed_cert(
        pki,
        "kubelet-serving",
        f"/CN={node.NODE_NAME}",
        [
            f"subjectAltName=IP:{node.GATEWAY},DNS:{node.NODE_NAME}",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
        ],
    )
    _ec_key(pki / "sa.key")
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """A self-contained kubeconfig (certificates inline), so it can be copied anywhere."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modelroll-dev",
                "cluster": {"server": server, "certificate-authority-data": _b64(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki / f"{user}.crt"),
                    "client-key-data": _b64(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "modelroll-dev", "context": {"cluster": "modelroll-dev", "user": user}}],
        "current-context": "modelroll-dev",
    }
    # JSON is valid YAML; kubectl and client libraries read it as a kubeconfig.
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of a pid (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; it is wrapped in parentheses.
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(entry: dict[str, object]) -> bool:
    pid = int(str(entry["pid"]))
    start = _proc_start_time(pid)
    if start is None or start != entry["start_time"]:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    return True


def _pids_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def _read_pids(state_dir: Path) -> dict[str, dict[str, object]]:
    try:
        data: dict[str, dict[str, object]] = json.loads(_pids_file(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data


def _record_pid(state_dir: Path, name: str, proc: subprocess.Popen[bytes]) -> None:
    pids = _read_pids(state_dir)
    pids[name] = {
        "pid": proc.pid,
        "start_time": _proc_start_time(proc.pid),
        "cmd": proc.args[0] if isinstance(proc.args, list) else str(proc.args),
    }
    tmp = _pids_file(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(pids, indent=2))
    tmp.replace(_pids_file(state_dir))


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started us dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_component(
    state_dir: Path, name: str, argv: list[str], die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        # A session of its own: the cluster outlives `make cluster` and ignores its Ctrl-C.
        # A test session's own cluster dies with it instead, even if pytest is killed.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    _record_pid(state_dir, name, proc)
    return proc


def _log_tail(state_dir: Path, name: str, lines: int = 25) -> str:
    try:
        text = (state_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- health --------------------------------------------------------------------------------


def _ssl_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _api_json(server: str, ctx: ssl.SSLContext, path: str) -> dict[str, Any] | None:
    code, body = _get(server + path, ctx)
    if code != 200:
        return None
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        return None
    return data


def _nodes_ready(server: str, ctx: ssl.SSLContext) -> set[str]:
    nodes = _api_json(server, ctx, "/api/v1/nodes")
    ready = set()
    for item in (nodes or {}).get("items", []):
        conds = item.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            ready.add(item["metadata"]["name"])
    return ready


def _api_endpoints(server: str, ctx: ssl.SSLContext) -> list[str]:
    """Addresses of the `kubernetes` Service's EndpointSlice (how Pods find the API server)."""
    slices = _api_json(server, ctx, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
    return [a for ep in (slices or {}).get("endpoints") or [] for a in ep.get("addresses", [])]


def _check(state_dir: Path) -> list[str]:
    """What is not healthy yet; empty when the cluster is fully usable."""
    problems = []
    pids = _read_pids(state_dir)
    for name in COMPONENTS:
        if name not in pids or not _alive(pids[name]):
            problems.append(f"{name} is not running")
    info_file = state_dir / "cluster.json"
    if not info_file.exists():
        return problems + ["no cluster.json"]
    server = json.loads(info_file.read_text())["server"]
    ctx = _ssl_context(state_dir / "pki")
    code, body = _get(server + "/readyz", ctx)
    if code != 200:
        return problems + [f"/readyz answered {code}: {body.decode(errors='replace')[-300:]}"]
    ready = _nodes_ready(server, ctx)
    if node.NODE_NAME not in ready:
        problems.append(f"real node {node.NODE_NAME} not Ready")
    if len(ready - {node.NODE_NAME}) < KWOK_NODE_COUNT:
        problems.append(f"{len(ready - {node.NODE_NAME})}/{KWOK_NODE_COUNT} kwok nodes Ready")
    if node.GATEWAY not in _api_endpoints(server, ctx):
        problems.append(f"Service default/kubernetes has no endpoint {node.GATEWAY} yet")
    if not node.proxy_ready():
        problems.append("kube-proxy has not programmed the Service rules yet")
    if _api_json(server, ctx, "/api/v1/namespaces/default/serviceaccounts/default") is None:
        problems.append("ServiceAccount default/default does not exist yet")
    return problems


def is_healthy(state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    return (state_dir / "kubeconfig").exists() and not _check(state_dir)


def _wait(state_dir: Path, step: str, done: object, timeout: float) -> None:
    """Poll `done()` (returns a falsy value or a problem string while not done)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        pids = _read_pids(state_dir)
        for name, entry in pids.items():
            if not _alive(entry):
                raise ClusterError(
                    f"step '{step}': {name} exited; last lines of "
                    f"{state_dir / 'logs' / (name + '.log')}:\n{_log_tail(state_dir, name)}"
                )
        last = done()  # type: ignore[operator]
        if last is True:
            return
        time.sleep(0.2)
    raise ClusterError(f"step '{step}': not done after {timeout:.0f} s ({last})")


# --- up / down / status --------------------------------------------------------------------


def up(
    state_dir: Path = DEFAULT_STATE_DIR,
    timeout: float = READY_TIMEOUT,
    die_with_parent: bool = False,
) -> ClusterInfo:
    """Start the control plane in `state_dir` and wait until it is usable. Idempotent.

    With `die_with_parent`, every component gets SIGTERM when the calling process exits (the
    pytest fixtures use it so a killed test run leaves no cluster behind)."""
    state_dir = state_dir.resolve()
    if state_dir.exists() and _read_pids(state_dir):
        if is_healthy(state_dir):
            try:
                fresh = node.import_images(state_dir, image_archives())
            except node.NodeError as e:
                raise ClusterError(str(e)) from None
            log(f"already up and healthy ({state_dir}){'; imported the rebuilt ' + ', '.join(fresh) if fresh else ''}")
            return _info(state_dir)
        log(f"found an unhealthy or partial cluster in {state_dir}; stopping it first")
        down(state_dir)
    elif state_dir.exists() and any(state_dir.iterdir()):
        down(state_dir)  # leftovers of a failed start: stale etcd data would not match new keys

    bdir = require_binaries()
    archives = image_archives()
    t0 = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text("state of tests/cluster/launcher.py; removed by `down`\n")
    for attempt in (1, 2):
        try:
            _up(state_dir, bdir, archives, timeout, die_with_parent)
            break
        except ClusterError as e:
            _stop_all(state_dir)
            # Free ports are picked before the components bind them; another process may
            # take one in between. Start over once with new ports.
            if attempt == 2 or "address already in use" not in str(e):
                raise
            log("a port was taken meanwhile; starting over with new ports")
            _clear_state(state_dir)
        except BaseException:
            _stop_all(state_dir)
            raise
    log(f"healthy after {time.monotonic() - t0:.1f} s")
    return _info(state_dir)


def _up(state_dir: Path, bdir: Path, archives: dict[str, Path], timeout: float, die_with_parent: bool) -> None:
    def _start(name: str, argv: list[str]) -> None:
        _start_component(state_dir, name, argv, die_with_parent)

    kubeconfig = state_dir / "kubeconfig"
    pki = state_dir / "pki"
    log(f"step 'generate certificates' in {pki}")
    generate_pki(pki)

    log(f"step 'create the Pod network' ({node.BRIDGE} {node.POD_CIDR}, sink {node.SINK})")
    try:
        node.claim_host(state_dir, alive=lambda other: not _dead(other))
        node.create_network(state_dir, SINK_RANGES)
    except node.NodeError as e:
        raise ClusterError(str(e)) from None
    (state_dir / "host-ip").write_text(node.GATEWAY + "\n")

    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    # The API server listens on the bridge gateway: the host reaches it there, and so do Pods
    # through the `kubernetes` Service, which the endpoint reconciler points at this address.
    server = f"https://{node.GATEWAY}:{api_port}"
    (state_dir / "cluster.json").write_text(json.dumps({"server": server, "bin_dir": str(bdir)}))
    for user in ("admin", "controller-manager", "scheduler", "node", "kube-proxy"):
        write_kubeconfig(state_dir / f"{user}.kubeconfig", server, pki, user)
    shutil.copy(state_dir / "admin.kubeconfig", kubeconfig)

    log(f"step 'start etcd' on 127.0.0.1:{etcd_port}")
    _start(
        "etcd",
        [
            str(bdir / "etcd"),
            "--name=devcluster",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=devcluster=http://127.0.0.1:{etcd_peer}",
            # Throwaway data: skipping fsync makes every API write much faster.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    _wait(
        state_dir,
        "start etcd",
        lambda: _get(f"http://127.0.0.1:{etcd_port}/health")[0] == 200 or "no /health",
        30,
    )

    log(f"step 'start kube-apiserver' on {server}")
    _start(
        "kube-apiserver",
        [
            str(bdir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={node.GATEWAY}",
            f"--advertise-address={node.GATEWAY}",
            f"--secure-port={api_port}",
            f"--cert-dir={state_dir / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Front-proxy (aggregation layer) settings, so aggregated APIs would work and
            # controllers do not log a missing requestheader CA.
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--allow-privileged=true",
            # logs, exec and port-forward: reach the kubelet by the Node's InternalIP (no DNS
            # here), as a client the kubelet's CA check admits.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--profiling=false",
            "--v=1",
        ],
    )
    ctx = _ssl_context(pki)
    _wait(
        state_dir,
        "wait for kube-apiserver /readyz",
        lambda: _get(server + "/readyz", ctx)[0] == 200 or "/readyz not 200",
        60,
    )

    log("step 'start kube-controller-manager, kube-scheduler, kwok'")
    _start(
        "kube-controller-manager",
        [
            str(bdir / "kube-controller-manager"),
            f"--kubeconfig={state_dir / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={state_dir / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={state_dir / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={state_dir / 'controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Tests create and delete many objects in bursts; the default 20 qps throttles them.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    _start(
        "kube-scheduler",
        [
            str(bdir / "kube-scheduler"),
            f"--kubeconfig={state_dir / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={state_dir / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={state_dir / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={state_dir / 'scheduler'}",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    _start(
        "kwok",
        [
            str(bdir / "kwok"),
            f"--kubeconfig={state_dir / 'admin.kubeconfig'}",
            f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--cidr={KWOK_POD_CIDR}",
            f"--node-ip={KWOK_NODE_IP}",
        ],
    )
    log(f"step 'create {KWOK_NODE_COUNT} kwok nodes'")
    _create_nodes(state_dir)

    log(f"step 'start the real node {node.NODE_NAME}' (containerd, images, kubelet, kube-proxy)")
    try:
        node.start_containerd(state_dir, _start, SERVICE_CIDR)
        node.import_images(state_dir, archives)
        node.start_kubelet(state_dir, _start, bdir, pki, free_port)
        node.start_kube_proxy(state_dir, _start, bdir, free_port)
    except node.NodeError as e:
        raise ClusterError(str(e)) from None

    log("step 'wait until healthy' (/readyz, nodes Ready, kubernetes endpoints, Service rules)")

    def healthy() -> object:
        problems = _check(state_dir)
        return True if not problems else "; ".join(problems)

    _wait(state_dir, "wait until healthy", healthy, timeout)


def kwok_node(name: str, allocatable: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, object]:
    """A Node kwok plays: annotated for kwok, labelled and tainted with the kwok placement
    (tests.helpers), so only Pods that ask for a fake node land on it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **KWOK_NODE_SELECTOR,
                **(labels or {}),
            },
        },
        "spec": {"taints": [KWOK_TAINT]},
        "status": {"allocatable": allocatable, "capacity": allocatable},
    }


def _create_nodes(state_dir: Path) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            kwok_node(
                f"kwok-node-{i}",
                {"cpu": "32", "memory": "256Gi", "pods": "110"},
                {"topology.kubernetes.io/zone": f"zone-{i % 3}"},
            )
            for i in range(KWOK_NODE_COUNT)
        ],
    }
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(state_dir / "admin.kubeconfig"), "apply", "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ClusterError(f"step 'create kwok nodes': kubectl apply failed: {proc.stderr.strip()}")


def _info(state_dir: Path) -> ClusterInfo:
    server = json.loads((state_dir / "cluster.json").read_text())["server"]
    return ClusterInfo(state_dir=state_dir, kubeconfig=state_dir / "kubeconfig", server=server)


def down(state_dir: Path = DEFAULT_STATE_DIR, grace: float = 5.0) -> None:
    """Stop the recorded processes (SIGTERM, then SIGKILL after `grace`), undo the real node's
    changes to the host, remove the state."""
    state_dir = state_dir.resolve()
    _stop_all(state_dir, grace)
    if state_dir.exists():
        if not (state_dir / MARKER).exists() and any(state_dir.iterdir()):
            # Refuse to wipe a directory this launcher did not create.
            raise ClusterError(f"step 'remove state': {state_dir} lacks {MARKER}; not removing it")
        shutil.rmtree(state_dir, ignore_errors=True)
    log(f"down; removed {state_dir}")


def _clear_state(state_dir: Path) -> None:
    for child in state_dir.iterdir():
        if child.name != MARKER:
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def _stop_all(state_dir: Path, grace: float = 5.0) -> None:
    """The real node first (kubelet, its Pods through the CRI, kube-proxy, containerd, then the
    host changes), then the rest one at a time, clients before servers (kwok ... etcd), so the
    API server is not left waiting on a vanished etcd."""
    bdir = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        bdir = Path(json.loads((state_dir / "cluster.json").read_text())["bin_dir"])
    try:
        node.teardown(state_dir, stop=lambda name: _stop_one(state_dir, name, grace), bin_dir=bdir)
    except node.NodeError as e:
        raise ClusterError(str(e)) from None
    order = {n: i for i, n in enumerate(COMPONENTS)}
    for name in sorted(_read_pids(state_dir), key=lambda n: -order.get(n, len(order))):
        _stop_one(state_dir, name, grace)


def _stop_one(state_dir: Path, name: str, grace: float) -> None:
    """SIGTERM a recorded process; the data is throwaway, so one that has not exited `grace`
    seconds later gets SIGKILL."""
    entry = _read_pids(state_dir).get(name)
    if entry is None or not _alive(entry):
        return
    pid = int(str(entry["pid"]))
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    while time.monotonic() - t0 < grace and _alive(entry):
        time.sleep(0.05)
    if _alive(entry):
        log(f"{name} (pid {pid}) still running {grace:g} s after SIGTERM; sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    log(f"stopped {name} (pid {pid}) in {time.monotonic() - t0:.1f} s")


def _dead(state_dir: Path) -> bool:
    """No recorded process of `state_dir` is running any more."""
    return not any(_alive(entry) for entry in _read_pids(state_dir).values())


def status(state_dir: Path = DEFAULT_STATE_DIR) -> int:
    state_dir = state_dir.resolve()
    pids = _read_pids(state_dir)
    if not pids:
        print(f"no cluster in {state_dir}")
        return 1
    for name in COMPONENTS:
        entry = pids.get(name)
        state = "running" if entry and _alive(entry) else "NOT running"
        pid = entry["pid"] if entry else "-"
        print(f"{name:24} pid {pid!s:>8}  {state}")
    problems = _check(state_dir)
    print("healthy" if not problems else "unhealthy: " + "; ".join(problems))
    if not problems:
        print(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
        print(f"host address for Pods: {node.GATEWAY} ({state_dir / 'host-ip'})")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            t0 = time.monotonic()
            info = up(args.state_dir)
            print(
                f"\nmodelroll dev cluster is up ({time.monotonic() - t0:.1f} s): {info.server}\n"
                f"  export KUBECONFIG={info.kubeconfig}\n"
                f"  kubectl get nodes\n"
                f"  logs: {info.state_dir / 'logs'}/\n"
                f"  stop: make cluster-down"
            )
            return 0
        if args.command == "down":
            down(args.state_dir)
            return 0
        return status(args.state_dir)
    except ClusterError as e:
        log(f"FAILED: {e}")
        if args.command == "up":
            log(f"logs kept in {args.state_dir / 'logs'}; `make cluster-down` cleans up")
        return 1


if __name__ == "__main__":
    sys.exit(main())
