"""Labels reach the Pod that answered: two real servers sharing the ModelDeployment's key, each
with its own address, as two Pods behind one Service; a label posted to either is counted by
the one whose id it carries, and a forged id makes no server connect anywhere."""

from __future__ import annotations

import base64
import re
import select
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from conftest import Server, running_server, spawn_server
from modelroll_contract import EXIT_BAD_CONFIGURATION
from modelroll_server.feedback_forward import TIMEOUT_SECONDS
from modelroll_server.feedback_ids import MAC_BYTES, Route, RouteCodec, route_part

from tests.helpers import free_port, stop_process

pytestmark = pytest.mark.server

KEY = "a2VlcC10aGlzLXNlY3JldC1wbGVhc2UtMzItYnl0ZXM"  # what the operator's Secret holds (token_urlsafe(32))
LOOPBACK = "127.0.0.1"


def pod(tmp, models, track: str, version: str, *args: str, key: str | None = KEY):  # type: ignore[no-untyped-def]
    """A server as the operator runs it: its address from the downward API, the shared key."""
    env = {"MODELROLL_SERVER_POD_IP": LOOPBACK, **({"MODELROLL_SERVER_FEEDBACK_KEY": key} if key else {})}
    return running_server(tmp, models.paths["lr"], "lr", ["--track", track, "--version", version, *args], env)


