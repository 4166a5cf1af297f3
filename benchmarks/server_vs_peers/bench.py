"""Drive modelroll-server, its peers, other HTTP layers and nginx with one load; print one table.

Run through run.sh, which installs what is driven (the peers' venvs, uvicorn and granian,
ghz, wrk, nginx). Every server gets the same models (trained here with fixed seeds), the
same worker count and the same request: one Open Inference Protocol infer call with one
20-feature row, over HTTP/1.1 by wrk (infer.lua) or over gRPC by ghz (ModelInfer). All
traffic stays on loopback; every server is started in a session of its own and stopped by
that process group, nothing else.

Parts (BENCH_PARTS): ``http`` modelroll (batching on and off), MLServer (default and
batching) and KServe on both models; ``layers`` the same modelroll App behind uvicorn and
granian (layers.py); ``ceiling`` nginx answering a fixed body; ``grpc`` ModelInfer through
each server's gRPC; ``memory`` 4 workers vs 1 on the forest; ``limit`` scikit-learn's own
predict rate, without a server; ``shadow`` the cost of paired shadow comparison on the stable
server's own latency (shadow_cost.py); ``quality`` (not run unless named) the cost of the drift
monitor and the feedback window, and the window's memory under load (quality_cost.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ROW = [0.49, -1.21, 0.33, 1.87, -0.42, 0.05, -0.77, 1.12, 0.64, -0.18,
       0.91, -1.53, 0.27, 0.08, -0.66, 1.44, -0.29, 0.72, -1.05, 0.36]  # fmt: skip  # = infer.lua
BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                               "data": ROW}]}).encode()  # fmt: skip
GRPC_BODY = json.dumps({"model_name": "model", "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 20],
                                                           "contents": {"fp64_contents": ROW}}]})  # fmt: skip
# What modelroll answers to that request on the LogisticRegression: nginx sends it back as is.
CEILING_BODY = ('{"model_name":"model","model_version":"1","outputs":[{"name":"predict","shape":[1],'
                '"datatype":"INT64","data":[1]}]}')  # fmt: skip
PROTO = REPO / "server_image/src/modelroll_server/proto/inference.proto"
SERVER_SRC = (REPO / "server_image/src", REPO / "common/src")  # modelroll-server's code, on PYTHONPATH
LR, RF = "LogisticRegression", "RandomForest"
PARTS = ("http", "layers", "ceiling", "grpc", "memory", "limit", "shadow", "quality")
DEFAULT_PARTS = tuple(p for p in PARTS if p != "quality")  # quality takes minutes: BENCH_PARTS=quality
SERVERS = ("modelroll", "mlserver", "kserve", "uvicorn", "granian", "nginx")
MEMORY_WORKERS = 4
Row = dict[str, Any]  # one measured cell, as printed and written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- models and the in-process limit -------------------------------------------------------
def in_child(*args: str) -> Any:
    """models.py in a process of its own: this one never maps numpy or scikit-learn, whose
    pages it would otherwise share with the servers and so lower their measured PSS."""
    out = subprocess.run([sys.executable, str(HERE / "models.py"), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def train(workdir: Path) -> dict[str, Path]:
    return {k: Path(v) for k, v in in_child("train", str(workdir)).items()}


def reference_path(model: Path) -> Path:
    """The reference.json models.py writes beside each model (decile bins of its training data)."""
    return model.parent / "reference.json"


def in_process(path: Path) -> tuple[float, float]:
    one, many = in_child("limit", str(path))
    return float(one), float(many)


# --- what runs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    server: str  # modelroll | mlserver | kserve | uvicorn | granian-rsgi | granian-asgi | nginx
    variant: str  # batching on/off, or the HTTP layer
    note: str = ""

    @property
    def family(self) -> str:  # what BENCH_ONLY names
        return self.server.split("-")[0]


MODELROLL_ON = Config("modelroll", "on", "own HTTP layer; adaptive batching, max 64 rows")
MODELROLL_OFF = Config("modelroll", "off", "--max-batch-size 1")
MLSERVER_OFF = Config("mlserver", "off", "default")
MLSERVER_ON = Config("mlserver", "on", "max_batch_size 64, max_batch_time 5 ms")
KSERVE = Config("kserve", "off", "default (no batching in ModelServer)")
PEERS = (MODELROLL_ON, MODELROLL_OFF, MLSERVER_OFF, MLSERVER_ON, KSERVE)
LAYERS = (
    Config("uvicorn", "on", "bare ASGI, httptools, uvloop"),
    Config("granian-rsgi", "on", "RSGI, uvloop"),
    Config("granian-asgi", "on", "ASGI, uvloop"),
)
NGINX = Config("nginx", "-", "fixed JSON body (return 200)")
GRPC = (MODELROLL_ON, MLSERVER_OFF, KSERVE)


@dataclass
class Group:
    """One server start and the cells measured on it."""

    part: str
    cfg: Config
    model: str  # LR / RF, or "-" for nginx
    wrk: list[int] = field(default_factory=list)  # connections
    ghz: list[int] = field(default_factory=list)  # concurrent calls


def plan(parts: set[str], only: set[str], conns: list[int]) -> list[Group]:
    """Which servers to start and what to measure on each (pure)."""
    loaded = [c for c in conns if c > 1] or conns  # the layer and gRPC comparisons: 16 and 64
    groups: list[Group] = []
    if "ceiling" in parts and "nginx" in only:
        groups.append(Group("ceiling", NGINX, "-", wrk=list(conns)))
    for model in (LR, RF):
        for cfg in PEERS[:2] + (LAYERS if model == LR else ()) + PEERS[2:]:
            if cfg.family not in only:
                continue
            g = Group("http", cfg, model)
            if cfg in LAYERS:
                g.part, g.wrk = "layers", list(loaded) if "layers" in parts else []
            elif "http" in parts:
                g.wrk = list(conns)
            elif cfg == MODELROLL_ON and model == LR and "layers" in parts:
                g.part, g.wrk = "layers", list(loaded)  # our own layer, for the comparison
            if "grpc" in parts and model == LR and cfg in GRPC:
                g.ghz = list(loaded)
            if g.wrk or g.ghz:
                groups.append(g)
    return groups


# --- servers -------------------------------------------------------------------------------
@dataclass
class Bench:
    """Everything a run shares: tools, directories, knobs."""

    cache: Path
    layers: Path
    ghz: Path
    nginx: Path
    work: Path
    logf: Path
    seconds: float
    workers: int
    modelroll_grpc: bool  # modelroll-server has --grpc-port and its inference.proto exists
    grpc_flag: bool  # modelroll-server accepts --grpc-port
    server_python: Path  # run.sh's venv with the server's dependencies only (its image's)
    drift: bool = False  # BENCH_DRIFT=1: modelroll serves with --reference


@dataclass
class Launch:
    cmd: list[str]
    env: dict[str, str]
    cwd: str | None = None
    ready_path: str = "/v2/models/model/ready"


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELROLL_SERVER_")}


def server_env(*first: Path) -> dict[str, str]:
    """base_env with modelroll-server's code (after ``first``) on PYTHONPATH, for b.server_python."""
    return dict(base_env(), PYTHONPATH=os.pathsep.join(str(p) for p in (*first, *SERVER_SRC)))


