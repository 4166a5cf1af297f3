"""Two teams, one name: analysis reads only its own namespace's metrics, end to end.

Two ModelDeployments both called ``churn``, in two namespaces, roll out the same versions (v1 to
v2) at the same time, so their series carry identical ``model_name``, ``model_version`` and
``track`` labels; only the ``namespace`` label Prometheus attaches at discovery tells them
apart (argo-rollouts#1866 and flagger#1767 are this mix-up). One canary is good, the other
answers 500 to ~30 % of the rows (test_analysis.py's OneHotEncoder canary). An unscoped
errorRate query would see ~15 % errors for both and roll both back; scoped, only the failing
one rolls back, and each status shows its own numbers.

The parts are test_analysis.py's: the real node, the server image, models trained there, one
upstream Prometheus discovering the Pods of both namespaces with the documented scrape job,
one operator watching both, and traffic through each Service's ClusterIP.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import pytest

from tests.analysis.parts import Prometheus, pod_scrape_job
from tests.e2e.conftest import start_operator
from tests.e2e.operator_helpers import apply, events_of, plugin, stable_version_is, status_of
from tests.e2e.real_node import SERVER_IMAGE, ModelStore, ServiceLoad, cluster_ip, real_manifest
from tests.e2e.test_analysis import (  # the parts of the one-namespace analysis tests
    MIN_SAMPLES,
    NAME,
    RATE,
    READY_TIMEOUT,
    models,  # noqa: F401 - a fixture
    served_by_track,
    strategy,
    traffic_rows,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
MAX_ERROR_RATE = 0.05  # test_analysis.GATES' errorRate threshold


@dataclass
class Team:
    kubectl: object
    store: ModelStore
    models: dict[str, bytes]
    namespace: str
    canary: str  # the model v2 runs
    load: ServiceLoad | None = None

    def deploy(self, version: str, model: str) -> None:
        uri, digest = self.store.put(f"{self.namespace}-{model}.joblib", self.models[model])
        apply(self.kubectl, self.namespace, real_manifest(NAME, uri, digest, version, 1, strategy=strategy()))

    def status(self) -> dict:
        return status_of(self.kubectl, self.namespace, NAME)


def error_gate(status: dict) -> tuple[dict, int, int]:
    """The errorRate gate of the run in ``status``, and the (5xx, requests) counts its message gives."""
    gate = {g["name"]: g for g in status["analysis"]["gates"]}["errorRate"]
    found = re.search(r"\((\d+) of (\d+) requests\)", gate["message"])
    assert found, gate
    return gate, int(found.group(1)), int(found.group(2))


def test_same_name_in_two_namespaces_each_judged_on_its_own_metrics(
    kubectl,
    kubeconfig,
    models,  # noqa: F811 - the fixture imported above
    run_operator,
    install_crds,
    namespace,
    other_namespace,
    model_store,
    tmp_path,
):
    good = Team(kubectl, model_store, models, namespace, "good")
    bad = Team(kubectl, model_store, models, other_namespace, "failing")
    teams = (good, bad)
    with contextlib.ExitStack() as started:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        prometheus = Prometheus(workdir, [pod_scrape_job(kubeconfig, good.namespace, bad.namespace)])
        started.callback(prometheus.stop)
        prometheus.start()
        operator = start_operator(
            run_operator,
            good.namespace,
            MODELROLL_NAMESPACES=f"{good.namespace},{bad.namespace}",
            MODELROLL_SERVER_IMAGE=SERVER_IMAGE,
            MODELROLL_PROMETHEUS_URL=prometheus.url,
        )

        def describe() -> str:
            loads = {t.namespace: t.load and (dict(t.load.codes), dict(t.load.versions)) for t in teams}
            states = {t.namespace: t.status() for t in teams}
            return f"status {states}\ntraffic {loads}\noperator log:\n{operator.log()[-3000:]}"

        for team in teams:
            team.deploy("v1", "stable")
        for team in teams:
            wait_for(stable_version_is(kubectl, team.namespace, NAME, "v1"), timeout=READY_TIMEOUT, message=describe)
            address = cluster_ip(kubectl, team.namespace, NAME)
            team.load = ServiceLoad(address, NAME, traffic_rows(), rate=RATE, max_seconds=600)
            started.callback(team.load.stop)
            team.load.start()

        # One Prometheus discovered the Pods of both namespaces, each target labelled with its own.
        def both_discovered_and_counted():
            targets = prometheus.active_targets()
            found = {t["labels"].get("namespace") for t in targets}
            own = all(
                t["labels"].get("namespace") == t["discoveredLabels"]["__meta_kubernetes_namespace"] for t in targets
            )
            counted = all(served_by_track(prometheus, t.namespace).get(("stable", "v1"), 0) > 0 for t in teams)
            return found == {good.namespace, bad.namespace} and own and counted

        wait_for(both_discovered_and_counted, timeout=60, message=lambda: f"targets {prometheus.active_targets()}")

        for team in teams:  # both canaries start together
            team.deploy("v2", team.canary)

        def rolled_back():
            s = bad.status()
            return s if (s.get("phase"), s.get("reason")) == ("Degraded", "AnalysisFailed") else None

        bad_status = wait_for(rolled_back, timeout=READY_TIMEOUT, message=describe)
        good_status = wait_for(
            stable_version_is(kubectl, good.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=describe
        )

        # The failing canary is judged on its own 5xx ...
        gate, errors, requests = error_gate(bad_status)
        assert gate["verdict"] == "Fail" and 0.1 < gate["value"] < 0.6, gate  # ~30 % of rows carry the unseen plan
        assert errors > 0 and requests >= MIN_SAMPLES, gate
        assert f"gate errorRate failed: value {gate['value']:.4g}" in bad_status["message"], bad_status["message"]
        assert bad_status["aborted"]["reason"] == "AnalysisFailed" and bad_status["stable"]["version"] == "v1"
        # ... and the good one on its own: no 5xx at all, though the other namespace's series with
        # the very same model_name, model_version and track labels were answering 500.
        run = good_status["analysis"]
        assert run["failed"] == 0 and run["passed"] >= 2, run
        gate, errors, requests = error_gate(good_status)
        assert gate["verdict"] == "Pass" and gate["value"] == 0 and errors == 0, gate
        assert requests >= MIN_SAMPLES, gate
        five_xx = {
            s["metric"]["namespace"]: float(s["value"][1])
            for s in prometheus.query(
                f'sum by (namespace) (last_over_time(modelroll_requests_total{{model_name="{NAME}",'
                'model_version="v2",track="canary",code=~"5.."}[10m]))'
            )
        }
        assert five_xx.get(bad.namespace, 0) > 0 and five_xx.get(good.namespace, 0) == 0, five_xx
        assert good.load is not None and bad.load is not None
        assert good.load.codes[500] == 0 and bad.load.codes[500] > 0, (good.load.codes, bad.load.codes)

        # Each object's Events and plugin view are its own.
        bad_events = {(e["type"], e["reason"], e["message"]) for e in events_of(kubectl, bad.namespace, NAME)}
        good_events = {(e["type"], e["reason"], e["message"]) for e in events_of(kubectl, good.namespace, NAME)}
        promoted_v2 = ("Normal", "Promoted", "v2 is now stable")
        assert promoted_v2 in good_events and promoted_v2 not in bad_events, (good_events, bad_events)
        assert any(e[:2] == ("Warning", "AnalysisFailed") for e in bad_events), bad_events
        assert not any(e[1] == "AnalysisFailed" for e in good_events), good_events
        assert "AnalysisFailed" in plugin(kubeconfig, "status", NAME, "-n", bad.namespace).stdout
        assert "AnalysisFailed" not in plugin(kubeconfig, "status", NAME, "-n", good.namespace).stdout

        # The failing one ends with stable at full weight and scale, the canary gone.
        wait_for(
            lambda: (
                (s := bad.status())["canary"]["replicas"] == 0
                and s["stable"]["readyReplicas"] == 1
                and s["weights"] == {"stable": 100, "canary": 0}
            ),
            timeout=READY_TIMEOUT,
            message=describe,
        )
        assert good.status()["stable"]["version"] == "v2" and bad.status()["stable"]["version"] == "v1"
