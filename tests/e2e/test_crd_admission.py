"""The CRD on a real API server: it installs, defaults, refuses invalid objects naming the
field, scales through the scale subresource, and prints its columns.

No operator runs here: everything asserted is done by the API server from
crds/modeldeployment.yaml alone (OpenAPI validation, CEL rules, defaulting, subresources).
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import Kubectl, get_json, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_NAME = "modeldeployments.modelroll.io"
DIGEST = "sha256:" + "7" * 64


def manifest(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "modelroll.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def minimal_spec() -> dict[str, Any]:
    return {"model": {"uri": "file:///models/fraud/model.joblib", "digest": DIGEST}}


def apply(kubectl: Kubectl, namespace: str, text: str, check: bool = True) -> Any:
    return kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=text, check=check)


@pytest.fixture(autouse=True)
def _crds(install_crds: list[str]) -> None:
    assert CRD_NAME in install_crds


@pytest.fixture(scope="module")
def refusal_namespace(kubectl: Kubectl) -> Iterator[str]:
    """One namespace for all refusal cases: nothing is ever created in it (each case checks)."""
    name = f"t-refuse-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- installation ------------------------------------------------------------------------------


def test_crd_is_established_with_its_names(kubectl: Kubectl) -> None:
    crd = get_json(kubectl, "crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    accepted = crd["status"]["acceptedNames"]
    assert accepted["shortNames"] == ["mdep", "md"]
    assert accepted["categories"] == ["all", "modelroll"]
    resources = kubectl("api-resources", "--api-group=modelroll.io", "-o", "wide").stdout
    assert "modeldeployments" in resources and "mdep,md" in resources


def test_short_names_and_category_resolve(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, manifest("short", minimal_spec()))
    for resource in ("mdep", "md", "modeldeployment", "modelroll"):
        out = kubectl("get", resource, "-n", namespace, "-o", "name").stdout
        assert "modeldeployment.modelroll.io/short" in out, resource


# --- examples and defaults ----------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies_cleanly(kubectl: Kubectl, namespace: str, path: Path) -> None:
    proc = kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    assert "serverside-applied" in proc.stdout
    assert proc.stderr.strip() == ""  # no warnings either
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        stored = get_json(kubectl, "mdep", doc["metadata"]["name"], "-n", namespace)
        # Everything the example says is stored as written (defaults only add to it).
        assert _contains(stored["spec"], doc["spec"]), (stored["spec"], doc["spec"])


def _contains(stored: Any, written: Any) -> bool:
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in written.items())
    if isinstance(written, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(written)
            and all(_contains(s, w) for s, w in zip(stored, written, strict=True))
        )
    return bool(stored == written)


def test_defaults_of_a_minimal_object(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, manifest("minimal", minimal_spec()))
    spec = get_json(kubectl, "mdep", "minimal", "-n", namespace)["spec"]
    assert spec == {
        "model": {
            "uri": "file:///models/fraud/model.joblib",
            "digest": DIGEST,
            "format": "joblib",
            "method": "predict",
        },
        "replicas": 1,
        "progressDeadlineSeconds": 600,
        "revisionHistoryLimit": 10,
        "server": {"workers": 1, "batching": {"maxBatchSize": 64, "maxLatencyMs": 0}},
        "strategy": {"type": "Rolling"},
    }


def test_defaults_inside_strategies(kubectl: Kubectl, namespace: str) -> None:
    spec = minimal_spec()
    spec["strategy"] = {"type": "Rolling", "rolling": {}}
    apply(kubectl, namespace, manifest("rolling", spec))
    spec = minimal_spec()
    spec["strategy"] = {
        "type": "Canary",
        "canary": {
            "steps": [{"setWeight": 20}, {"pause": {}}],
            "analysis": {"gates": [{"builtin": "errorRate", "max": 0.05}]},
        },
    }
    spec["autoscaling"] = {"maxReplicas": 5}
    apply(kubectl, namespace, manifest("canary", spec))
    spec = minimal_spec()
    spec["strategy"] = {"type": "BlueGreen", "blueGreen": {}}
    apply(kubectl, namespace, manifest("bluegreen", spec))

    rolling = get_json(kubectl, "mdep", "rolling", "-n", namespace)["spec"]
    assert rolling["strategy"]["rolling"] == {"maxSurge": "25%", "maxUnavailable": 0}
    canary = get_json(kubectl, "mdep", "canary", "-n", namespace)["spec"]
    assert canary["strategy"]["canary"]["steps"] == [{"setWeight": 20}, {"pause": {}}]
    assert canary["strategy"]["canary"]["analysis"] == {
        "interval": "30s",
        "failureLimit": 2,
        "consecutiveErrorLimit": 4,
        "minSamples": 100,
        "significance": 0.01,
        "inconclusiveLimit": 10,
        "inconclusiveAction": "Pause",
        "gates": [{"builtin": "errorRate", "max": 0.05}],
    }
    assert canary["autoscaling"] == {
        "minReplicas": 1,
        "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 80,
    }
    bluegreen = get_json(kubectl, "mdep", "bluegreen", "-n", namespace)["spec"]
    assert bluegreen["strategy"]["blueGreen"] == {"scaleDownDelaySeconds": 30}


# --- refusals -----------------------------------------------------------------------------------

CANARY_STEPS = "steps: [{setWeight: 10}, {pause: {}}]"


def canary_with_gates(gates: str) -> str:
    return f"""
        strategy:
          type: Canary
          canary:
            {CANARY_STEPS}
            analysis:
              gates: {gates}
        """


# (id, spec fields replacing those of a valid minimal spec, field path the error must name,
#  words of the message)
INVALID: list[tuple[str, str, str, str]] = [
    (
        "digest-not-sha256",
        "model: {uri: 'file:///m/model.joblib', digest: 'sha256:abc123'}",
        "spec.model.digest",
        "should match",
    ),
    (
        "digest-upper-case-hex",
        "model: {uri: 'file:///m/model.joblib', digest: 'sha256:" + "A" * 64 + "'}",
        "spec.model.digest",
        "should match",
    ),
    (
        "uri-bare-path",
        "model: {uri: /models/model.joblib, digest: '" + DIGEST + "'}",
        "spec.model.uri",
        "a bare path such as /models/m.joblib is not allowed",
    ),
    (
        "uri-ftp-scheme",
        "model: {uri: 'ftp://host/model.joblib', digest: '" + DIGEST + "'}",
        "spec.model.uri",
        "spec.model.uri must be file:///abs/path",
    ),
    (
        "format-unknown",
        "model: {uri: 'file:///m/model.onnx', digest: '" + DIGEST + "', format: onnx}",
        "spec.model.format",
        'Unsupported value: "onnx"',
    ),
    (
        "method-unknown",
        "model: {uri: 'file:///m/model.joblib', digest: '" + DIGEST + "', method: transform}",
        "spec.model.method",
        'Unsupported value: "transform"',
    ),
    ("replicas-negative", "replicas: -1", "spec.replicas", "greater than or equal to 0"),
    ("unknown-field", "replicaz: 3", ".spec.replicaz", "field not declared in schema"),
    (
        "weight-150",
        "strategy: {type: Canary, canary: {steps: [{setWeight: 150}]}}",
        "spec.strategy.canary.steps[0].setWeight",
        "less than or equal to 100",
    ),
    (
        "weights-decreasing",
        "strategy: {type: Canary, canary: {steps: [{setWeight: 50}, {pause: {}}, {setWeight: 20}]}}",
        "spec.strategy.canary.steps",
        "setWeight values must not decrease",
    ),
    (
        "step-with-setWeight-and-pause",
        "strategy: {type: Canary, canary: {steps: [{setWeight: 10}, {setWeight: 20, pause: {duration: 1m}}]}}",
        "spec.strategy.canary.steps[1]",
        "must set exactly one of setWeight or pause",
    ),
    (
        "step-empty",
        "strategy: {type: Canary, canary: {steps: [{}]}}",
        "spec.strategy.canary.steps[0]",
        "must set exactly one of setWeight or pause",
    ),
    (
        "pause-duration-words",
        "strategy: {type: Canary, canary: {steps: [{setWeight: 10}, {pause: {duration: 2 minutes}}]}}",
        "spec.strategy.canary.steps[1].pause.duration",
        "must be a positive duration",
    ),
    (
        "pause-duration-zero",
        "strategy: {type: Canary, canary: {steps: [{pause: {duration: 0s}}]}}",
        "spec.strategy.canary.steps[0].pause.duration",
        "must be a positive duration",
    ),
    (
        "canary-block-with-type-rolling",
        f"strategy: {{type: Rolling, canary: {{{CANARY_STEPS}}}}}",
        "spec.strategy.canary",
        "spec.strategy.canary is only allowed when spec.strategy.type is Canary",
    ),
    (
        "rolling-block-with-type-canary",
        f"strategy: {{type: Canary, rolling: {{maxSurge: 1}}, canary: {{{CANARY_STEPS}}}}}",
        "spec.strategy.rolling",
        "spec.strategy.rolling is only allowed when spec.strategy.type is Rolling",
    ),
    (
        "bluegreen-block-with-type-canary",
        f"strategy: {{type: Canary, blueGreen: {{}}, canary: {{{CANARY_STEPS}}}}}",
        "spec.strategy.blueGreen",
        "spec.strategy.blueGreen is only allowed when spec.strategy.type is BlueGreen",
    ),
    (
        "canary-without-steps",
        "strategy: {type: Canary}",
        "spec.strategy.canary",
        "spec.strategy.canary.steps is required when spec.strategy.type is Canary",
    ),
    (
        "rolling-surge-and-unavailable-zero",
        "strategy: {type: Rolling, rolling: {maxSurge: 0, maxUnavailable: '0%'}}",
        "spec.strategy.rolling",
        "must not both be zero",
    ),
    (
        "rolling-maxSurge-not-a-percentage",
        "strategy: {type: Rolling, rolling: {maxSurge: '25'}}",
        "spec.strategy.rolling.maxSurge",
        "should match",
    ),
    (
        "gate-errorRate-without-max",
        canary_with_gates("[{builtin: errorRate}]"),
        "spec.strategy.canary.analysis.gates[0].max",
        "max is required for builtin errorRate",
    ),
    (
        "gate-errorRate-max-above-1",
        canary_with_gates("[{builtin: errorRate, max: 5}]"),
        "spec.strategy.canary.analysis.gates[0].max",
        "must be between 0 and 1",
    ),
    (
        "gate-latencyP99-max-and-ratio",
        canary_with_gates("[{builtin: latencyP99, max: 200, maxRatioToStable: 1.5}]"),
        "spec.strategy.canary.analysis.gates[0]",
        "must set exactly one of max or maxRatioToStable",
    ),
    (
        "gate-predictionShift-without-maxPSI",
        canary_with_gates("[{builtin: errorRate, max: 0.1}, {builtin: predictionShift}]"),
        "spec.strategy.canary.analysis.gates[1].maxPSI",
        "maxPSI is required for builtin predictionShift",
    ),
    (
        "gate-maxPSI-on-errorRate",
        canary_with_gates("[{builtin: errorRate, max: 0.1, maxPSI: 0.2}]"),
        "spec.strategy.canary.analysis.gates[0].maxPSI",
        "maxPSI is only allowed with builtin predictionShift",
    ),
    (
        "gate-errorRate-detect-not-above-max",
        canary_with_gates("[{builtin: errorRate, max: 0.05, detect: 0.05}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "detect for builtin errorRate must be above max",
    ),
    (
        "gate-errorRate-detect-not-above-maxIncrease",
        canary_with_gates("[{builtin: errorRate, maxIncrease: 0.02, detect: 0.01}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "without max, above maxIncrease",
    ),
    (
        "gate-errorRate-detect-above-1",
        canary_with_gates("[{builtin: errorRate, max: 0.05, detect: 2}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "is a share and must be between 0 and 1",
    ),
    (
        "gate-predictionShift-detect-not-above-maxPSI",
        canary_with_gates("[{builtin: predictionShift, maxPSI: 0.2, detect: 0.1}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "detect for builtin predictionShift must be above maxPSI",
    ),
    (
        "gate-detect-on-latencyP99",
        canary_with_gates("[{builtin: latencyP99, max: 200, detect: 50}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "detect is only allowed with builtin errorRate, predictionShift or featureDrift",
    ),
    (
        "gate-featureDrift-without-maxPSI",
        canary_with_gates("[{builtin: featureDrift, features: [age]}]"),
        "spec.strategy.canary.analysis.gates[0].maxPSI",
        "maxPSI is required for builtin featureDrift",
    ),
    (
        "gate-featureDrift-maxPSI-zero",
        canary_with_gates("[{builtin: featureDrift, maxPSI: 0}]"),
        "spec.strategy.canary.analysis.gates[0].maxPSI",
        "maxPSI for builtin featureDrift must be above 0",
    ),
    (
        "gate-featureDrift-detect-not-above-maxPSI",
        canary_with_gates("[{builtin: featureDrift, maxPSI: 0.2, detect: 0.1}]"),
        "spec.strategy.canary.analysis.gates[0].detect",
        "detect for builtin featureDrift must be above maxPSI",
    ),
    (
        "gate-features-on-predictionShift",
        canary_with_gates("[{builtin: predictionShift, maxPSI: 0.2, features: [age]}]"),
        "spec.strategy.canary.analysis.gates[0].features",
        "features is only allowed with builtin featureDrift",
    ),
    (
        "gate-liveAccuracy-without-threshold",
        canary_with_gates("[{builtin: liveAccuracy, minLabels: 50}]"),
        "spec.strategy.canary.analysis.gates[0]",
        "with builtin liveAccuracy must set min or maxDrop (classifiers), or maxMeanAbsError (regressors)",
    ),
    (
        "gate-liveAccuracy-classifier-and-regressor",
        canary_with_gates("[{builtin: liveAccuracy, maxDrop: 0.02, maxMeanAbsError: 3}]"),
        "spec.strategy.canary.analysis.gates[0].maxMeanAbsError",
        "cannot be combined with min or maxDrop",
    ),
    (
        "gate-liveAccuracy-min-above-1",
        canary_with_gates("[{builtin: liveAccuracy, min: 1.5}]"),
        "spec.strategy.canary.analysis.gates[0].min",
        "less than or equal to 1",
    ),
    (
        "gate-liveAccuracy-maxDrop-above-1",
        "strategy: {type: BlueGreen, blueGreen: {prePromotionAnalysis: "
        "{gates: [{builtin: liveAccuracy, maxDrop: 2}]}}}",
        "spec.strategy.blueGreen.prePromotionAnalysis.gates[0].maxDrop",
        "less than or equal to 1",
    ),
    (
        "gate-minLabels-on-errorRate",
        canary_with_gates("[{builtin: errorRate, max: 0.1, minLabels: 10}]"),
        "spec.strategy.canary.analysis.gates[0].minLabels",
        "minLabels is only allowed with builtin liveAccuracy",
    ),
    (
        "gate-maxIncrease-on-latencyP99",
        canary_with_gates("[{builtin: latencyP99, max: 200, maxIncrease: 0.1}]"),
        "spec.strategy.canary.analysis.gates[0].maxIncrease",
        "maxIncrease is only allowed with builtin errorRate",
    ),
    (
        "analysis-significance-above-0.2",
        f"""
        strategy:
          type: Canary
          canary:
            {CANARY_STEPS}
            analysis: {{significance: 0.5, gates: [{{builtin: errorRate, max: 0.1}}]}}
        """,
        "spec.strategy.canary.analysis.significance",
        "less than or equal to 0.2",
    ),
    (
        "gate-builtin-and-prometheus",
        canary_with_gates("[{builtin: errorRate, max: 0.1, prometheus: {query: up, successCondition: 'result > 0'}}]"),
        "spec.strategy.canary.analysis.gates[0]",
        "must set exactly one of builtin or prometheus",
    ),
    (
        "gate-prometheus-empty-condition",
        canary_with_gates("[{prometheus: {query: up, successCondition: ''}}]"),
        "spec.strategy.canary.analysis.gates[0].prometheus.successCondition",
        "at least 1 chars long",
    ),
    (
        "gate-names-duplicated",
        canary_with_gates(
            "[{name: a, builtin: errorRate, max: 0.1}, {name: a, builtin: predictionShift, maxPSI: 0.2}]"
        ),
        "spec.strategy.canary.analysis.gates",
        "name must be unique",
    ),
    (
        "bluegreen-postPromotionAnalysis-gate",
        "strategy: {type: BlueGreen, blueGreen: {postPromotionAnalysis: {gates: [{builtin: latencyP99}]}}}",
        "spec.strategy.blueGreen.postPromotionAnalysis.gates[0]",
        "must set exactly one of max or maxRatioToStable",
    ),
    (
        "analysis-interval-too-short",
        f"""
        strategy:
          type: Canary
          canary:
            {CANARY_STEPS}
            analysis: {{interval: 100ms, gates: [{{builtin: errorRate, max: 0.1}}]}}
        """,
        "spec.strategy.canary.analysis.interval",
        "must be a duration of at least 1s",
    ),
    (
        "autoscaling-min-above-max",
        "autoscaling: {minReplicas: 5, maxReplicas: 2}",
        "spec.autoscaling.minReplicas",
        "must be less than or equal to spec.autoscaling.maxReplicas",
    ),
    (
        "shadow-without-analysis",
        f"""
        strategy: {{type: Canary, canary: {{{CANARY_STEPS}}}}}
        trafficRouting: {{shadow: {{percent: 10}}}}
        """,
        "spec.trafficRouting.shadow",
        "requires spec.strategy.canary.analysis",
    ),
    (
        "agreement-without-shadow",
        canary_with_gates("[{builtin: predictionAgreement, minAgreement: 0.99}]"),
        "spec.strategy.canary.analysis.gates",
        "with builtin predictionAgreement requires spec.trafficRouting.shadow",
    ),
    (
        "agreement-with-both-thresholds",
        canary_with_gates("[{builtin: predictionAgreement, minAgreement: 0.99, maxMeanAbsDifference: 1}]")
        + "trafficRouting: {shadow: {percent: 10}}\n",
        "spec.strategy.canary.analysis.gates[0]",
        "must set exactly one of minAgreement (classifiers) or maxMeanAbsDifference (regressors)",
    ),
    (
        "shadow-with-rolling",
        "trafficRouting: {gatewayAPI: {parentRefs: [{name: gw}]}, shadow: {percent: 10}}",
        "spec.trafficRouting.shadow",
        "only allowed when spec.strategy.type is Canary",
    ),
    (
        "hostname-invalid",
        "trafficRouting: {gatewayAPI: {parentRefs: [{name: gw}], hostnames: [Bad_Host]}}",
        "spec.trafficRouting.gatewayAPI.hostnames[0]",
        "should match",
    ),
    (
        "requests-above-limits",
        "server: {resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}",
        "spec.server.resources",
        "spec.server.resources.requests.memory must not exceed",
    ),
    (
        "toleration-seconds-without-NoExecute",
        "server: {tolerations: [{key: gpu, operator: Exists, tolerationSeconds: 30}]}",
        "spec.server.tolerations[0].tolerationSeconds",
        "only allowed with effect NoExecute",
    ),
    (
        "env-name-not-identifier",
        "server: {env: [{name: 'MY-VAR', value: x}]}",
        "spec.server.env[0].name",
        "should match",
    ),
    (
        "podLabels-reserved-key",
        "server: {podLabels: {modelroll.io/track: canary}}",
        "spec.server.podLabels",
        "must not set modelroll.io/*",
    ),
    (
        "podLabels-invalid-key",
        "server: {podLabels: {'team name': fraud}}",
        "spec.server.podLabels",
        "keys must be label keys",
    ),
    (
        "podAnnotations-reserved-key",
        "server: {podAnnotations: {prometheus.io/port: '9999'}}",
        "spec.server.podAnnotations",
        "must not set modelroll.io/* or prometheus.io/*",
    ),
    (
        "drift-reference-bare-path",
        f"monitoring: {{drift: {{referenceUri: /data/reference.json, referenceDigest: '{DIGEST}'}}}}",
        "spec.monitoring.drift.referenceUri",
        "a bare path is not allowed",
    ),
    *(
        (
            f"inconclusive-limit-{case}",
            f"""
            strategy:
              type: Canary
              canary:
                {CANARY_STEPS}
                analysis:
                  {field}: {value}
                  gates: [{{builtin: errorRate, max: 0.01}}]
            """,
            f"spec.strategy.canary.analysis.{field}",
            words,
        )
        for case, field, value, words in (
            ("zero", "inconclusiveLimit", "0", "should be greater than or equal to 1"),
            ("not-a-duration", "inconclusiveLimit", "ten", "should match"),
            (
                "under-a-second",
                "inconclusiveLimit",
                "500ms",
                "must be a count of at least 1 or a duration of at least 1s",
            ),
            ("unknown-action", "inconclusiveAction", "Wait", "supported values"),
        )
    ),
]


@pytest.mark.parametrize(("case", "spec_yaml", "field", "words"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_manifest_is_refused(
    kubectl: Kubectl, refusal_namespace: str, case: str, spec_yaml: str, field: str, words: str
) -> None:
    namespace = refusal_namespace
    name = case.lower()  # one name per case, so a wrongly accepted case cannot mask another
    spec = minimal_spec()
    spec.update(yaml.safe_load(textwrap.dedent(spec_yaml)))
    proc = apply(kubectl, namespace, manifest(name, spec), check=False)
    assert proc.returncode != 0, f"accepted: {spec}"
    assert f"{field}:" in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr
    assert kubectl("get", "mdep", name, "-n", namespace, check=False).returncode != 0


def test_metadata_name_too_long_for_child_names(kubectl: Kubectl, namespace: str) -> None:
    proc = apply(kubectl, namespace, manifest("m" * 56, minimal_spec()), check=False)
    assert proc.returncode != 0
    assert "metadata.name must be a DNS-1035 label" in proc.stderr
    apply(kubectl, namespace, manifest("m" * 55, minimal_spec()))


def test_every_invalid_case_is_distinct() -> None:
    assert len(INVALID) >= 12
    assert len({case[0] for case in INVALID}) == len(INVALID)
    assert len({case[1] for case in INVALID}) == len(INVALID)


# --- a valid object with every optional block still goes through ---------------------------------

FULL_SPEC = """
model:
  uri: s3://models/fraud/v8/model.skops
  digest: {digest}
  format: skops
  version: v8.1_rc-2
  method: predict_proba
  storageSecretRef: {{name: s3-creds}}
