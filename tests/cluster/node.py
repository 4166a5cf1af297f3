"""The real node of the local cluster: containerd, a kubelet, kube-proxy and a contained Pod network.

The launcher (launcher.py) calls these in order: ``claim_host`` (one real node per machine),
``create_network`` before the API server starts (the API server listens on the bridge's
address so Pods can reach it), then ``start_containerd``, ``import_images``, ``start_kubelet``,
``start_kube_proxy``; ``teardown`` undoes exactly what was done, from what ``host.json``
recorded, even after a crash.

The network, by construction, reaches nothing outside this machine:
- Pods sit on the bridge ``BRIDGE`` in ``POD_CIDR``; its gateway ``GATEWAY`` is the node's IP,
  the API server's address and ``host-ip`` (where tests serve model files from the host).
- No masquerading to the outside and no default route in Pods: they get routes to the Pod
  range and the Service range only.
- The Service range and kwok's fake Pod and node ranges are routed to ``SINK``, a bridge with
  no ports: a packet kube-proxy has not translated dies here instead of following the default
  route out of the machine.
- A mangle FORWARD rule (kube-proxy never reorders mangle) drops anything from the Pod range
  that is not for the Pod range; traffic for this host is INPUT, not FORWARD.

This module does I/O: processes, files, ip/iptables/sysctl, mounts. It needs root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_NAME = "modelroll-node"
POD_CIDR = "10.250.0.0/24"
GATEWAY = "10.250.0.1"
BRIDGE = "mrpods0"
SINK = "mrsink0"
CNI_NETWORK = "modelroll-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")
# kubelet's cgroup root: everything it and the runtime create lives under this, in every
# hierarchy, so teardown removes one subtree per hierarchy.
CGROUP_ROOT = "modelroll-node"
MANGLE_CHAIN = "MODELROLL-FORWARD"
IMAGES = ("modelroll-pause", "modelroll-server", "modelroll-operator")
SANDBOX_IMAGE = "localhost/modelroll-pause:dev"
# Machine-wide settings kubelet (protectKernelDefaults: false), the bridge plugin and we
# change; recorded before and restored by teardown.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Paths kubelet and the CNI library write whatever their flags say; removed by teardown when
# they did not exist before.
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),
)
# Where the one real node of this machine is recorded (bridge names and iptables chains are
# machine-wide, so two clusters cannot both have one).
CLAIM_FILE = Path("/run/modelroll-node.json")

Starter = Callable[[str, list[str]], None]


class NodeError(RuntimeError):
    """A step of bringing the real node up or down failed; the message names the step."""


def _log(msg: str) -> None:
    print(f"cluster: {msg}", flush=True, file=sys.stderr)


def _run(step: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise NodeError(f"step '{step}': {argv[0]} is not installed") from None
    if check and proc.returncode != 0:
        raise NodeError(f"step '{step}': {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def node_dir(state_dir: Path) -> Path:
    return state_dir / "node"


def containerd_socket(state_dir: Path) -> Path:
    # Unix socket paths are limited to 107 bytes and a state dir may be deep, so the socket is
    # a short path under /run named after the state dir.
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(f"/run/modelroll-containerd-{digest}.sock")


# --- what is recorded on the host ----------------------------------------------------------


def _host_file(state_dir: Path) -> Path:
    return node_dir(state_dir) / "host.json"


def _read_host(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_host_file(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data


def _update_host(state_dir: Path, **changes: Any) -> None:
    data = {**_read_host(state_dir), **changes}
    path = _host_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def recorded_sysctls(state_dir: Path) -> dict[str, str]:
    """The machine-wide settings as they were before `state_dir`'s node changed them."""
    return dict(_read_host(state_dir).get("sysctls") or {})