@pytest.fixture(scope="module")
def pair(models, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    """A (stable v1) and B (canary v2) of one ModelDeployment."""
    with (
        pod(tmp_path_factory.mktemp("a"), models, "stable", "v1") as a,
        pod(tmp_path_factory.mktemp("b"), models, "canary", "v2") as b,
    ):
        yield a, b


FORWARDED = "modelroll_feedback_forwarded_total"


def counts(s: Server, family: str = "modelroll_feedback_total", label: str = "result") -> dict[str, float]:
    found = ((re.fullmatch(rf'{family}\{{.*,{label}="(\w+)"\}}', k), v) for k, v in s.metrics().items())
    return {m[1]: v for m, v in found if m}


def infer(s: Server, X: np.ndarray) -> str:
    r = s.infer(X)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def feedback(s: Server, items: list[dict]) -> requests.Response:
    return requests.post(f"{s.url}/v2/models/lr/feedback", json=items, timeout=30)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def test_a_label_sent_to_another_pod_is_counted_by_the_pod_that_answered(pair, models):
    a, b = pair
    X, y_model = models.X, models.lr.predict(models.X)
    truth = (y_model[:30] + np.arange(30) % 2) % 3  # half the rows disagree with the model
    ids = [infer(a, X[i : i + 3]) for i in range(0, 30, 3)]
    assert all(route_part(rid) for rid in ids), ids  # each names A
    v1 = a.post("/v1/models/lr:predict", json={"instances": X[30:32].tolist()})
    v1_id = v1.headers["x-request-id"]
    assert route_part(v1_id) == route_part(ids[0])
    before_a, before_b = counts(a), counts(b)
    before_fwd = counts(b, FORWARDED, "outcome")

    items = [{"id": rid, "labels": truth[n * 3 : n * 3 + 3].tolist()} for n, rid in enumerate(ids)]
    r = feedback(b, [*items, {"id": v1_id, "labels": y_model[30:32].tolist()}])
    assert r.status_code == 200 and r.json() == {"matched": 11, "unmatched": 0}, r.text

    right = int((y_model[:30] == truth).sum())  # independently: scikit-learn's own predictions
    assert 0 < right < 30
    # counted by A, in A's series (stable, v1); B, the canary, counted nothing of it
    assert delta(counts(a), before_a) == {"correct": right + 2, "incorrect": 30 - right, "unmatched": 0}
    assert a.metrics()['modelroll_feedback_total{model_name="lr",model_version="v1",track="stable",result="correct"}']
    assert delta(counts(b), before_b) == {"correct": 0, "incorrect": 0, "unmatched": 0}
    assert delta(counts(b, FORWARDED, "outcome"), before_fwd) == {"answered": 11, "failed": 0}
    # the label was consumed where the prediction is: a second one, to A itself, is unmatched
    again = feedback(a, items[:1])
    assert again.status_code == 404 and "already labelled" in again.json()["error"]
    # and through B too: A says so, B passes it on
    again = feedback(b, items[1:2])
    assert again.status_code == 404 and "already labelled" in again.json()["error"]


def test_a_mixed_batch_merges_this_pods_counts_with_the_others(pair, models):
    a, b = pair
    y = models.lr.predict(models.X)

    def labelled(s: Server, rows: range) -> list[dict]:
        return [{"id": infer(s, models.X[i : i + 1]), "labels": [int(y[i])]} for i in rows]

    before_a, before_b = counts(a), counts(b)
    for target in (a, b):  # whichever Pod the Service picks, the same answer
        on_a, on_b = labelled(a, range(40, 44)), labelled(b, range(44, 47))
        unknown = [f"{route_part(on_a[0]['id'])}.never-made", "a-client-id"]  # A's route; no route
        items = [*on_a[:2], {"id": unknown[0], "labels": [0]}, *on_a[2:], *on_b, {"id": unknown[1], "labels": [1]}]
        r = feedback(target, items)
        assert r.status_code == 200, r.text
        assert r.json() == {"matched": 7, "unmatched": 2, "unmatched_ids": unknown}
    # each prediction counted by the Pod that made it (A 4 per round, B 3); an unmatched label by
    # the Pod its id names (A's unknown id: at A both times) or, naming none, where it landed
    assert delta(counts(a), before_a) == {"correct": 8, "incorrect": 0, "unmatched": 2 + 1}
    assert delta(counts(b), before_b) == {"correct": 6, "incorrect": 0, "unmatched": 1}


def test_a_forwarded_request_is_matched_where_it_lands_and_never_forwarded_again(pair, models):
    a, b = pair
    rid = infer(a, models.X[:1])
    before_a = counts(a)
    r = requests.post(f"{b.url}/v2/models/lr/feedback/forwarded", json=[{"id": rid, "labels": [1]}], timeout=30)
    assert r.status_code == 200 and r.json() == {"matched": 0, "unmatched_at": [0], "labelled": 0}
    assert counts(a) == before_a  # B looked in its own window only
    # A refuses a wrong label count (400, nothing consumed); B's client learns why, and no 5xx
    wrong = feedback(b, [{"id": rid, "labels": [1, 2]}])
    assert wrong.status_code == 404 and "did not count it" in wrong.json()["error"], wrong.text
    assert "answered 400" in wrong.json()["error"]
    assert "the request had 1 rows, got 2 labels" in wrong.json()["error"]
    assert feedback(a, [{"id": rid, "labels": [1]}]).status_code == 200  # still unlabelled at A


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """A loopback port we own: any connection a server makes to it waits in its backlog."""
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def connections_to(sock: socket.socket) -> int:
    n = 0
    while select.select([sock], [], [], 0)[0]:
        conn, _ = sock.accept()
        conn.close()
        n += 1
    return n


def route_of(host: str, port: int, mac: bytes) -> str:
    raw = socket.inet_aton(host) + port.to_bytes(2, "big") + mac
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_forged_route_is_unmatched_and_makes_no_connection(pair, models, listener):
    a, b = pair
    rid = infer(a, models.X[:1])
    part, rest = rid.split(".", 1)
    port = listener.getsockname()[1]
    raw = base64.urlsafe_b64decode(part + "=")
    forged = [
        # A's own MAC with the address changed to ours
        route_of(LOOPBACK, port, raw[-MAC_BYTES:]),
        # ours, signed with another key
        RouteCodec(b"not the deployment's key, 32 b.").encode(Route(LOOPBACK, port)),
        # A's address with a MAC that is one bit off
        base64.urlsafe_b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).rstrip(b"=").decode(),
        # no MAC at all
        base64.urlsafe_b64encode(raw[:-MAC_BYTES]).rstrip(b"=").decode(),
    ]
    before_b = counts(b)
    for fake in forged:
        r = feedback(b, [{"id": f"{fake}.{rest}", "labels": [1]}])
        assert r.status_code == 404 and "unknown, expired" in r.json()["error"], (fake, r.text)
    assert delta(counts(b), before_b)["unmatched"] == len(forged)
    assert connections_to(listener) == 0
    # the id itself, untouched, still matches: the forged copies consumed nothing
    assert feedback(b, [{"id": rid, "labels": [int(models.lr.predict(models.X[:1])[0])]}]).status_code == 200


