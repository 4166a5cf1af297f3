"""Builders for the Kubernetes objects a ModelDeployment owns (pure, no I/O).

Every child carries the modelroll labels, an owner reference to the ModelDeployment (so
deleting it garbage-collects everything) and a ``modelroll.io/spec-hash`` annotation: the
hash of what was built, which lets the apply step skip unchanged children without a
field-by-field comparison against server-defaulted objects.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modelroll_contract import (
    ENV_DIGEST,
    ENV_FEEDBACK_KEY,
    ENV_FORMAT,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BATCH_WAIT_MS,
    ENV_METHOD,
    ENV_MODEL,
    ENV_NAME,
    ENV_POD_IP,
    ENV_REFERENCE,
    ENV_SHADOW_CONFIG,
    ENV_TRACK,
    ENV_VERSION,
    ENV_WORKERS,
    FEEDBACK_SECRET_KEY,
    GRPC_PORT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_REVISION,
    LABEL_TRACK,
    LIVE_PATH,
    MANAGED_BY_VALUE,
    METRICS_PATH,
    MODEL_DIR,
    READY_PATH,
    SERVER_PORT,
    SHADOW_CONFIG_KEYS,
    TERMINATION_LOG,
    TRACK_STABLE,
)
from modelroll_contract.reference import REFERENCE_FILE

from .spec import ModelDeploymentSpec

API_GROUP = "modelroll.io"
API_VERSION = "modelroll.io/v1alpha1"
KIND = "ModelDeployment"
HASH_ANNOTATION = "modelroll.io/spec-hash"
SERVICE_PORT = 80
PVC_MOUNT = "/mnt/model-source"
REFERENCE_PVC_MOUNT = "/mnt/reference-source"
REFERENCE_PATH = f"{MODEL_DIR}/{REFERENCE_FILE}"  # spec.monitoring.drift's file, beside the model
# The init containers: each fetches one file and verifies its digest (modelroll-server fetch).
FETCH_MODEL = "fetch-model"
FETCH_REFERENCE = "fetch-reference"
FETCH_CONTAINERS = (FETCH_MODEL, FETCH_REFERENCE)
RUN_AS_USER = 65532  # the server image's non-root user
PRE_STOP_SECONDS = 5
STARTUP_SECONDS = 600  # the longest a model may take to load before the container restarts
SHADOW_DIR = "/etc/modelroll/shadow"  # ConfigMap NAME-shadow, mounted in every track's Pods
SHADOW_KEY = f"{TRACK_STABLE}.json"  # the only key written: a canary's Pods read canary.json, never there


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the children."""

    name: str
    namespace: str
    uid: str


def base_labels(owner: Owner) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_NAME: owner.name}


