"""Names shared by the operator and the inference server (no I/O, no dependencies).

The operator builds Pods that run the server and queries Prometheus for the server's
metrics; both sides import these constants so a rename cannot split them apart, and
neither image has to install the other's dependencies.
"""

# --- Labels the operator puts on every child and the server puts on every metric ---------
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "modelroll"
LABEL_NAME = "modelroll.io/name"
LABEL_TRACK = "modelroll.io/track"
LABEL_REVISION = "modelroll.io/revision"

TRACK_STABLE = "stable"
TRACK_CANARY = "canary"
TRACKS = (TRACK_STABLE, TRACK_CANARY)

# --- The server's network contract --------------------------------------------------------
SERVER_PORT = 8080
GRPC_PORT = 8081  # the Open Inference Protocol over gRPC (MLServer and KServe use 8081 too)
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
TERMINATION_LOG = "/dev/termination-log"
MODEL_DIR = "/models"

# --- What a model is and what it answers (the CRD's spec.model.format/method enums agree: a
# unit test compares them) ---------------------------------------------------------------
MODEL_FORMATS = ("joblib", "pickle", "skops")
METHOD_PREDICT = "predict"
METHOD_PREDICT_PROBA = "predict_proba"
METHODS = (METHOD_PREDICT, METHOD_PREDICT_PROBA)

# --- Why a server container stopped: its exit code says it, its termination message shows it -
# The message is one line, "<Reason>: <detail>"; the operator takes the reason from the exit
# code (never from words in the detail: a 404 on a URL containing "sha256" is no integrity
# failure) and shows the detail.
REASON_BAD_CONFIGURATION = "BadConfiguration"
REASON_MODEL_LOAD_FAILED = "ModelLoadFailed"
REASON_INTEGRITY_MISMATCH = "IntegrityMismatch"  # the artifact's digest is not the one pinned
REASON_FETCH_FAILED = "FetchFailed"
EXIT_BAD_CONFIGURATION = 2
EXIT_MODEL_LOAD_FAILED = 3
EXIT_INTEGRITY_MISMATCH = 4
EXIT_FETCH_FAILED = 5
REASON_BY_EXIT_CODE = {
    EXIT_BAD_CONFIGURATION: REASON_BAD_CONFIGURATION,
    EXIT_MODEL_LOAD_FAILED: REASON_MODEL_LOAD_FAILED,
    EXIT_INTEGRITY_MISMATCH: REASON_INTEGRITY_MISMATCH,
    EXIT_FETCH_FAILED: REASON_FETCH_FAILED,
}
EXIT_CODE_BY_REASON = {reason: code for code, reason in REASON_BY_EXIT_CODE.items()}


def termination_message(reason: str, detail: str) -> str:
    """The one line a failed container leaves in its termination log."""
    return f"{reason}: {detail}"