def preflight() -> None:
    """Refuse to start without root or the host's parts of the real node (the built binaries
    are the launcher's `require_binaries`), naming what is missing."""
    if os.geteuid() != 0:
        raise NodeError("step 'real node preflight': the real node needs root (containerd, kubelet, iptables)")
    missing = []
    for cmd in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables", "ip6tables", "conntrack"):
        if not any(os.access(Path(d) / cmd, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
            missing.append(cmd)
    for plugin in ("bridge", "host-local", "loopback"):
        if not os.access(CNI_BIN_DIR / plugin, os.X_OK):
            missing.append(str(CNI_BIN_DIR / plugin))
    if missing:
        raise NodeError(
            f"step 'real node preflight': missing {', '.join(missing)}; "
            "run `make host-packages` (containerd, runc, CNI plugins, iptables, conntrack)"
        )


def claim_host(state_dir: Path, alive: Callable[[Path], bool]) -> None:
    """Record that `state_dir` owns this machine's real node, after clearing a dead owner's
    leftovers; refuse if a live cluster elsewhere owns it."""
    with contextlib.suppress(OSError, ValueError):
        owner = Path(json.loads(CLAIM_FILE.read_text())["state_dir"])
        if owner != state_dir:
            if alive(owner):
                raise NodeError(
                    f"step 'claim the real node': the cluster in {owner} runs this machine's real node; "
                    f"use it (KUBECONFIG={owner / 'kubeconfig'}) or stop it first "
                    f"(launcher.py down --state-dir {owner})"
                )
            _log(f"clearing the real node left behind by {owner}")
            teardown(owner)
    _update_host(
        state_dir,
        sysctls=read_sysctls(),
        preexisting_paths=[str(p) for p in FIXED_PATHS if p.exists()],
    )
    CLAIM_FILE.write_text(json.dumps({"state_dir": str(state_dir)}))


# --- network -------------------------------------------------------------------------------


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def create_network(state_dir: Path, sink_ranges: tuple[str, ...]) -> None:
    """The Pod bridge with the gateway address, the sink bridge and its routes, the FORWARD
    guard, and forwarding on (the bridge plugin would turn it on anyway)."""
    step = "create the Pod network"
    _update_host(state_dir, network=True)  # recorded first: a failure half-way is undone too
    for name in (BRIDGE, SINK):
        if _link_exists(name):
            _run(step, "ip", "link", "delete", name)
        _run(step, "ip", "link", "add", name, "type", "bridge")
    _run(step, "ip", "addr", "add", f"{GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
    _run(step, "ip", "link", "set", BRIDGE, "up")
    _run(step, "ip", "link", "set", SINK, "up")
    for cidr in sink_ranges:
        _run(step, "ip", "route", "replace", cidr, "dev", SINK, "src", GATEWAY)
    # Idempotent: a cluster whose state was deleted by hand may have left the chain behind.
    jump = ("FORWARD", "-s", POD_CIDR, "-j", MANGLE_CHAIN)
    while _run(step, "iptables", "-t", "mangle", "-D", *jump, check=False).returncode == 0:
        pass
    _run(step, "iptables", "-t", "mangle", "-N", MANGLE_CHAIN, check=False)
    _run(step, "iptables", "-t", "mangle", "-F", MANGLE_CHAIN)
    _run(step, "iptables", "-t", "mangle", "-A", MANGLE_CHAIN, "-d", POD_CIDR, "-j", "RETURN")
    _run(step, "iptables", "-t", "mangle", "-A", MANGLE_CHAIN, "-j", "DROP")
    _run(step, "iptables", "-t", "mangle", "-I", jump[0], "1", *jump[1:])
    # Forwarding for the Pod bridge only matters to Pods; br_netfilter makes bridged Pod-to-Pod
    # traffic pass iptables, so a Service's DNAT is undone on the reply.
    for name in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        _sysctl_path(name).write_text("1")


def _cni_conflist(state_dir: Path, service_cidr: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node_dir(state_dir) / "cni-ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                    # No default route: a Pod reaches the Pod range and Services, nothing else.
                    "routes": [{"dst": service_cidr, "gw": GATEWAY}],
                },
            }
        ],
    }


# --- containerd ----------------------------------------------------------------------------


def _containerd_config(state_dir: Path) -> str:
    nd = node_dir(state_dir)
    return f"""version = 2
root = "{nd / "containerd" / "root"}"
state = "{nd / "containerd" / "state"}"
# Plugins that would write fixed host paths (/opt/containerd) or need hardware we lack.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{containerd_socket(state_dir)}"

[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is built locally (tests/cluster/gomod/pause).
  sandbox_image = "{SANDBOX_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE; runc cannot lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{nd / "cni"}"
    max_conf_num = 1
"""


def start_containerd(state_dir: Path, start: Starter, service_cidr: str) -> None:
    nd = node_dir(state_dir)
    (nd / "cni").mkdir(parents=True, exist_ok=True)
    (nd / "cni" / "10-modelroll.conflist").write_text(json.dumps(_cni_conflist(state_dir, service_cidr), indent=2))
    (nd / "containerd.toml").write_text(_containerd_config(state_dir))
    _update_host(state_dir, containerd=True)
    sock = containerd_socket(state_dir)
    sock.unlink(missing_ok=True)  # a crashed run's: its existence must mean this containerd is up
    start("containerd", ["containerd", "--config", str(nd / "containerd.toml"), "--log-level", "warn"])
    _poll("start containerd", lambda: sock.exists() or f"no socket {sock}", 30)