def selector_string(owner: Owner) -> str:
    """The label selector of every Pod of the ModelDeployment (for status.selector / HPA)."""
    return ",".join(f"{k}={v}" for k, v in base_labels(owner).items())


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def child_metadata(owner: Owner, name: str, track: str | None = None) -> dict[str, Any]:
    labels = base_labels(owner)
    if track:
        labels[LABEL_TRACK] = track
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` annotated with the hash of its own content."""
    digest = stable_hash(obj)[:16]
    meta = obj["metadata"]
    return {**obj, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), HASH_ANNOTATION: digest}}}


_RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _fetch_source(
    uri: str, volume_name: str = "model-source", mount_path: str = PVC_MOUNT
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The URI the init container fetches, plus the volume and mount a ``pvc://`` URI needs."""
    if not uri.startswith("pvc://"):
        return uri, [], []
    claim, _, path = uri[len("pvc://") :].partition("/")
    volume = {"name": volume_name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": volume_name, "mountPath": mount_path, "readOnly": True}
    return f"{mount_path}/{path}", [volume], [mount]


def build_pod_template(spec: ModelDeploymentSpec, owner: Owner, track: str, image: str) -> dict[str, Any]:
    """The Pod template of one track, labelled with its revision (a hash of the template)."""
    model, server = spec.model, spec.server
    model_path = f"{MODEL_DIR}/model.{model.format}"
    source, src_volumes, src_mounts = _fetch_source(model.uri)
    resources = dict(server.resources)
    pull_policy = {"imagePullPolicy": server.image_pull_policy} if server.image_pull_policy else {}
    fetch_env = [{"name": "HOME", "value": "/tmp"}]
    env_from = [{"secretRef": {"name": model.storage_secret}}] if model.storage_secret else []
    server_env = [
        {"name": ENV_MODEL, "value": model_path},
        {"name": ENV_NAME, "value": owner.name},
        {"name": ENV_VERSION, "value": model.version},
        {"name": ENV_TRACK, "value": ""},  # set below, after hashing
        {"name": ENV_SHADOW_CONFIG, "value": ""},  # SHADOW_DIR/<track>.json, set below, after hashing
        {"name": ENV_DIGEST, "value": model.digest},
        {"name": ENV_FORMAT, "value": model.format},
        {"name": ENV_METHOD, "value": model.method},
        {"name": ENV_WORKERS, "value": str(server.workers)},
        {"name": ENV_MAX_BATCH_SIZE, "value": str(server.batching.max_batch_size)},
        {"name": ENV_MAX_BATCH_WAIT_MS, "value": str(server.batching.max_latency_ms)},
        *([{"name": ENV_REFERENCE, "value": REFERENCE_PATH}] if spec.drift_reference_uri else []),
        # Late labels reach the Pod that answered (docs/server.md, "Live accuracy"): request ids
        # name this Pod's IP, signed with the key every Pod of both tracks shares, so a stable
        # Pod can verify a canary Pod's ids and forward labels to it, and back. Optional: a Pod
        # that starts without the Secret still serves, its ids local-only.
        {"name": ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": ENV_FEEDBACK_KEY,
            "valueFrom": {
                "secretKeyRef": {"name": feedback_secret_name(owner), "key": FEEDBACK_SECRET_KEY, "optional": True}
            },
        },
        *({"name": k, "value": v} for k, v in server.env),
    ]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": FETCH_MODEL,
                "image": image,
                **pull_policy,
                "args": ["fetch", source, model_path, "--digest", model.digest],
                "env": fetch_env,
                "envFrom": env_from,
                "volumeMounts": [{"name": "model", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
                + src_mounts,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": resources,
                "securityContext": _RESTRICTED,
            }
        ],
        "containers": [
            {
                "name": "server",
                "image": image,
                **pull_policy,
                "args": ["serve"],
                "env": server_env,
                "ports": [
                    {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
                    {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                ],
                # The server listens only once its model is loaded (a large model may take
                # minutes): liveness and readiness start when this first succeeds.
                "startupProbe": {
                    "httpGet": {"path": READY_PATH, "port": "http"},
                    "periodSeconds": 1,
                    "failureThreshold": STARTUP_SECONDS,
                },
                "readinessProbe": {
                    "httpGet": {"path": READY_PATH, "port": "http"},
                    "periodSeconds": 5,
                    "failureThreshold": 2,
                },
                "livenessProbe": {
                    "httpGet": {"path": LIVE_PATH, "port": "http"},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "volumeMounts": [
                    {"name": "model", "mountPath": MODEL_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "shadow", "mountPath": SHADOW_DIR, "readOnly": True},
                ],
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                # Endpoints drop a terminating Pod asynchronously; keep serving a few seconds so
                # no client is sent to a server that already stopped listening.
                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                "resources": resources,
                "securityContext": _RESTRICTED,
            }
        ],
        # preStop sleep + the server's own drain (MODELROLL_SERVER_GRACE_SECONDS, 25 s) fit in it
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + 30,
        # Always mounted, so that a shadow phase starting or ending changes only the ConfigMap,
        # never this template (which would roll the stable track mid-rollout); the kubelet
        # updates the files in place.
        "volumes": [
            {"name": "model", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "shadow", "configMap": {"name": shadow_config_name(owner), "optional": True}},
        ]
        + src_volumes,
    }
    if spec.drift_reference_uri:
        # A second init container, so a failure names the file (``fetch-reference: …``) and keeps
        # the fetch's reason: a digest mismatch is IntegrityMismatch, as for the model.
        assert spec.drift_reference_digest is not None  # the CRD requires it with referenceUri
        ref_source, ref_volumes, ref_mounts = _fetch_source(
            spec.drift_reference_uri, "reference-source", REFERENCE_PVC_MOUNT
        )
        fetch_model = pod_spec["initContainers"][0]
        pod_spec["initContainers"].append(
            {
                **fetch_model,
                "name": FETCH_REFERENCE,
                "args": ["fetch", ref_source, REFERENCE_PATH, "--digest", spec.drift_reference_digest],
                "volumeMounts": [{"name": "model", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
                + ref_mounts,
            }
        )
        pod_spec["volumes"] += ref_volumes
    if server.node_selector:
        pod_spec["nodeSelector"] = dict(server.node_selector)
    if server.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in server.tolerations]
    if server.service_account_name:
        pod_spec["serviceAccountName"] = server.service_account_name
    if server.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in server.image_pull_secrets]
    # The operator's own labels win: they select the Pods.
    labels = {**server.pod_labels, **base_labels(owner), LABEL_TRACK: track}
    # The revision hashes what the Pod runs, not which track runs it, so a canary revision
    # keeps its identity when it is promoted to the stable track.
    revision = stable_hash(
        {"spec": pod_spec, "labels": server.pod_labels, "annotations": server.pod_annotations, "version": model.version}
    )[:10]
    for container in pod_spec["containers"]:
        for env in container["env"]:
            if env["name"] == ENV_TRACK:
                env["value"] = track
            if env["name"] == ENV_SHADOW_CONFIG:
                env["value"] = f"{SHADOW_DIR}/{track}.json"
    return {
        "metadata": {
            "labels": {**labels, LABEL_REVISION: revision},
            "annotations": {
                **server.pod_annotations,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(SERVER_PORT),
                "prometheus.io/path": METRICS_PATH,
            },
        },
        "spec": pod_spec,
    }


def revision_of(template: dict[str, Any]) -> str:
    return str(template["metadata"]["labels"][LABEL_REVISION])


def build_deployment(
    spec: ModelDeploymentSpec,
    owner: Owner,
    track: str,
    template: dict[str, Any],
    replicas: int,
    recreate: bool = False,
) -> dict[str, Any]:
    """Deployment ``NAME-TRACK`` running ``template``. An HPA scales the ModelDeployment
    through its scale subresource, so ``replicas`` always comes from the planner."""
    rolling = spec.strategy.rolling
    dep_spec: dict[str, Any] = {
        "selector": {"matchLabels": {**base_labels(owner), LABEL_TRACK: track}},
        "template": template,
        "replicas": replicas,
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 2,
        # The canary track is recreated, never rolled, so a mid-rollout spec change cannot
        # run three revisions at once.
        "strategy": {"type": "Recreate"}
        if recreate
        else {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": rolling.max_surge, "maxUnavailable": rolling.max_unavailable},
        },
    }
    return with_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": child_metadata(owner, f"{owner.name}-{track}", track),
            "spec": dep_spec,
        }
    )


def build_service(owner: Owner, name: str, track: str | None) -> dict[str, Any]:
    """Service ``name`` selecting the ready Pods of ``track``, or of every track if None."""
    selector = base_labels(owner)
    if track:
        selector[LABEL_TRACK] = track
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": child_metadata(owner, name, track),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                    # HTTP/2 without TLS: meshes and gateways then route it as gRPC, not raw TCP
                    {
                        "name": "grpc",
                        "port": GRPC_PORT,
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "kubernetes.io/h2c",
                    },
                ],
            },
        }
    )


def shadow_config_name(owner: Owner) -> str:
    return f"{owner.name}-shadow"


def shadow_version(version: str, revision: str) -> str:
    """The canary's name in the stable's shadow series (``canary_version``): its model version,
    or its revision when the spec gives no version (the server needs one)."""
    return version or revision


def shadow_config(canary_ip: str, percent: int, version: str) -> dict[str, Any]:
    """What stable's servers read from ``stable.json``: the canary Service's ClusterIP (fixed for
    the Service's life, and needing no cluster DNS) and gRPC port, the share, the canary's name."""
    host = f"[{canary_ip}]" if ":" in canary_ip else canary_ip
    return dict(zip(SHADOW_CONFIG_KEYS, (f"{host}:{GRPC_PORT}", percent, version), strict=True))


def build_shadow_config(owner: Owner, config: dict[str, Any] | None) -> dict[str, Any]:
    """ConfigMap ``NAME-shadow``: key ``stable.json`` holds what the stable track's servers copy
    to the canary (modelroll_contract's SHADOW_CONFIG_KEYS) during a shadow phase, and is empty
    otherwise (shadowing off). Every ModelDeployment has one, so Pods never wait for it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":")) if config else ""
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": child_metadata(owner, shadow_config_name(owner)),
            "data": {SHADOW_KEY: text},
        }
    )


def feedback_secret_name(owner: Owner) -> str:
    return f"{owner.name}-feedback"


def build_feedback_secret(owner: Owner, key: str) -> dict[str, Any]:
    """Secret ``NAME-feedback``: the key the servers of every track sign and verify request ids
    with. ``key`` is random, drawn by the caller when the Secret is created (the planner draws no
    random numbers); it is created once and never written again, and immutable, so no Pod's key
    changes under it (a new key would orphan the labels of every id already answered)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(owner, feedback_secret_name(owner)),
        "type": "Opaque",
        "immutable": True,
        "data": {FEEDBACK_SECRET_KEY: base64.b64encode(key.encode()).decode()},
    }


def build_hpa(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any]:
    """HPA ``NAME`` scaling the ModelDeployment itself through its scale subresource."""
    auto = spec.autoscaling
    assert auto is not None
    return with_hash(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": child_metadata(owner, owner.name),
            "spec": {
                "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": owner.name},
                "minReplicas": auto.min_replicas,
                "maxReplicas": auto.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization},
                        },
                    }
                ],
            },
        }
    )