def termination_detail(message: str) -> str:
    """The detail of a termination message (the whole text if it has no known reason prefix)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head in EXIT_CODE_BY_REASON else message


# --- Server configuration from the environment (the operator sets these on the container) -
ENV_PREFIX = "MODELROLL_SERVER_"
ENV_MODEL = "MODELROLL_SERVER_MODEL"
ENV_NAME = "MODELROLL_SERVER_NAME"
ENV_VERSION = "MODELROLL_SERVER_VERSION"
ENV_TRACK = "MODELROLL_SERVER_TRACK"
ENV_PORT = "MODELROLL_SERVER_PORT"
ENV_GRPC_PORT = "MODELROLL_SERVER_GRPC_PORT"  # 0: no gRPC
ENV_WORKERS = "MODELROLL_SERVER_WORKERS"
ENV_MAX_BATCH_SIZE = "MODELROLL_SERVER_MAX_BATCH_SIZE"
ENV_MAX_BATCH_WAIT_MS = "MODELROLL_SERVER_MAX_BATCH_WAIT_MS"
ENV_METHOD = "MODELROLL_SERVER_METHOD"
ENV_DIGEST = "MODELROLL_SERVER_DIGEST"
ENV_FORMAT = "MODELROLL_SERVER_FORMAT"
ENV_TRUSTED_TYPES = "MODELROLL_SERVER_TRUSTED_TYPES"  # extra types a skops file may hold, comma-separated
ENV_HOST = "MODELROLL_SERVER_HOST"
ENV_MAX_BODY_BYTES = "MODELROLL_SERVER_MAX_BODY_BYTES"
ENV_GRACE_SECONDS = "MODELROLL_SERVER_GRACE_SECONDS"  # keep below terminationGracePeriodSeconds
ENV_TERMINATION_LOG = "MODELROLL_SERVER_TERMINATION_LOG"
ENV_LOG_LEVEL = "MODELROLL_SERVER_LOG_LEVEL"
ENV_SHADOW_CONFIG = "MODELROLL_SERVER_SHADOW_CONFIG"  # the file that names the canary to shadow
ENV_SHADOW_QUEUE_BYTES = "MODELROLL_SERVER_SHADOW_QUEUE_BYTES"
# the window of recent predictions that late labels (POST .../feedback) are matched against
ENV_FEEDBACK_WINDOW_ROWS = "MODELROLL_SERVER_FEEDBACK_WINDOW_ROWS"  # per worker; 0: off
ENV_FEEDBACK_MAX_AGE_SECONDS = "MODELROLL_SERVER_FEEDBACK_MAX_AGE_SECONDS"
ENV_REFERENCE = "MODELROLL_SERVER_REFERENCE"  # reference.json of the served model (drift metrics)
# Labels reach the Pod that answered: an id the server makes names its Pod (this address and
# --port), signed with the key every Pod of one ModelDeployment shares (Secret NAME-feedback,
# FEEDBACK_SECRET_KEY in its data), and any Pod forwards a label to the Pod its id names.
ENV_POD_IP = "MODELROLL_SERVER_POD_IP"  # the Pod's IP, from the downward API (status.podIP)
ENV_FEEDBACK_KEY = "MODELROLL_SERVER_FEEDBACK_KEY"  # env only: a flag would show it in ps
FEEDBACK_SECRET_KEY = "key"

# --- Paired shadow comparison: the stable's server copies requests to the canary ------------
# The file is JSON, {"target": "HOST:PORT" (the canary's gRPC address), "percent": 0-100,
# "version": the canary's spec.model.version}; absent or empty: no shadowing. The operator
# mounts it from a ConfigMap, which the kubelet updates in place (no Pod change, no restart).
SHADOW_CONFIG_KEYS = ("target", "percent", "version")

# --- Metric names and labels (Prometheus); the analysis gates and dashboards query these --
METRIC_LABELS = ("model_name", "model_version", "track")
METRIC_REQUESTS = "modelroll_requests_total"  # + protocol, code
METRIC_LATENCY = "modelroll_request_duration_seconds"  # histogram, + protocol
METRIC_BATCH_SIZE = "modelroll_batch_size"  # histogram of rows per model call
METRIC_INFLIGHT = "modelroll_inflight_requests"  # gauge
METRIC_LOAD_SECONDS = "modelroll_model_load_seconds"  # gauge
METRIC_PREDICTIONS = "modelroll_predictions_total"  # + class: count per predicted class
METRIC_CONFIDENCE = "modelroll_prediction_confidence"  # histogram of top-class probability
# exported by a server that shadows, + canary_version (SHADOW_LABEL): the canary it compares with
SHADOW_LABEL = "canary_version"
METRIC_SHADOW_REQUESTS = "modelroll_shadow_requests_total"  # + outcome: compared | dropped | failed
METRIC_SHADOW_PENDING = "modelroll_shadow_pending_requests"  # gauge: copies queued or being sent
METRIC_SHADOW_ROWS = "modelroll_shadow_rows_total"  # classifiers, + result: agree | disagree
METRIC_SHADOW_ABS_DIFFERENCE = "modelroll_shadow_abs_difference"  # regressors: histogram of |ours - canary's|
# live accuracy from late labels (POST /v2/models/NAME/feedback), per labelled row, + result:
# classifiers correct | incorrect | unmatched, regressors matched | unmatched (no prediction in
# the window: unknown, expired, overwritten or already labelled); never in METRIC_REQUESTS
METRIC_FEEDBACK = "modelroll_feedback_total"
FEEDBACK_RESULTS = ("correct", "incorrect", "matched", "unmatched")
METRIC_FEEDBACK_ABS_ERROR = "modelroll_feedback_abs_error"  # regressors: histogram of |predicted - label|
REQUEST_ID_HEADER = "x-request-id"  # KServe V1 answers carry the id feedback refers to here
# ids of labels sent on to the Pod that answered them, + outcome (FORWARD_OUTCOMES): answered, or
# failed (unreachable, an error, no answer in time: those labels count as unmatched here)
METRIC_FEEDBACK_FORWARDED = "modelroll_feedback_forwarded_total"
FORWARD_OUTCOMES = ("answered", "failed")
# regressors: histogram of predicted values over fixed buckets every server shares (so a canary's
# and a stable's compare bucket by bucket, whatever their references)
METRIC_PREDICTION_VALUE = "modelroll_prediction_value"
# exported by a server given its model's reference statistics (--reference), + feature and bin:
# ``bin`` is the bin's upper bound as Prometheus writes ``le`` ("+Inf" for the last), or
# "missing" for NaN; counts are per bin, not cumulative, so PSI of any window is
# sum over bins of (p - q) * ln(p / q) with p from increase(...) and q the reference gauge.
DRIFT_FEATURE_LABEL = "feature"
DRIFT_BIN_LABEL = "bin"
DRIFT_MISSING_BIN = "missing"
METRIC_FEATURE_BINS = "modelroll_feature_bin_total"  # counter: live input rows per reference bin
METRIC_FEATURE_REFERENCE = "modelroll_feature_reference_proportion"  # gauge: the reference's share
METRIC_FEATURE_PSI = "modelroll_feature_psi"  # gauge: PSI of the most recent rows vs the reference
METRIC_DRIFT_WINDOW_ROWS = "modelroll_drift_window_rows"  # gauge: rows in the window the PSI is of