def import_images(state_dir: Path, archives: dict[str, Path]) -> list[str]:
    """Load the locally built images into the namespace the CRI (and so kubelet) uses, each
    only if its archive (named by a hash of its inputs) is not the one imported last; returns
    the names imported. So a cluster that is reused after a code change runs the new images."""
    sock = str(containerd_socket(state_dir))
    imported = dict(_read_host(state_dir).get("images") or {})
    done = []
    for name in IMAGES:
        archive = archives.get(name)
        if archive is None or not archive.is_file():
            raise NodeError(f"step 'import images': no archive of {name}; run `make images` (scripts/build-images.sh)")
        if imported.get(name) == str(archive):
            continue
        _run("import images", "ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", str(archive))
        imported[name] = str(archive)
        _update_host(state_dir, images=imported)
        done.append(name)
    return done


# --- kubelet and kube-proxy ----------------------------------------------------------------


def _kubelet_config(state_dir: Path, pki: Path, healthz_port: int, port: int) -> dict[str, Any]:
    nd = node_dir(state_dir)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "x509": {"clientCAFile": str(pki / "ca.crt")},
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
        },
        # Only certificates of this cluster's CA get in (the API server's kubelet client).
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "containerRuntimeEndpoint": f"unix://{containerd_socket(state_dir)}",
        "failSwapOn": False,
        # root here may not lower its own OOM score; kubelet's default -999 would fail.
        "oomScoreAdj": 0,
        "protectKernelDefaults": False,
        # No cluster DNS and no upstream resolver: nothing in a Pod resolves outside names.
        "resolvConf": "",
        "podLogsDir": str(nd / "pod-logs"),
        # The disk may be fullish; the images cannot be pulled again, so never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        # A ConfigMap volume is refreshed when its Pod is synced: every syncFrequency (1m by
        # default, plus jitter). 5s lets a shadow phase start and end within seconds in the
        # tests (tests/e2e/test_shadow_phase.py) at the cost of more frequent Pod syncs.
        "syncFrequency": "5s",
        "maxPods": 110,
    }


def _create_cgroup_root() -> None:
    """kubelet wants its cgroup root to exist in every hierarchy. A new cpuset cgroup starts
    with no CPUs and no memory nodes, so it gets its parent's."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        root = hierarchy / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (root / name).exists() and not (root / name).read_text().strip():
                (root / name).write_text((hierarchy / name).read_text())


def start_kubelet(state_dir: Path, start: Starter, bin_dir: Path, pki: Path, free_port: Callable[[], int]) -> None:
    nd = node_dir(state_dir)
    config = _kubelet_config(state_dir, pki, free_port(), free_port())
    (nd / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    _update_host(state_dir, kubelet=True)
    _create_cgroup_root()
    start(
        "kubelet",
        [
            str(bin_dir / "kubelet"),
            f"--config={nd / 'kubelet.yaml'}",
            f"--kubeconfig={state_dir / 'node.kubeconfig'}",
            f"--root-dir={nd / 'kubelet'}",
            f"--cert-dir={nd / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={GATEWAY}",
            "--v=1",
        ],
    )


def start_kube_proxy(state_dir: Path, start: Starter, bin_dir: Path, free_port: Callable[[], int]) -> None:
    _update_host(state_dir, kube_proxy=True)
    start(
        "kube-proxy",
        [
            str(bin_dir / "kube-proxy"),
            f"--kubeconfig={state_dir / 'kube-proxy.kubeconfig'}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_CIDR}",
            f"--bind-address={GATEWAY}",
            f"--nodeport-addresses={GATEWAY}/32",
            f"--healthz-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            # Leave machine-wide settings alone: no route_localnet, no conntrack sysctls, no
            # OOM score we may not set.
            "--iptables-localhost-nodeports=false",
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--oom-score-adj=0",
            "--v=1",
        ],
    )


def proxy_ready() -> bool:
    """kube-proxy has programmed the Service rules (its chain exists in the nat table)."""
    return _run("wait for kube-proxy", "iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False).returncode == 0


# --- teardown ------------------------------------------------------------------------------


def _poll(step: str, done: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = done()
        if last is True:
            return
        time.sleep(0.2)
    raise NodeError(f"step '{step}': not done after {timeout:.0f} s ({last})")


def remove_pods(state_dir: Path, bin_dir: Path) -> None:
    """Stop and remove every Pod sandbox through the CRI, which tears each Pod's network down
    (CNI DEL, netns unmounted) and lets its shim exit. kubelet must be stopped first."""
    sock = containerd_socket(state_dir)
    if not sock.exists():
        return
    crictl = [str(bin_dir / "crictl"), "--runtime-endpoint", f"unix://{sock}", "--timeout", "30s"]
    proc = _run("remove Pods", *crictl, "rmp", "--all", "--force", check=False)
    if proc.returncode != 0:
        _log(f"crictl rmp --all: {proc.stderr.strip()[-300:]}")


def _shim_pids(state_dir: Path) -> list[int]:
    """containerd shims of our containerd (they outlive it): found by our socket in their argv."""
    sock = str(containerd_socket(state_dir)).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
                pids.append(int(entry.name))
    return pids


def kill_shims(state_dir: Path) -> None:
    for pid in _shim_pids(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    _poll("stop containerd shims", lambda: not _shim_pids(state_dir) or "shims still running", 10)


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` (mountinfo escapes spaces and such as octal)."""
    prefix = str(root.resolve())
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    points = {line.split()[4].encode().decode("unicode_escape") for line in mountinfo}
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below `root`, deepest first."""
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        proc = subprocess.run(["umount", point], capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _kill_cgroup_processes() -> None:
    """SIGKILL whatever still runs in the node's cgroups: containers of a node whose
    containerd died before it could stop them (their shims are gone, they are not)."""
    for procs in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)


def _cgroup_roots() -> list[Path]:
    """The node's cgroup root in every hierarchy where it exists."""
    base = Path("/sys/fs/cgroup")
    return [h / CGROUP_ROOT for h in base.iterdir() if (h / CGROUP_ROOT).is_dir()] if base.is_dir() else []