replicas: 4
progressDeadlineSeconds: 120
revisionHistoryLimit: 3
server:
  image: registry.example.com/modelroll-server:0.1.0
  imagePullPolicy: IfNotPresent
  workers: 2
  batching: {{maxBatchSize: 128, maxLatencyMs: 0}}
  resources:
    requests: {{cpu: 500m, memory: 512Mi}}
    limits: {{cpu: 2, memory: 1Gi}}
  env: [{{name: OMP_NUM_THREADS, value: "1"}}]
  nodeSelector: {{kubernetes.io/arch: amd64}}
  tolerations:
    - {{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}}
    - {{operator: Exists}}
    - {{key: spot, operator: Exists, effect: NoExecute, tolerationSeconds: 60}}
  podLabels: {{team: fraud, example.com/cost-center: ml-42}}
  podAnnotations: {{example.com/owner: "fraud-team@example.com"}}
  serviceAccountName: fraud-model
  imagePullSecrets: [{{name: registry-creds}}]
strategy:
  type: Canary
  canary:
    steps:
      - setWeight: 0
      - pause: {{duration: 1h30m}}
      - setWeight: 25
      - setWeight: 25
      - pause: {{duration: 1.5m}}
      - setWeight: 100
    analysis:
      interval: 1m
      failureLimit: 0
      consecutiveErrorLimit: 10
      inconclusiveLimit: 15m
      inconclusiveAction: Abort
      minSamples: 0
      significance: 0.05
      prometheusUrl: http://prometheus.monitoring:9090
      gates:
        - {{name: errors, builtin: errorRate, max: 0}}
        - {{name: increase, builtin: errorRate, maxIncrease: 0.01, detect: 0.05}}
        - {{name: both, builtin: errorRate, max: 0.02, maxIncrease: 0.01, detect: 0.05}}
        - {{builtin: latencyP99, max: 250}}
        - {{builtin: latencyP99, maxRatioToStable: 1.25}}
        - {{builtin: predictionShift, maxPSI: 0.1, detect: 0.3}}
        - name: business-kpi
          prometheus:
            query: sum(rate(fraud_flagged_total[5m]))
            successCondition: result < 0.05