def test_a_pod_that_does_not_answer_leaves_its_labels_unmatched_within_the_timeout(pair, models, listener):
    """Signed with the real key, the route IS followed (so the check above would have seen a
    connection): a Pod that accepts and never answers costs the timeout, not a 5xx."""
    a, b = pair
    rest = infer(a, models.X[:1]).split(".", 1)[1]
    silent = RouteCodec(KEY.encode()).encode(Route(LOOPBACK, listener.getsockname()[1]))
    gone = RouteCodec(KEY.encode()).encode(Route(LOOPBACK, free_port()))  # nothing listens: refused
    before_b = counts(b)
    before_fwd = counts(b, FORWARDED, "outcome")
    started = time.monotonic()
    r = feedback(b, [{"id": f"{silent}.{rest}", "labels": [1, 2]}])
    took = time.monotonic() - started
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert "the Pod that answered it did not count it" in error and f"no answer within {TIMEOUT_SECONDS:g}s" in error
    assert TIMEOUT_SECONDS - 0.1 <= took < TIMEOUT_SECONDS + 2.0, took  # bounded: the timeout, and a margin
    assert connections_to(listener) == 1
    # a Pod that is gone, beside one that answers: 200, the gone one's labels unmatched and said so
    answered = infer(b, models.X[5:6])
    started = time.monotonic()
    r = feedback(b, [{"id": f"{gone}.{rest}", "labels": [0]}, {"id": answered, "labels": [0]}])
    assert time.monotonic() - started < 1.0  # refused at once: no waiting for the timeout
    assert r.status_code == 200 and r.json() == {
        "matched": 1, "unmatched": 1, "unmatched_ids": [f"{gone}.{rest}"], "unreachable": 1,
    }  # fmt: skip
    # B counted the rows nobody else could: 2 + 1
    assert delta(counts(b), before_b)["unmatched"] == 3
    assert delta(counts(b, FORWARDED, "outcome"), before_fwd) == {"answered": 0, "failed": 2}
    assert not any('code="5' in k and v for k, v in b.metrics().items())
    assert b.get("/v2/health/ready").status_code == 200


def test_labels_for_any_worker_of_a_pod_reach_it(models, tmp_path, pair):
    _, b = pair
    with pod(tmp_path, models, "stable", "v1", "--workers", "2") as a2:
        ids: list[str] = []
        workers: set[str] = set()
        deadline = time.monotonic() + 30
        while (len(workers) < 2 or len(ids) < 60) and time.monotonic() < deadline:
            r = requests.post(f"{a2.url}/v2/models/lr/infer", timeout=30, json={"inputs": [
                {"name": "x", "shape": [1, 20], "datatype": "FP64", "data": models.X[len(ids)].tolist()}]})  # fmt: skip
            ids.append(r.json()["id"])
            workers.add(ids[-1].rsplit("-", 2)[1])
        assert workers == {"0", "1"}, "both workers answered"
        assert len({route_part(i) for i in ids}) == 1  # one Pod, one route, whichever worker
        y = models.lr.predict(models.X[: len(ids)])
        r = feedback(b, [{"id": rid, "labels": [int(y[n])]} for n, rid in enumerate(ids)])
        assert r.status_code == 200 and r.json() == {"matched": len(ids), "unmatched": 0}, r.text
        assert counts(a2) == {"correct": len(ids), "incorrect": 0, "unmatched": 0}


def test_without_the_key_ids_stay_local_and_nothing_is_forwarded(models, tmp_path, pair):
    a, _ = pair
    rid = infer(a, models.X[:1])
    before_a = counts(a)
    with pod(tmp_path, models, "stable", "v1", key=None) as alone:
        own = infer(alone, models.X[:1])
        assert route_part(own) is None and own.count("-") == 2  # as a standalone server's
        r = feedback(alone, [{"id": rid, "labels": [1]}])
        assert r.status_code == 404  # A's id is not here, and this server cannot verify A's route
    assert counts(a) == before_a


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"MODELROLL_SERVER_FEEDBACK_KEY": "too-short"}, "MODELROLL_SERVER_FEEDBACK_KEY: must be at least 16 bytes"),
        ({"MODELROLL_SERVER_POD_IP": "pod-7"}, "--pod-ip (MODELROLL_SERVER_POD_IP): must be an IP address"),
    ],
)
def test_a_bad_key_or_address_is_a_configuration_error(models, tmp_path, env, said):
    proc, _, log = spawn_server(tmp_path, ["--model", str(models.paths["lr"]), "--name", "lr"], env)
    try:
        assert proc.wait(timeout=60) == EXIT_BAD_CONFIGURATION
    finally:
        stop_process(proc)
    output = log.read_text()
    assert said in output and "too-short" not in output  # the key is never echoed
