"""inconclusiveLimit end to end: too little traffic pauses the rollout for a person, and
`kubectl modelroll resume` restarts the count.

The parts are test_analysis.py's (the real node, the server image, its own Prometheus, the
operator); the canary is a good model, so once traffic is back the resumed rollout promotes.
"""

from __future__ import annotations

import pytest

from tests.e2e.operator_helpers import apply, events_of, plugin, stable_version_is
from tests.e2e.real_node import ServiceLoad, real_manifest
from tests.e2e.test_analysis import (  # the parts of the analysis tests
    MIN_SAMPLES,
    NAME,
    RATE,
    READY_TIMEOUT,
    models,  # noqa: F401 - a fixture
    rig,  # noqa: F401 - a fixture
    strategy,
    traffic_rows,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
LIMIT = 3


def test_too_little_traffic_pauses_for_a_person_and_resume_restarts_the_count(
    kubectl,
    kubeconfig,
    rig,  # noqa: F811 - the fixture imported above
):
    r = rig("good", rate=2.0)  # about 5 canary requests a window, minSamples 80
    bounded = strategy()
    bounded["canary"]["analysis"]["inconclusiveLimit"] = LIMIT
    uri, digest = r.store.put(f"{r.namespace}-good.joblib", r.models["good"])
    apply(kubectl, r.namespace, real_manifest(NAME, uri, digest, "v2", 1, strategy=bounded))

    def paused():
        s = r.status()
        return s if (s.get("phase"), s.get("reason")) == ("Paused", "AnalysisInconclusive") else None

    status = wait_for(paused, timeout=READY_TIMEOUT, message=r.describe)
    run = status["analysis"]
    assert run["outcome"] == "Inconclusive" and run["consecutiveInconclusive"] == LIMIT, run
    assert run["passed"] == 0 and run["failed"] == 0 and run["inconclusive"] >= LIMIT
    assert f"{LIMIT} Inconclusive measurements in a row, inconclusiveLimit {LIMIT}" in status["message"]
    assert f"need {MIN_SAMPLES} canary requests in the window, have" in status["message"]
    assert f"`kubectl modelroll resume {NAME}` restarts the count" in status["message"]
    assert status["weights"] == {"stable": 50, "canary": 50} and status["stable"]["version"] == "v1"
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "AnalysisInconclusive")
    warned = [e for e in events_of(kubectl, r.namespace, NAME) if e["reason"] == "AnalysisInconclusive"]
    assert any(e["type"] == "Warning" and "inconclusiveLimit" in e["message"] for e in warned), warned
    assert "Outcome:   Inconclusive" in plugin(kubeconfig, "status", NAME, "-n", r.namespace).stdout

    # Traffic picks up and a person resumes: the count starts again, the analysis measures
    # again (it had stopped), passes, and v2 is promoted.
    more = ServiceLoad(r.address, NAME, traffic_rows(), rate=RATE, max_seconds=300).start()
    try:
        plugin(kubeconfig, "resume", NAME, "-n", r.namespace)
        resumed = wait_for(
            lambda: (s := r.status()).get("acknowledged", {}).get("resume") and s, timeout=30, message=r.describe
        )
        assert resumed["analysis"].get("outcome") is None, resumed["analysis"]
        reasons = {e["reason"] for e in events_of(kubectl, r.namespace, NAME)}
        assert {"Resumed", "AnalysisResumed"} <= reasons, reasons
        status = wait_for(
            stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=r.describe
        )
    finally:
        more.stop()
    assert status["analysis"]["passed"] >= 2 and status["analysis"]["failed"] == 0