def _remove_cgroups() -> None:
    for root in _cgroup_roots():
        # rmdir children before parents; a cgroup dir holds only pseudo-files.
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _node_chains() -> list[tuple[str, str, str, set[str]]]:
    """(tool, table, its rules, the chains in it kube-proxy, kubelet or we made), for every
    table of both families."""
    found = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = _run("read iptables chains", f"{tool}-save", "-t", table, check=False).stdout
            chains = {line.split()[0][1:] for line in rules.splitlines() if line.startswith(":")}
            found.append((tool, table, rules, {c for c in chains if c.startswith(("KUBE-", MANGLE_CHAIN))}))
    return found


def _remove_chains() -> None:
    """The KUBE-* chains kube-proxy and kubelet made, and ours."""
    for tool, table, rules, ours in _node_chains():
        if ours:
            for line in rules.splitlines():
                parts = shlex.split(line)  # comments are quoted: "kubernetes forwarding rules"
                # a jump from a built-in chain into one of ours
                jump = line.startswith("-A ") and "-j" in parts and parts[parts.index("-j") + 1] in ours
                if jump and parts[1] not in ours:
                    subprocess.run([tool, "-t", table, "-D", *parts[1:]], capture_output=True)
        for chain in ours:
            subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
        for chain in ours:
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def teardown(state_dir: Path, stop: Callable[[str], None] | None = None, bin_dir: Path | None = None) -> None:
    """Undo what host.json says was done for `state_dir`'s node. `stop(name)` stops one of the
    launcher's recorded processes; kubelet goes first so it cannot restart the Pods."""
    host = _read_host(state_dir)
    if not host:
        return
    if stop is not None:
        stop("kubelet")
    if host.get("containerd") and bin_dir is not None:
        remove_pods(state_dir, bin_dir)
    if stop is not None:
        stop("kube-proxy")
        stop("containerd")
    if host.get("containerd"):
        kill_shims(state_dir)
    if host.get("kubelet") or host.get("containerd"):
        _kill_cgroup_processes()
    if host.get("containerd"):
        _unmount_under(node_dir(state_dir))
        for sock in (containerd_socket(state_dir), Path(f"{containerd_socket(state_dir)}.ttrpc")):
            with contextlib.suppress(OSError):
                sock.unlink()
    if host.get("kube_proxy") or host.get("kubelet") or host.get("network"):
        _remove_chains()
    if host.get("network"):
        for name in (BRIDGE, SINK):
            if _link_exists(name):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
    if host.get("kubelet") or host.get("containerd"):
        _remove_cgroups()
    for name, value in (host.get("sysctls") or {}).items():
        with contextlib.suppress(OSError):
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value)
    preexisting = set(host.get("preexisting_paths") or [])
    for path in FIXED_PATHS:
        if str(path) not in preexisting and path.exists():
            _unmount_under(path)
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True)
    with contextlib.suppress(OSError, ValueError):
        if Path(json.loads(CLAIM_FILE.read_text())["state_dir"]) == state_dir:
            CLAIM_FILE.unlink()
    _host_file(state_dir).unlink(missing_ok=True)


def leftovers(state_dir: Path) -> list[str]:
    """What of a real node is still on this machine (for tests of teardown and for `status`)."""
    found = []
    for name in (BRIDGE, SINK):
        if _link_exists(name):
            found.append(f"link {name}")
    for tool, table, _, chains in _node_chains():
        found += [f"{tool} {table} chain {c}" for c in sorted(chains)]
    found += [f"mount {p}" for p in _mounts_under(state_dir)]
    found += [f"cgroup {root}" for root in _cgroup_roots()]
    found += [f"containerd shim pid {p}" for p in _shim_pids(state_dir)]
    found += [f"socket {p}" for p in Path("/run").glob(f"{containerd_socket(state_dir).name}*")]
    return found
