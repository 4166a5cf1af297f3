"""Part ``quality``: what the drift monitor and the feedback window cost, and the window's memory.

**Cost.** modelroll-server (batching on) on each model with neither, the feedback window only
(the server's default size), the drift monitor only (``--reference``: the model's decile
reference.json) or both: a server of its own per setting, the same wrk load as every part
(infer.lua, one row, no id: the server makes one up, and the window records it under that id)
at 16 and 64 connections, each cell beside "neither".

**Memory.** With ``MEMORY_WORKERS`` workers and a window of 0, the default and 1M rows per
worker, wrk sends requests of ``ROWS`` rows, each with an id of its own (unique.lua), in short
runs (``Load``) until every worker's region has been overwritten at least twice over, while a poster in this process
labels its own requests ``LAG`` s after they were answered (so matching runs under the load).
The server's PSS and its shared segments are sampled before the load, once every region has
held its window ``FILL_MID`` times (full, so later growth would be a leak) and at the end.
How many rows a worker took is not exported, so it is estimated from its share of the
workers' CPU time (every request is alike).

Imported by bench.py (which it imports back for the servers, the load and the CPU counts).
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import (
    CLK,
    LR,
    MEMORY_WORKERS,
    MODELROLL_ON,
    RF,
    ROW,
    Bench,
    Row,
    cpu_seconds,
    group,
    group_memory,
    quiet,
    reference_path,
    server_env,
    serving,
    wrk,
    wrk_command,
    wrk_env,
    wrk_result,
)
from modelroll_contract import ENV_FEEDBACK_WINDOW_ROWS, ENV_REFERENCE, METRIC_FEEDBACK, METRIC_PREDICTIONS
from prometheus_client.parser import text_string_to_metric_families

CONNECTIONS = (16, 64)
BIG_WINDOW = 1_000_000  # rows per worker: ten times the default
ROWS = 16  # rows per request while filling: the server's rows/s is about flat from 16 to 64
LAG = 1.0  # seconds between a request's answer and its label
LABELS_PER_SECOND = 10  # the poster's requests, each labelled once
FILL_MID, FILL_END = 1.25, 2.5  # windows' worth of rows each region has taken at each sample
MAX_FILL_SECONDS = 900.0  # a drive that has not filled the windows by then is reported as cut short
CHUNK = 2  # seconds per wrk run while filling (see Load)
SHARED = "/dev/zero (deleted)"  # how /proc/PID/smaps names an anonymous shared mapping (mmap -1)


@dataclass(frozen=True)
class Setting:
    name: str
    feedback: bool
    drift: bool

    def env(self, model: Path) -> dict[str, str]:
        """The server's environment: feedback on is its default window, left unset."""
        env = {} if self.feedback else {ENV_FEEDBACK_WINDOW_ROWS: "0"}
        if self.drift:
            env[ENV_REFERENCE] = str(reference_path(model))
        return env


SETTINGS = (
    Setting("neither", False, False),
    Setting("feedback", True, False),
    Setting("drift", False, True),
    Setting("both", True, True),
)
# "neither" first and again last: the base is their mean, and how far the two differ shows how
# much the machine moved while the other settings ran
ORDER = (*SETTINGS, SETTINGS[0])


def measure_quality(b: Bench, models: dict[str, Path]) -> dict[str, list[Row]]:
    return {"cost": measure_cost(b, models), "memory": measure_window_memory(b, models[LR])}