def server_command(b: Bench) -> list[str]:
    """``modelroll-server``, as b.server_python runs it (with server_env)."""
    return [str(b.server_python), "-m", "modelroll_server.cli"]


def launch_modelroll(b: Bench, cfg: Config, model: Path, port: int, grpc_port: int, workers: int) -> Launch:
    cmd = [*server_command(b), "serve", "--model", str(model),
           "--name", "model", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--max-batch-size", "64" if cfg.variant == "on" else "1"]  # fmt: skip
    if b.grpc_flag:
        cmd += ["--grpc-port", str(grpc_port)]
    if b.drift:  # drift metrics against the model's reference.json
        cmd += ["--reference", str(reference_path(model))]
    return Launch(cmd, server_env())


def launch_mlserver(b: Bench, cfg: Config, model: Path, port: int, grpc_port: int, workers: int) -> Launch:
    d = model.parent / f"mlserver-{cfg.variant}"
    d.mkdir(exist_ok=True)
    (d / "model.joblib").write_bytes(model.read_bytes())
    (d / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(),
        "parallel_workers": workers, "host": "127.0.0.1"}))  # fmt: skip
    ms: dict[str, object] = {"name": "model", "implementation": "mlserver_sklearn.SKLearnModel",
                             "parameters": {"uri": "./model.joblib"}}  # fmt: skip
    if cfg.variant == "on":
        ms.update({"max_batch_size": 64, "max_batch_time": 0.005})
    (d / "model-settings.json").write_text(json.dumps(ms))
    return Launch([str(b.cache / "mlserver/bin/mlserver"), "start", str(d)], base_env(), str(d))


def launch_kserve(b: Bench, cfg: Config, model: Path, port: int, grpc_port: int, workers: int) -> Launch:
    cmd = [str(b.cache / "kserve/bin/python"), str(HERE / "kserve_model.py"),
           "--http_port", str(port), "--grpc_port", str(grpc_port), "--workers", str(workers)]  # fmt: skip
    env = dict(base_env(), BENCH_MODEL_NAME="model", BENCH_MODEL_PATH=str(model))
    return Launch(cmd, env, str(model.parent))