trafficRouting:
  gatewayAPI:
    parentRefs: [{{name: public-gw, namespace: gateways, sectionName: https, port: 443}}]
    hostnames: [fraud.example.com, "*.fraud.example.com"]
  shadow: {{percent: 20}}
autoscaling: {{minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 70}}
monitoring:
  drift: {{referenceUri: "https://models.example.com/fraud/v8/reference.json", referenceDigest: "{digest}"}}
"""


def test_full_spec_with_every_block_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    spec = yaml.safe_load(FULL_SPEC.format(digest=DIGEST))
    apply(kubectl, namespace, manifest("full", spec))
    stored = get_json(kubectl, "mdep", "full", "-n", namespace)["spec"]
    assert _contains(stored, spec)


# --- subresources and printer columns -----------------------------------------------------------


def test_scale_subresource(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, manifest("scaled", minimal_spec()))
    kubectl("scale", "mdep", "scaled", "-n", namespace, "--replicas=3")
    assert get_json(kubectl, "mdep", "scaled", "-n", namespace)["spec"]["replicas"] == 3

    status = {"status": {"replicas": 2, "selector": "modelroll.io/name=scaled"}}
    kubectl(
        "patch", "mdep", "scaled", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    scale = get_json(kubectl, "mdep", "scaled", "-n", namespace, "--subresource=scale")
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 2, "selector": "modelroll.io/name=scaled"}

    proc = kubectl("scale", "mdep", "scaled", "-n", namespace, "--replicas=-1", check=False)
    assert proc.returncode != 0


def test_status_is_validated(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, manifest("st", minimal_spec()))
    proc = kubectl(
        "patch", "mdep", "st", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Exploded"}}), check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "status.phase" in proc.stderr
    # Fields the schema does not know yet are kept (x-kubernetes-preserve-unknown-fields).
    kubectl(
        "patch", "mdep", "st", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Healthy", "futureField": {"a": 1}}}),
    )  # fmt: skip
    status = get_json(kubectl, "mdep", "st", "-n", namespace)["status"]
    assert status == {"phase": "Healthy", "futureField": {"a": 1}}


def test_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    spec = minimal_spec()
    spec["strategy"] = {"type": "Canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}
    apply(kubectl, namespace, manifest("cols", spec))
    status = {
        "status": {
            "phase": "Progressing",
            "stable": {"version": "v6"},
            "canary": {"version": "v7"},
            "weights": {"stable": 90, "canary": 10},
            "ready": "3/4",
            "message": "step 1/2: canary at 10%",
        }
    }
    kubectl(
        "patch", "mdep", "cols", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    lines = kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "PHASE", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "READY", "AGE",
    ]  # fmt: skip
    row = lines[1].split()
    assert row[:7] == ["cols", "Progressing", "Canary", "v6", "v7", "10", "3/4"]
    wide = kubectl("get", "mdep", "cols", "-n", namespace, "-o", "wide").stdout
    assert "MESSAGE" in wide and "step 1/2: canary at 10%" in wide


def test_spec_is_not_writable_through_status(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, manifest("sub", minimal_spec()))
    patch = {"spec": {"replicas": 7}, "status": {"phase": "Pending"}}
    kubectl(
        "patch", "mdep", "sub", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip
    stored = get_json(kubectl, "mdep", "sub", "-n", namespace)
    assert stored["spec"]["replicas"] == 1
    assert stored["status"]["phase"] == "Pending"
    # ...and status is not writable through the main resource.
    kubectl(
        "patch", "mdep", "sub", "-n", namespace, "--type=merge",
        "-p", json.dumps({"status": {"phase": "Failed"}}),
    )  # fmt: skip
    assert get_json(kubectl, "mdep", "sub", "-n", namespace)["status"]["phase"] == "Pending"


def test_example_manifests_are_unchanged_by_a_reapply(kubectl: Kubectl, namespace: str) -> None:
    # GitOps tools re-apply the same file: no generation bump, no conflict.
    path = ROOT / "examples" / "fraud-rolling.yaml"
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    before = get_json(kubectl, "mdep", name, "-n", namespace)["metadata"]["generation"]
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    after = get_json(kubectl, "mdep", name, "-n", namespace)["metadata"]["generation"]
    assert before == after == 1


def test_kubectl_explain_shows_the_descriptions(kubectl: Kubectl) -> None:
    # The API server publishes a new CRD's OpenAPI a moment after it is Established.
    out = wait_for(
        lambda: kubectl("explain", "mdep.spec.strategy.canary.steps", check=False).stdout,
        timeout=30,
        message="kubectl explain mdep.spec.strategy.canary.steps",
    )
    assert "exactly one of setWeight or pause" in out
    assert "setWeight\t<integer>" in out and "pause\t<Object>" in out
    out = kubectl("explain", "mdep.spec.model.digest").stdout
    assert "sha256" in out