# --- cost ----------------------------------------------------------------------------------
def measure_cost(b: Bench, models: dict[str, Path]) -> list[Row]:
    b = replace(b, drift=False)  # each setting says itself whether the server has a reference
    rows: list[Row] = []
    for name in (LR, RF):
        for s in ORDER:
            print(f"bench: quality, modelroll on {name}: {s.name}", flush=True)
            try:
                with serving(b, MODELROLL_ON, models[name], env=s.env(models[name])) as srv:
                    wrk(srv.port, 16, min(2.0, b.seconds))  # warm-up, not recorded
                    for c in CONNECTIONS:
                        r = quiet(lambda c=c: with_cpu(srv.proc.pid, lambda: wrk(srv.port, c, b.seconds)), srv.proc.pid)
                        rows.append({"model": name, "setting": s.name, "conns": c, **r})
                        print(f"  {c:>3} conns: {r['rps']:>9.1f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms"
                              f"  errors {r['errors']}  other CPU {r['other_cpu']:.2f}", flush=True)  # fmt: skip
            except RuntimeError as e:  # a server that cannot run is reported, not fatal
                print(f"  failed: {e}", flush=True)
                rows.append({"model": name, "setting": s.name, "conns": 0, "note": f"FAILED: {e}"})
    return rows


