"""Cluster fixtures for the end-to-end tier (tests marked ``e2e``).

Nothing here starts a cluster unless a test asks for the ``cluster`` fixture (directly or via
``kubeconfig``, ``kubectl``, ``namespace``, ``install_crds`` or ``run_operator``), so unit and
server tests never pay for it. Where the cluster comes from, first match wins:

1. ``MODELROLL_TEST_KUBECONFIG`` names a kubeconfig: that cluster is used as it is (kind,
   minikube, a real one) and never stopped.
2. ``make cluster`` left a healthy local control plane in ``.devcluster/``: it is reused and
   left running.
3. Otherwise the session starts its own (tests/cluster/launcher.py) in a temporary directory
   and stops it at the end. Missing binaries fail the tests with the step to run
   (``make cluster-tools``); they are never skipped.

This module does I/O: processes, files, kubectl.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # so tests can `from tests.helpers import ...`
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import launcher  # noqa: E402
import node  # noqa: E402

from tests.helpers import Kubectl, get_json, wait_for  # noqa: E402

KUBECONFIG_ENV = "MODELROLL_TEST_KUBECONFIG"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    # True when this session started the control plane (and so will stop it).
    owned: bool
    # The launcher's state dir (logs in <state_dir>/logs), None for an external cluster.
    state_dir: Path | None


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A running, healthy Kubernetes API server; see the module docstring for which one."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        path = Path(external).expanduser().resolve()
        if not path.is_file():
            pytest.fail(f"{KUBECONFIG_ENV}={external} is not a file", pytrace=False)
        _export(path)
        yield Cluster(kubeconfig=path, owned=False, state_dir=None)
        return

    if launcher.is_healthy(launcher.DEFAULT_STATE_DIR):
        kubeconfig = launcher.DEFAULT_STATE_DIR / "kubeconfig"
        _export(kubeconfig)
        yield Cluster(kubeconfig=kubeconfig, owned=False, state_dir=launcher.DEFAULT_STATE_DIR)
        return

    state_dir = Path(tempfile.mkdtemp(prefix="modelroll-cluster-"))
    failure = None
    try:
        info = launcher.up(state_dir, die_with_parent=True)
    except launcher.ClusterError as e:
        failure = f"local control plane did not start: {e}"
        if (state_dir / "logs").exists():
            saved = Path(tempfile.gettempdir()) / f"modelroll-cluster-logs-{os.getpid()}"
            shutil.copytree(state_dir / "logs", saved, dirs_exist_ok=True)
            failure += f"\n(component logs copied to {saved})"
        launcher.down(state_dir)
    if failure:
        pytest.fail(failure, pytrace=False)
    _export(info.kubeconfig)
    try:
        yield Cluster(kubeconfig=info.kubeconfig, owned=True, state_dir=state_dir)
    finally:
        if request.session.testsfailed:
            # Keep the control plane's logs for whoever reads the failure (CI included).
            saved = Path(tempfile.gettempdir()) / f"modelroll-cluster-logs-{os.getpid()}"
            shutil.copytree(state_dir / "logs", saved, dirs_exist_ok=True)
            print(f"\ncluster: tests failed; control-plane logs kept in {saved}")
        found = node.recorded_sysctls(state_dir)  # the machine's settings before `up`
        launcher.down(state_dir)
        # `down` must leave the machine as it found it; every run checks (an error at teardown).
        left = node.leftovers(state_dir)
        now = node.read_sysctls()
        changed = {k: f"{v} -> {now.get(k)}" for k, v in found.items() if now.get(k) != v}
        if left or changed:
            pytest.fail(f"cluster down left behind {left}; settings not restored: {changed}", pytrace=False)


def _export(kubeconfig: Path) -> None:
    # Subprocesses the tests start (kubectl, helm, the operator) see the same cluster.
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kubectl_bin = shutil.which("kubectl")
    if kubectl_bin is None:
        pytest.fail("kubectl is not on PATH", pytrace=False)
    helm_dir = launcher.bin_dir()
    if (helm_dir / "helm").exists() and str(helm_dir) not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = os.environ["PATH"] + os.pathsep + str(helm_dir)


@pytest.fixture(scope="session")
def kubeconfig(cluster: Cluster) -> Path:
    """Path of the kubeconfig for the test cluster (also exported as KUBECONFIG)."""
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    """kubectl(*args, input=None, check=True) -> CompletedProcess[str] against the cluster.

    With check=True a non-zero exit raises AssertionError carrying kubectl's stderr.
    """

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()}")
        return proc

    return run


@contextlib.contextmanager
def fresh_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A new namespace, ready for Pods; deleted on exit without waiting for it to go."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        # The ServiceAccount admission plugin refuses Pods until the namespace's default
        # ServiceAccount exists; wait so controllers never hit that in a test.
        wait_for(
            lambda: kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
            timeout=30,
            message=f"ServiceAccount default in namespace {name}",
        )
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards without waiting for it to go."""
    with fresh_namespace(kubectl) as name:
        yield name


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A second fresh namespace, for tests about two namespaces."""
    with fresh_namespace(kubectl) as name:
        yield name


@pytest.fixture(scope="session")
def install_crds(kubectl: Kubectl) -> list[str]:
    """Apply every YAML in crds/ and wait until each CRD is Established; returns their names."""
    crd_dir = REPO / "crds"
    files = sorted([*crd_dir.glob("*.yaml"), *crd_dir.glob("*.yml")])
    names: list[str] = []
    for f in files:
        out = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f), "-o", "name")
        names += [n.split("/", 1)[1] for n in out.stdout.split() if n.startswith("customresourcedefinition")]
    for name in names:
        # polled, not `kubectl wait`: on a CRD created a moment ago it can fail on the status
        # not having conditions yet (".status.conditions accessor error: <nil>")
        wait_for(lambda n=name: established(kubectl, n), timeout=60, message=f"CRD {name} Established")
    return names


def established(kubectl: Kubectl, crd: str) -> bool:
    conditions = get_json(kubectl, "crd", crd).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@dataclass
class OperatorProcess:
    """A running modelroll-operator started by the run_operator fixture."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _log_file: object = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the operator wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return int(self.proc.returncode)

    def kill(self) -> int:
        """SIGKILL at once (a crash, as far as the cluster can tell); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()
        return int(self.proc.returncode)

    def _close(self) -> None:
        close = getattr(self._log_file, "close", None)
        if close is not None:
            close()


@pytest.fixture
def run_operator(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: run_operator(*args, env=None, log_name="operator") -> OperatorProcess.

    Starts .venv/bin/modelroll-operator (the console script next to this Python) with
    KUBECONFIG set and `env` added to the environment, logging to tmp_path/<log_name>.log.
    Every process it started is stopped at teardown (SIGTERM, then SIGKILL).
    """
    started: list[OperatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, log_name: str = "operator") -> OperatorProcess:
        exe = Path(sys.executable).parent / "modelroll-operator"
        if not exe.exists():
            found = shutil.which("modelroll-operator")
            if found is None:
                pytest.fail("modelroll-operator console script not found; run `make venv`")
            exe = Path(found)
        full_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        full_env.update(env or {})
        log_path = tmp_path / f"{log_name}-{len(started)}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed by stop()/kill()
        proc = subprocess.Popen(
            [str(exe), *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        handle = OperatorProcess(proc=proc, log_path=log_path, _log_file=log_file)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed e2e test, attach the tail of the operator logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "run_operator" in getattr(item, "funcargs", {}):
        tmp = item.funcargs.get("tmp_path")
        if isinstance(tmp, Path):
            for log in sorted(tmp.glob("*.log")):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
                report.sections.append((f"operator log {log.name} (tail)", tail))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is in the e2e tier, marked or not."""
    e2e_dir = REPO / "tests" / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