def launch_layer(b: Bench, cfg: Config, model: Path, port: int, grpc_port: int, workers: int) -> Launch:
    py = str(b.server_python)
    if cfg.server == "uvicorn":
        cmd = [py, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--http", "layers:HttpToolsCounted", "--loop", "uvloop", "--lifespan", "on", "--ws", "none",
               "--interface", "asgi3", "--no-access-log", "--log-level", "warning", "--backlog", "2048",
               "--timeout-keep-alive", "75", "--app-dir", str(HERE), "layers:asgi"]  # fmt: skip
    else:
        interface = cfg.server.split("-")[1]
        cmd = [py, "-m", "granian", "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--loop", "uvloop", "--no-ws", "--backlog", "2048",
               "--log-level", "warning", "--working-dir", str(HERE), f"layers:{interface}"]  # fmt: skip
    env = dict(server_env(b.layers), MODELROLL_SERVER_MODEL=str(model),
               MODELROLL_SERVER_NAME="model", MODELROLL_SERVER_MAX_BATCH_SIZE="64")  # fmt: skip
    return Launch(cmd, env, str(HERE))


def launch_nginx(b: Bench, cfg: Config, model: Path, port: int, grpc_port: int, workers: int) -> Launch:
    d = b.work / "nginx"
    d.mkdir(exist_ok=True)
    (d / "nginx.conf").write_text(f"""# the HTTP ceiling: the same wrk load answered with a fixed body
daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{CEILING_BODY}';
    }}
  }}
}}
""")
    cmd = [str(b.nginx), "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    return Launch(cmd, base_env(), str(d), ready_path="/")


LAUNCHERS: dict[str, Callable[[Bench, Config, Path, int, int, int], Launch]] = {
    "modelroll": launch_modelroll,
    "mlserver": launch_mlserver,
    "kserve": launch_kserve,
    "uvicorn": launch_layer,
    "granian": launch_layer,
    "nginx": launch_nginx,
}


def post(port: int) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/model/infer", data=BODY,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    port: int
    grpc_port: int


@contextlib.contextmanager
def serving(b: Bench, cfg: Config, model: Path, workers: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[Serving]:  # fmt: skip
    port, grpc_port = free_port(), free_port()
    launch = LAUNCHERS[cfg.family](b, cfg, model, port, grpc_port, workers or b.workers)
    launch.env.update(env or {})
    with open(b.logf, "ab") as f:
        f.write(f"\n=== {cfg.server} ({cfg.variant}) on {model.parent.name}: {' '.join(launch.cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(launch.cmd, stdout=f, stderr=subprocess.STDOUT, env=launch.env, cwd=launch.cwd,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cfg.server} exited with {proc.returncode}; see {b.logf}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{launch.ready_path}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cfg.server} not ready after 180 s; see {b.logf}")
            time.sleep(0.2)
        status, text = post(port)
        if status != 200:
            raise RuntimeError(f"{cfg.server} answered {status}: {text[:200]}")
        yield Serving(proc, port, grpc_port)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (its session, started above), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # workers that outlive their parent are still in its group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- load -------------------------------------------------------------------------------------
_RESULT = re.compile(r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) errors=(\d+) requests=(\d+)")


def wrk_command(port: int, connections: int, seconds: float, script: str = "infer.lua") -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(HERE / script), f"http://127.0.0.1:{port}"]  # fmt: skip


def wrk_env(**extra: str) -> dict[str, str]:
    """The scripts' environment: the path they post to, and where infer.lua is (unique.lua loads it)."""
    return dict(os.environ, WRK_PATH="/v2/models/model/infer", WRK_DIR=str(HERE), **extra)


def wrk(port: int, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(wrk_command(port, connections, seconds), capture_output=True, text=True, env=wrk_env(),
                         timeout=seconds + 60).stdout  # fmt: skip
    return wrk_result(out)


def wrk_result(out: str) -> dict[str, float]:
    """infer.lua's RESULT line (and wrk's count of non-2xx answers) as numbers."""
    m = _RESULT.search(out)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(m[1]), "p50": float(m[2]), "p99": float(m[3]),
            "errors": int(m[4]) + (int(non2xx[1]) if non2xx else 0), "requests": int(m[5])}  # fmt: skip


# the calls ghz has in flight when its duration ends fail with one of these: not the server's
_CUT = ("closed network connection", "transport is closing", "context canceled", "client connection is closing")


def ghz(b: Bench, target: list[str], port: int, concurrency: int, seconds: float) -> dict[str, float]:
    """ModelInfer at ``concurrency`` calls in flight on one connection, ghz on one core like wrk -t1."""
    cmd = [str(b.ghz), "--insecure", *target, "--call", "inference.GRPCInferenceService/ModelInfer",
           "-d", GRPC_BODY, "-c", str(concurrency), "-z", f"{max(1, round(seconds))}s", "--cpus", "1",
           "--timeout", "10s", "--format", "json", f"127.0.0.1:{port}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    try:
        d = json.loads(out.stdout)
    except ValueError:
        raise RuntimeError(f"ghz printed no result: {out.stdout[-500:]} {out.stderr[-500:]}") from None
    codes = d.get("statusCodeDistribution") or {}
    ok = int(codes.get("OK", 0))
    cut = sum(n for msg, n in (d.get("errorDistribution") or {}).items() if any(c in msg for c in _CUT))
    errors = int(d.get("count", 0)) - ok - min(cut, concurrency)
    lat = {int(x["percentage"]): x["latency"] / 1e6 for x in d.get("latencyDistribution") or []}
    if not ok or 50 not in lat:
        raise RuntimeError(f"ghz: no successful call: {json.dumps(d.get('errorDistribution'))[:500]}")
    return {"rps": ok / (d["total"] / 1e9), "p50": lat[50], "p99": lat[99], "errors": max(0, errors)}


def grpc_target(b: Bench, cfg: Config) -> list[str]:
    """ghz's view of the server's service: its own .proto, or the descriptors its package ships."""
    if cfg.server == "modelroll":
        return ["--proto", str(PROTO), "--import-paths", str(PROTO.parent)]
    venv, module = {"mlserver": ("mlserver", "mlserver.grpc.dataplane_pb2"),
                    "kserve": ("kserve", "kserve.protocol.grpc.grpc_predict_v2_pb2")}[cfg.server]  # fmt: skip
    out = b.work / f"{cfg.server}.protoset"
    subprocess.run([str(b.cache / venv / "bin/python"), str(HERE / "protoset.py"), module, str(out)], check=True)
    return ["--protoset", str(out)]


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on gRPC port {port} after {seconds:.0f} s") from None
            time.sleep(0.2)


# --- the server's processes: memory, and how quiet the machine was ----------------------------
CLK = os.sysconf("SC_CLK_TCK")
NOISY = 0.15  # cores used by other processes during a cell that make it worth measuring again


def group(pgid: int) -> Iterator[tuple[Path, list[str]]]:
    """(/proc/PID, the fields of its stat after the name) of each process in a process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                yield stat.parent, fields
        except (OSError, IndexError, ValueError):
            continue


def cpu_seconds(pgid: int) -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, those of the server's group, this process
    and its finished children (wrk, ghz) together): the difference over a cell is the CPU
    that something else on the machine took."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first)
    busy = (user + nice + system + irq + softirq + steal) / CLK
    ours = sum(int(f[11]) + int(f[12]) for _, f in group(pgid)) / CLK  # utime, stime
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        ours += r.ru_utime + r.ru_stime
    return busy, ours


def quiet(measure: Callable[[], dict[str, float]], pgid: int, tries: int = 3) -> dict[str, float]:
    """``measure()`` with ``other_cpu``: the cores that processes outside the benchmark used
    meanwhile. The machine has two cores; a cell that other work disturbed is measured again
    (at most ``tries`` times in all) and the quietest attempt is kept."""
    best: dict[str, float] | None = None
    for _ in range(tries):
        busy0, ours0 = cpu_seconds(pgid)
        t0 = time.monotonic()
        r = measure()
        busy1, ours1 = cpu_seconds(pgid)
        r["other_cpu"] = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (time.monotonic() - t0)
        if best is None or r["other_cpu"] < best["other_cpu"]:
            best = r
        if best["other_cpu"] < NOISY:
            break
        print(f"    (other processes took {r['other_cpu']:.2f} cores)", flush=True)
        time.sleep(2.0)  # give the other work a moment to pass
    assert best is not None
    return best


MEMORY_KEYS = {"Pss": "pss", "Pss_Anon": "pss_anon", "Pss_File": "pss_file", "Pss_Shmem": "pss_shmem", "Rss": "rss"}


def group_memory(pgid: int) -> Row:
    """Sums in MiB over a process group (smaps_rollup). PSS splits each shared page among the
    processes that map it, so its sum is what the group holds (file pages also mapped by
    processes outside the group, such as shared libraries, count only in part); PSS of
    anonymous memory (the heap: where the model lives) is shared only within the fork tree,
    so no other process changes it; RSS counts a shared page once per process."""
    kib = dict.fromkeys(MEMORY_KEYS.values(), 0)
    n = 0
    for proc, _ in group(pgid):
        try:
            rollup = (proc / "smaps_rollup").read_text()
        except OSError:
            continue
        n += 1
        for line in rollup.splitlines():
            key, _, rest = line.partition(":")
            if key in MEMORY_KEYS:
                kib[MEMORY_KEYS[key]] += int(rest.split()[0])
    return {**{k: v / 1024 for k, v in kib.items()}, "processes": n}


def measure_memory(b: Bench, model: Path) -> list[Row]:
    out: list[Row] = []
    for workers in (1, MEMORY_WORKERS):
        print(f"bench: memory, modelroll with {workers} worker(s) on {RF}", flush=True)
        with serving(b, MODELROLL_ON, model, workers) as s:
            time.sleep(1.0)  # every worker has forked and settled
            out.append({"workers": workers, "phase": "ready", **group_memory(s.proc.pid)})
            load = wrk(s.port, 64, b.seconds)
            out.append({"workers": workers, "phase": "after load", **group_memory(s.proc.pid), "load_rps": load["rps"]})
        for r in out[-2:]:
            print(f"  {r['phase']:>10}: PSS {r['pss']:.0f} MiB (anonymous {r['pss_anon']:.0f}), RSS {r['rss']:.0f} MiB "
                  f"in {r['processes']} processes", flush=True)  # fmt: skip
    return out


# --- the run -------------------------------------------------------------------------------
def run_group(b: Bench, g: Group, path: Path | None, rows: list[Row]) -> None:
    what = f"{g.cfg.server} ({g.cfg.variant})" + (f" on {g.model}" if g.model != "-" else "")
    print(f"bench: {what}", flush=True)

    def record(part: str, c: int, r: dict[str, float]) -> None:
        rows.append({"part": part, "server": g.cfg.server, "variant": g.cfg.variant, "note": g.cfg.note,
                     "model": g.model, "conns": c, **r})  # fmt: skip
        print(f"  {part:>7} {c:>3} conns: {r['rps']:>9.1f} req/s  p50 {r['p50']:.2f} ms  "
              f"p99 {r['p99']:.2f} ms  errors {r['errors']}  other CPU {r['other_cpu']:.2f}", flush=True)  # fmt: skip

    def failed(part: str, e: Exception) -> None:
        print(f"  {part} failed: {e}", flush=True)
        rows.append({"part": part, "server": g.cfg.server, "variant": g.cfg.variant, "note": f"FAILED: {e}",
                     "model": g.model, "conns": 0, "rps": 0.0, "p50": 0.0, "p99": 0.0, "errors": -1,
                     "other_cpu": 0.0})  # fmt: skip

    model = path if path is not None else b.work
    try:
        with serving(b, g.cfg, model) as s:
            if g.wrk:
                wrk(s.port, 16, min(2.0, b.seconds))  # warm-up, not recorded
                for c in g.wrk:
                    record(g.part, c, quiet(lambda c=c: wrk(s.port, c, b.seconds), s.proc.pid))
            if g.ghz and g.cfg.server == "modelroll" and not b.modelroll_grpc:
                print("  grpc: modelroll gRPC not available (no --grpc-port or no inference.proto)", flush=True)
            elif g.ghz:
                try:
                    target = grpc_target(b, g.cfg)
                    wait_port(s.grpc_port)
                    with contextlib.suppress(RuntimeError):
                        ghz(b, target, s.grpc_port, 16, min(2.0, b.seconds))  # warm-up
                    for c in g.ghz:
                        record("grpc", c, quiet(lambda c=c: ghz(b, target, s.grpc_port, c, b.seconds), s.proc.pid))
                except Exception as e:
                    failed("grpc", e)
    except Exception as e:  # a server that cannot run is reported, not fatal
        failed(g.part, e)


def versions(b: Bench) -> dict[str, str]:
    """What was measured with, for the report: every tool and server but ours."""
    from importlib.metadata import distributions

    out: dict[str, str] = {}
    sites = [
        b.layers,
        *b.cache.glob("mlserver/lib/python*/site-packages"),
        *b.cache.glob("kserve/lib/python*/site-packages"),
    ]
    for d in distributions(path=[str(p) for p in sites]):
        name = (d.metadata["Name"] or "").lower()
        if name in ("uvicorn", "granian", "mlserver", "mlserver-sklearn", "kserve"):
            out[name] = d.version
    for tool, cmd in (("wrk", ["wrk", "-v"]), ("nginx", [str(b.nginx), "-v"]), ("ghz", [str(b.ghz), "--version"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            m = re.search(r"(\d+\.\d+[\w.+~-]*)", text.stdout + text.stderr)
            out[tool] = m[1] if m else "?"
    return dict(sorted(out.items()))


def grpc_support(b: Bench) -> tuple[bool, bool]:
    """(modelroll-server accepts --grpc-port, and its inference.proto exists)."""
    out = subprocess.run([*server_command(b), "serve", "--help"], capture_output=True, text=True,
                         env=server_env()).stdout  # fmt: skip
    flag = "--grpc-port" in out
    return flag, flag and PROTO.is_file()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--layers", type=Path, required=True, help="uvicorn and granian, installed for PYTHONPATH")
    p.add_argument("--ghz", type=Path, required=True)
    p.add_argument("--nginx", type=Path, required=True)
    p.add_argument("--server-python", type=Path, required=True, help="a venv's python with the server extra's deps")
    a = p.parse_args()
    seconds = float(os.environ.get("BENCH_DURATION", "10"))
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    conns = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1 16 64").split()]
    only = set(os.environ.get("BENCH_ONLY", " ".join(SERVERS)).split())
    parts = set(os.environ.get("BENCH_PARTS", " ".join(DEFAULT_PARTS)).split())
    for name, got, known in (("BENCH_ONLY", only, SERVERS), ("BENCH_PARTS", parts, PARTS)):
        if got - set(known):
            print(f"bench: {name}: unknown {' '.join(sorted(got - set(known)))}; known: {' '.join(known)}")
            return 2
    work = a.cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(a.cache, a.layers, a.ghz, a.nginx, work, work / "servers.log", seconds, workers, False, False,
              a.server_python, drift=os.environ.get("BENCH_DRIFT") == "1")  # fmt: skip
    b.grpc_flag, b.modelroll_grpc = grpc_support(b)
    b.logf.write_text("")
    print(f"bench: training models; {seconds:g} s per cell, {workers} worker(s), connections {conns}, "
          f"parts {' '.join(p for p in PARTS if p in parts)}, servers {' '.join(s for s in SERVERS if s in only)}; "
          f"server logs in {b.logf}", flush=True)  # fmt: skip
    models = train(work)
    limits = {k: in_process(v) for k, v in models.items()} if "limit" in parts else {}
    rows: list[Row] = []
    for g in plan(parts, only, conns):
        run_group(b, g, models.get(g.model), rows)
    memory = measure_memory(b, models[RF]) if "memory" in parts and "modelroll" in only else []
    shadow: list[Row] = []
    if "shadow" in parts and "modelroll" in only:
        from shadow_cost import measure_shadow

        shadow = measure_shadow(b, models[LR])
    quality: dict[str, list[Row]] = {}
    if "quality" in parts and "modelroll" in only:
        from quality_cost import measure_quality

        quality = measure_quality(b, models)
    if limits:
        # measured again at the end, the higher figure kept: a busy moment must not make the
        # limit look lower than it is
        again = {k: in_process(v) for k, v in models.items()}
        limits = {k: (max(limits[k][0], again[k][0]), max(limits[k][1], again[k][1])) for k in limits}
    grpc_note = "" if b.modelroll_grpc or "grpc" not in parts else "modelroll gRPC not available"
    tools = versions(b)
    report = render(rows, memory, limits, seconds, workers, grpc_note, tools, shadow, quality)
    print(report)
    a.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (a.results / f"server_vs_peers-{stamp}.md").write_text(report)
    raw = {"rows": rows, "memory": memory, "shadow": shadow, "quality": quality, "in_process": limits,
           "seconds": seconds, "workers": workers, "parts": sorted(parts), "servers": sorted(only),
           "modelroll_grpc": b.modelroll_grpc, "tools": tools}  # fmt: skip
    (a.results / f"server_vs_peers-{stamp}.json").write_text(json.dumps(raw, indent=1))
    print(f"bench: written to {a.results}/server_vs_peers-{stamp}.md")
    return 0


# --- the report ---------------------------------------------------------------------------
def ceiling_of(rows: list[Row]) -> dict[int, float]:
    return {int(r["conns"]): float(r["rps"]) for r in rows if r["part"] == "ceiling" and r["conns"]}


def render(rows: list[Row], memory: list[Row], limits: dict[str, tuple[float, float]], seconds: float,
           workers: int, grpc_note: str, tools: dict[str, str], shadow: list[Row],
           quality: dict[str, list[Row]]) -> str:  # fmt: skip
    ceiling = ceiling_of(rows)
    lines = [
        f"# modelroll-server vs MLServer vs KServe, other HTTP layers, nginx ({datetime.date.today()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {workers} worker(s) per server, "
        f"{seconds:g} s per cell, one 20-feature row per request; HTTP by wrk -t1, gRPC by ghz --cpus 1)",
        "",
        "| part | server | batching | model | conns | req/s | p50 ms | p99 ms | errors | of ceiling | other CPU |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        label = str(r["server"]) + (f" ({r['note']})" if str(r["note"]).startswith("FAILED") else "")
        share = ""
        if r["model"] == LR and r["part"] != "grpc" and int(r["conns"]) in ceiling:
            share = f"{100 * float(r['rps']) / ceiling[int(r['conns'])]:.0f}%"
        lines.append(f"| {r['part']} | {label} | {r['variant']} | {r['model']} | {r['conns']} | {r['rps']:.0f} | "
                     f"{r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | {share} | {r['other_cpu']:.2f} |")  # fmt: skip
    if grpc_note:
        lines += ["", f"gRPC: {grpc_note} (modelroll-server has no --grpc-port, or no {PROTO.relative_to(REPO)}); "
                  "the peers' gRPC was measured."]  # fmt: skip
    if memory:
        lines += ["", f"Memory of modelroll-server on {RF} (sum over the server's processes, supervisor included):", ""]
        for m in memory:
            load = f"; the load: wrk 64 conns, {m['load_rps']:.0f} req/s" if "load_rps" in m else ""
            lines.append(f"- {m['workers']} worker(s), {m['phase']}: PSS {m['pss']:.0f} MiB (anonymous "
                         f"{m['pss_anon']:.0f}, file {m['pss_file']:.0f}, shared memory {m['pss_shmem']:.0f}), "
                         f"RSS {m['rss']:.0f} MiB, {m['processes']} processes{load}")  # fmt: skip
    if shadow:
        from shadow_cost import render_shadow

        lines += render_shadow(shadow)
    if quality:
        from quality_cost import render_quality

        lines += render_quality(quality)
    if limits:
        lines += ["", "In-process scikit-learn `predict` (the limit; the higher of a measure before and after):", ""]
        for k, (one, many) in limits.items():
            lines.append(f"- {k}: one row {one:,.0f} calls/s; 64 rows {many:,.0f} rows/s")
    for title, items in (('Targets (issue 11, "Done when"):', targets(rows, memory, grpc_note)),
                         ("Information:", information(rows, limits))):  # fmt: skip
        if items:
            lines += ["", title, ""] + [f"- {t}" for t in items]
    lines += [
        "",
        "Batching: modelroll `on` = adaptive (default, max 64 rows), `off` = `--max-batch-size 1`; MLServer `on` = "
        "max_batch_size 64, max_batch_time 5 ms; KServe's ModelServer has no batching of its own. Layers: the same "
        "modelroll App (batching on) behind uvicorn (bare ASGI, httptools, uvloop) and granian (RSGI; "
        "ASGI); under granian a batch closes on the loop's next turn (it reports no connections). Ceiling: nginx, "
        "same worker count, answering the same wrk load with a fixed JSON body. gRPC: ModelInfer, one connection, "
        "`conns` calls in flight; calls cut by the end of the run are not errors. Other CPU: cores that processes "
        f"outside the benchmark used during the cell (a cell above {NOISY} was measured up to three times, the "
        "quietest kept).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in tools.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def pick(rows: list[Row], part: str, server: str, model: str, c: int, variant: str | None = None) -> list[Row]:
    return [r for r in rows if r["part"] == part and r["server"] == server and r["model"] == model
            and r["conns"] == c and (variant is None or r["variant"] == variant)]  # fmt: skip


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _f(r: Row, key: str) -> float:
    return float(r[key])


def targets(rows: list[Row], memory: list[Row], grpc_note: str) -> list[str]:
    out: list[str] = []
    for c in (16, 64):
        ours = pick(rows, "http", "modelroll", LR, c, "on")
        peers = pick(rows, "http", "mlserver", LR, c) + pick(rows, "http", "kserve", LR, c)
        if ours and peers:
            o, best = ours[0], max(peers, key=lambda r: _f(r, "rps"))
            ratio, p99 = _f(o, "rps") / _f(best, "rps"), _f(o, "p99") / _f(best, "p99")
            ok = ratio >= 15 and p99 <= 0.5 and o["errors"] == 0
            out.append(f"LogisticRegression, {c} conns: {_f(o, 'rps'):,.0f} req/s = {ratio:.1f}x the best peer "
                       f"({best['server']} batching {best['variant']}, {_f(best, 'rps'):,.0f} req/s); p99 "
                       f"{_f(o, 'p99'):.2f} ms = {p99:.2f}x its {_f(best, 'p99'):.2f} ms; errors {o['errors']} "
                       f"-> {verdict(ok)} (>= 15x, <= 0.5x, no errors)")  # fmt: skip
    for c in (16, 64):
        ours = pick(rows, "http", "modelroll", RF, c, "on")
        unbatched = pick(rows, "http", "mlserver", RF, c, "off") + pick(rows, "http", "kserve", RF, c, "off")
        if ours and unbatched:
            o, best = ours[0], max(unbatched, key=lambda r: _f(r, "rps"))
            ratio = _f(o, "rps") / _f(best, "rps")
            ok = ratio >= 20 and o["errors"] == 0
            out.append(f"RandomForest, {c} conns, batched: {_f(o, 'rps'):,.0f} req/s = {ratio:.1f}x the best "
                       f"unbatched peer ({best['server']}, {_f(best, 'rps'):,.0f} req/s) "
                       f"-> {verdict(ok)} (>= 20x)")  # fmt: skip
    for c in sorted({int(r["conns"]) for r in rows if r["part"] == "grpc" and r["conns"]}):
        peers = pick(rows, "grpc", "mlserver", LR, c) + pick(rows, "grpc", "kserve", LR, c)
        ours = pick(rows, "grpc", "modelroll", LR, c)
        if not peers:
            continue
        best = max(peers, key=lambda r: _f(r, "rps"))
        if not ours:
            out.append(f"gRPC, {c} in flight: not measured ({grpc_note or 'modelroll gRPC failed'}); best peer "
                       f"{best['server']} {_f(best, 'rps'):,.0f} calls/s -> FAIL (ahead of both peers)")  # fmt: skip
            continue
        o = ours[0]
        ok = _f(o, "rps") > _f(best, "rps") and o["errors"] == 0
        out.append(f"gRPC, {c} in flight: {_f(o, 'rps'):,.0f} calls/s (p99 {_f(o, 'p99'):.2f} ms) = "
                   f"{_f(o, 'rps') / _f(best, 'rps'):.1f}x the best peer ({best['server']}, {_f(best, 'rps'):,.0f} "
                   f"calls/s, p99 {_f(best, 'p99'):.2f} ms) -> {verdict(ok)} (ahead of both)")  # fmt: skip
    ceiling = ceiling_of(rows)
    for c in sorted(ceiling):
        ours = pick(rows, "http", "modelroll", LR, c, "on") or pick(rows, "layers", "modelroll", LR, c, "on")
        if ours:
            out.append(f"HTTP ceiling, {c} conns: nginx {ceiling[c]:,.0f} req/s; modelroll on {LR} reaches "
                       f"{100 * _f(ours[0], 'rps') / ceiling[c]:.0f}% of it (shown; no threshold)")  # fmt: skip
    by = {(m["workers"], m["phase"]): m for m in memory}
    for phase in ("ready", "after load"):
        one, many = by.get((1, phase)), by.get((MEMORY_WORKERS, phase))
        if one and many:
            ratio = {k: _f(many, k) / _f(one, k) for k in ("pss", "pss_anon", "rss")}
            out.append(f"Memory, {RF}, {MEMORY_WORKERS} workers vs 1, {phase}: PSS {ratio['pss']:.2f}x "
                       f"({_f(many, 'pss'):.0f} / {_f(one, 'pss'):.0f} MiB) -> {verdict(ratio['pss'] < 1.5)} "
                       f"(< 1.5x); anonymous PSS {ratio['pss_anon']:.2f}x, summed RSS {ratio['rss']:.2f}x "
                       "(counts each shared page once per process)")  # fmt: skip
    return out


def information(rows: list[Row], limits: dict[str, tuple[float, float]]) -> list[str]:
    out: list[str] = []
    for c in sorted({int(r["conns"]) for r in rows if r["part"] == "layers" and r["conns"]}):
        own = pick(rows, "http", "modelroll", LR, c, "on") or pick(rows, "layers", "modelroll", LR, c, "on")
        others = [r for r in rows if r["part"] == "layers" and r["conns"] == c and r["server"] != "modelroll"]
        cells = own[:1] + others
        if len(cells) > 1:
            fastest = max(cells, key=lambda r: _f(r, "rps"))
            listing = ", ".join(f"{r['server']} {_f(r, 'rps'):,.0f} (p99 {_f(r, 'p99'):.2f} ms)" for r in cells)
            out.append(f"HTTP layers, {LR}, {c} conns: {listing}; fastest: {fastest['server']}")
    for c in (16, 64):
        ours = pick(rows, "http", "modelroll", RF, c, "on")
        mlb = pick(rows, "http", "mlserver", RF, c, "on")
        if ours and mlb:
            out.append(f"RandomForest, {c} conns: batched modelroll = "
                       f"{_f(ours[0], 'rps') / _f(mlb[0], 'rps'):.1f}x batched MLServer")  # fmt: skip
    ours = pick(rows, "http", "modelroll", LR, 1, "on")
    if ours and LR in limits:
        out.append(f"{LR}, 1 conn: {_f(ours[0], 'rps') / limits[LR][0]:.2f}x the in-process one-row predict rate")
    return out


if __name__ == "__main__":
    sys.exit(main())