def with_cpu(pgid: int, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``measure()`` and ``cpu_us``: the server's CPU time per request meanwhile, in µs. Less
    moved by other work on the machine than req/s (which falls when the server waits for a
    core), so the difference between settings is what each costs a request."""
    cpu0 = group_cpu(pgid)
    r = measure()
    r["cpu_us"] = (group_cpu(pgid) - cpu0) / max(1.0, r["requests"]) * 1e6
    return r


# --- the window's memory -------------------------------------------------------------------
def server_default_window(b: Bench) -> int:
    """The server's own default window (config.py), read in a child: this process never
    imports numpy (see bench.in_child)."""
    code = "from modelroll_server.config import Settings; print(Settings.feedback_window_rows)"
    return int(subprocess.run([str(b.server_python), "-c", code], capture_output=True, text=True, check=True,
                              env=server_env()).stdout)  # fmt: skip


def metric_samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a Prometheus exposition, by their last label's value
    (summed when several series share it)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                key = list(s.labels.values())[-1] if s.labels else ""
                out[key] = out.get(key, 0.0) + s.value
    return out


def scrape(port: int, name: str) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return metric_samples(conn.getresponse().read().decode(), name)
    finally:
        conn.close()


def shared_kib(smaps: str) -> int:
    """The size in KiB of the anonymous shared mappings in one /proc/PID/smaps: the server's
    shared segments (the feedback window and the metrics table), resident or not."""
    size = 0
    inside = False
    for line in smaps.splitlines():
        head = line.split(maxsplit=5)
        if head and not head[0].endswith(":"):  # a mapping's first line: address range, perms, ...
            inside = len(head) == 6 and head[5] == SHARED
        elif inside and head and head[0] == "Size:":
            size += int(head[1])
    return size


def workers_cpu(pgid: int) -> dict[int, float]:
    """CPU seconds of each worker (the group less its supervisor, the group leader)."""
    return {int(p.name): (int(f[11]) + int(f[12])) / CLK for p, f in group(pgid) if int(p.name) != pgid}


def group_cpu(pgid: int) -> float:
    """CPU seconds of the whole server (every process of its group)."""
    return sum(int(f[11]) + int(f[12]) for _, f in group(pgid)) / CLK


def least_fill(rows: float, cpu0: dict[int, float], cpu1: dict[int, float], window: int) -> float:
    """Windows' worth of rows the least busy worker has taken, each worker's rows estimated as its
    share of the workers' CPU time since ``cpu0`` (a worker missing from ``cpu0`` started later)."""
    used = {pid: cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1}
    total = sum(used.values())
    if not used or total <= 0 or window <= 0:
        return 0.0
    return rows * min(used.values()) / total / window


def sample(pgid: int) -> Row:
    """The group's memory (bench.group_memory: its pss_shmem is what the shared segments hold
    resident) and the segments' size, from the supervisor, which maps every one."""
    return {**group_memory(pgid), "shared_size": shared_kib(Path(f"/proc/{pgid}/smaps").read_text()) / 1024}


class Poster(threading.Thread):
    """Sends one-row requests with ids of its own and labels each ``LAG`` s after its answer,
    one request and at most one label POST every 1 / LABELS_PER_SECOND s."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.statuses: dict[str, int] = {}  # "infer 200", "feedback 404", ...
        self.failure: str | None = None

    def _post(self, conn: http.client.HTTPConnection, what: str, body: object) -> None:
        conn.request("POST", f"/v2/models/model/{what}", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        key = f"{what} {r.status}"
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent: list[tuple[float, str, int]] = []  # (answered at, id, label)
        k = 0
        try:
            while not self.halt.wait(1 / LABELS_PER_SECOND):
                k += 1
                rid = f"fb-{k}"
                self._post(conn, "infer", {"id": rid, "inputs": [{"name": "input-0", "shape": [1, len(ROW)],
                                                                  "datatype": "FP64", "data": ROW}]})  # fmt: skip
                sent.append((time.monotonic(), rid, k % 2))  # half the labels wrong, whatever is predicted
                due = [(rid, label) for t, rid, label in sent if time.monotonic() - t >= LAG]
                if due:
                    del sent[: len(due)]
                    self._post(conn, "feedback", [{"id": rid, "labels": [label]} for rid, label in due])
        except Exception as e:  # reported with the results; the load goes on
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            conn.close()


def measure_window_memory(b: Bench, model: Path) -> list[Row]:
    default = server_default_window(b)
    out: list[Row] = []
    for window in sorted({0, default, BIG_WINDOW}):
        print(f"bench: quality, feedback window {window} rows per worker, {MEMORY_WORKERS} workers on {LR}, "
              f"requests of {ROWS} rows with ids of their own", flush=True)  # fmt: skip
        env = {ENV_FEEDBACK_WINDOW_ROWS: str(window)}
        with serving(replace(b, drift=False), MODELROLL_ON, model, MEMORY_WORKERS, env=env) as srv:
            out += fill(srv.port, srv.proc.pid, window, window or default)
    return out


def wait_workers(pgid: int, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while sum(1 for p, _ in group(pgid) if int(p.name) != pgid) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers after {seconds:.0f} s")
        time.sleep(0.1)


class Load(threading.Thread):
    """wrk (unique.lua, 64 connections) in CHUNK-second runs back to back until halted. The
    workers share one listener and whichever is awake first accepts; one long run once left a
    busy machine's fourth worker without a connection for its whole length. Each run connects
    anew, so a worker left out of one run gets connections in another."""

    def __init__(self, port: int, prefix: str) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix = port, prefix
        self.halt = threading.Event()
        self.results: list[dict[str, float]] = []
        self.failure: str | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set():
                n += 1
                env = wrk_env(WRK_ROWS=str(ROWS), WRK_ID_PREFIX=f"{self.prefix}{n}-")  # ids unique across runs
                out = subprocess.run(wrk_command(self.port, 64, CHUNK, "unique.lua"), capture_output=True, text=True,
                                     env=env, timeout=CHUNK + 60).stdout  # fmt: skip
                self.results.append(wrk_result(out))
        except Exception as e:  # fill() sees it and stops
            self.failure = f"{type(e).__name__}: {e}"

    def summary(self, seconds: float) -> dict[str, float]:
        """Requests/s over the whole drive, the runs' median p50 and worst p99, errors summed."""
        r = self.results or [{"requests": 0, "p50": 0.0, "p99": 0.0, "errors": 0}]
        return {"rps": sum(x["requests"] for x in r) / seconds, "p50": statistics.median(x["p50"] for x in r),
                "p99": max(x["p99"] for x in r), "errors": sum(x["errors"] for x in r), "runs": len(r)}  # fmt: skip


def fill(port: int, pgid: int, window: int, fill_window: int) -> list[Row]:
    """Drive the server until its least busy worker has taken FILL_END windows of ``fill_window``
    rows, sampling memory on the way (under the load); the drive's end sample carries its counts."""
    wait_workers(pgid, MEMORY_WORKERS)
    rows: list[Row] = [{"window": window, "phase": "start", "fills": 0.0, **sample(pgid)}]
    cpu0, predicted0 = workers_cpu(pgid), sum(scrape(port, METRIC_PREDICTIONS).values())
    busy0, ours0 = cpu_seconds(pgid)
    t0 = time.monotonic()
    poster, load = Poster(port), Load(port, f"w{window}-")
    poster.start()
    load.start()
    try:
        while True:
            time.sleep(0.5)
            if load.failure:
                raise RuntimeError(f"wrk failed: {load.failure}")
            predicted = sum(scrape(port, METRIC_PREDICTIONS).values()) - predicted0
            fills = least_fill(predicted, cpu0, workers_cpu(pgid), fill_window)
            if len(rows) == 1 and fills >= FILL_MID:
                rows.append({"window": window, "phase": "mid", "fills": fills, "predicted": predicted, **sample(pgid)})
                print(f"  mid: {fills:.2f} windows in the least busy worker, PSS {rows[-1]['pss']:.0f} MiB", flush=True)
            if fills >= FILL_END or time.monotonic() - t0 > MAX_FILL_SECONDS:
                end = {"window": window, "phase": "end", "fills": fills, "predicted": predicted, **sample(pgid),
                       "note": "" if fills >= FILL_END else f"cut short after {MAX_FILL_SECONDS:.0f} s"}  # fmt: skip
                break
    finally:
        load.halt.set()
        poster.halt.set()
        load.join(timeout=CHUNK + 90)
        poster.join(timeout=15)
    seconds = time.monotonic() - t0
    busy1, ours1 = cpu_seconds(pgid)
    result = load.summary(seconds)
    counts = scrape(port, METRIC_FEEDBACK)
    end.update({"seconds": seconds, **result, "rows_per_second": end["predicted"] / seconds,
                "other_cpu": max(0.0, (busy1 - busy0) - (ours1 - ours0)) / seconds,
                "feedback": counts, "posted": dict(poster.statuses), "poster_failure": poster.failure})  # fmt: skip
    rows.append(end)
    print(f"  end: {fills:.2f} windows, PSS {end['pss']:.0f} MiB (shared {end['pss_shmem']:.0f} of "
          f"{end['shared_size']:.0f} MiB), {end['rows_per_second']:,.0f} rows/s, wrk {result['rps']:.0f} req/s in "
          f"{result['runs']} runs, feedback rows {counts}, label posts {poster.statuses}", flush=True)  # fmt: skip
    return rows


# --- the report ----------------------------------------------------------------------------
def baselines(cost: list[Row]) -> dict[tuple[str, int], Row]:
    """Per (model, connections): the mean of the "neither" cells' figures."""
    cells: dict[tuple[str, int], list[Row]] = {}
    for r in cost:
        if r["setting"] == "neither" and "rps" in r:
            cells.setdefault((r["model"], r["conns"]), []).append(r)
    keys = ("rps", "p50", "p99", "cpu_us")
    return {k: {m: statistics.mean(float(r[m]) for r in v) for m in keys} for k, v in cells.items()}


def _ratio(r: Row, base: Row | None, key: str) -> str:
    return f"{float(r[key]) / float(base[key]):.2f}x" if base and float(base[key]) else ""


def render_quality(q: dict[str, list[Row]]) -> list[str]:
    lines: list[str] = []
    cost = q.get("cost") or []
    if cost:
        lines += ["", "Drift monitor and feedback window, cost (modelroll, batching on, a server per setting; "
                  "feedback = the default window; drift = --reference with the model's decile bins; ratios and "
                  "differences vs the mean of the two neither servers, run first and last, at the same connections: "
                  "the neither rows' own show how much the machine moved meanwhile):", "",
                  "| model | setting | conns | req/s | p50 ms | p99 ms | req/s vs neither | p50 vs neither | "
                  "p99 vs neither | server CPU µs/req (vs neither) | errors | other CPU |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        base = baselines(cost)
        for r in cost:
            if "rps" not in r:
                lines.append(f"| {r['model']} | {r['setting']} ({r['note']}) | | | | | | | | | | |")
                continue
            b = base.get((r["model"], r["conns"]))
            cpu = f"{r['cpu_us']:.1f}" + (f" ({r['cpu_us'] - b['cpu_us']:+.1f})" if b else "")
            lines.append(f"| {r['model']} | {r['setting']} | {r['conns']} | {r['rps']:.0f} | {r['p50']:.2f} | "
                         f"{r['p99']:.2f} | {_ratio(r, b, 'rps')} | {_ratio(r, b, 'p50')} | {_ratio(r, b, 'p99')} | "
                         f"{cpu} | {r['errors']} | {r['other_cpu']:.2f} |")  # fmt: skip
    memory = q.get("memory") or []
    if memory:
        lines += render_window_memory(memory)
    return lines


def render_window_memory(memory: list[Row]) -> list[str]:
    lines = ["", f"Feedback window memory under load ({MEMORY_WORKERS} workers, {LR}; wrk runs of {CHUNK} s, 64 "
             f"connections, {ROWS}-row requests with ids of their own; labels for the poster's requests {LAG:g} s "
             "after their answer; fills: windows of rows the least busy worker took, estimated from its CPU share; "
             "shared: the anonymous shared segments, the window and the metrics table, resident / size):", "",
             "| window rows/worker | phase | fills | PSS MiB | anonymous | shared resident | shared size | RSS MiB |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for m in memory:
        lines.append(f"| {m['window']:,} | {m['phase']} | {m['fills']:.2f} | {m['pss']:.0f} | {m['pss_anon']:.0f} | "
                     f"{m['pss_shmem']:.1f} | {m['shared_size']:.1f} | {m['rss']:.0f} |")  # fmt: skip
    ends = {m["window"]: m for m in memory if m["phase"] == "end"}
    mids = {m["window"]: m for m in memory if m["phase"] == "mid"}
    lines.append("")
    for window, end in ends.items():
        fb = end["feedback"]
        matched = fb.get("correct", 0) + fb.get("incorrect", 0) + fb.get("matched", 0)
        text = (f"- window {window:,}: {end['predicted']:,.0f} rows in {end['seconds']:.0f} s "
                f"({end['rows_per_second']:,.0f} rows/s; wrk {end['rps']:,.0f} req/s in {end['runs']} runs, "
                f"p99 max {end['p99']:.2f} ms, {end['errors']} errors; other CPU {end['other_cpu']:.2f})")  # fmt: skip
        if window in mids:
            text += f"; PSS end - mid {end['pss'] - mids[window]['pss']:+.1f} MiB"
        if window and 0 in ends:
            units = MEMORY_WORKERS * window / 100_000
            per, segment = (end["pss"] - ends[0]["pss"]) / units, (end["shared_size"] - ends[0]["shared_size"]) / units
            text += f"; {per:.2f} MiB per 100k rows per worker (PSS at the end vs window 0; the segment {segment:.2f})"
        if window:
            seconds = window / (end["rows_per_second"] / MEMORY_WORKERS)
            text += f"; at this load the window held each worker's last {seconds:.1f} s"
        text += (f"; labelled rows matched {matched:.0f} (correct {fb.get('correct', 0):.0f}), unmatched "
                 f"{fb.get('unmatched', 0):.0f}; label posts by answer {end['posted']}")  # fmt: skip
        if end.get("poster_failure"):
            text += f"; the poster failed: {end['poster_failure']}"
        if end.get("note"):
            text += f" ({end['note']})"
        lines.append(text)
    return lines
