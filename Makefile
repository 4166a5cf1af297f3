# Every target installs what it needs first; nothing is expected to be installed by hand.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: venv cluster-tools store-emulators host-packages images cluster cluster-down cluster-status test test-unit lint demo demo-down bench bench-operator chart-crds chart-lint

venv:
	@scripts/bootstrap-python.sh

# --- local control plane (tests/cluster) ---------------------------------------------------
cluster-tools:
	@tests/cluster/build-tools.sh

# The server, operator and pause images, built with no registry (scripts/build-images.sh).
images: venv cluster-tools
	@scripts/build-images.sh

# Debian's packages the cluster and the tests run: containerd, runc, the CNI plugins, iptables
# and conntrack for the real node. (Prometheus is built by `make cluster-tools`: Debian's has
# no Kubernetes service discovery.)
host-packages:
	@scripts/install-debian-packages.sh containerd=containerd runc=runc \
	  /usr/lib/cni/bridge=containernetworking-plugins iptables=iptables conntrack=conntrack

cluster: venv cluster-tools host-packages images
	@$(PY) tests/cluster/launcher.py up

cluster-down: venv
	@$(PY) tests/cluster/launcher.py down

cluster-status: venv
	@$(PY) tests/cluster/launcher.py status

# --- tests ------------------------------------------------------------------------------------
# fake-gcs-server (built from its Go module) and Azurite (npm) for the fetch tests, cached in
# ~/.cache/modelroll/store-emulators-<hash>/ (scripts/install-store-emulators.sh; the tests' own
# fixtures run the same script, so pytest alone works too).
store-emulators:
	@scripts/install-store-emulators.sh >/dev/null

test: venv lint cluster-tools host-packages images store-emulators
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# --- benchmarks -------------------------------------------------------------------------------
# The server against MLServer, KServe, uvicorn, granian and nginx, HTTP and gRPC, in one run;
# knobs BENCH_DURATION, BENCH_WORKERS, BENCH_CONNECTIONS, BENCH_ONLY, BENCH_PARTS (its README).
bench: venv
	@benchmarks/server_vs_peers/run.sh

# --- demo -------------------------------------------------------------------------------------
demo: venv cluster-tools host-packages images
	@scripts/demo.sh

# The demo's host processes (S3 server, Prometheus, traffic) go by their pids; the rest goes
# with the cluster.
demo-down:
	@for f in .devcluster/demo-*.pid; do [ -f "$$f" ] && { kill $$(cat "$$f") 2>/dev/null || true; rm -f "$$f"; }; done
	@$(MAKE) --no-print-directory cluster-down

bench-operator: venv cluster-tools
	@$(PY) benchmarks/operator_scale.py

# --- Helm chart (charts/modelroll) ------------------------------------------------------------
# crds/ is the one source of the CRD; the chart carries a byte-identical copy and the operator
# the schema of spec it validates and defaults against (unit tests check both).
chart-crds: venv
	@cp crds/*.yaml charts/modelroll/crds/
	@$(PY) scripts/generate_spec_schema.py >/dev/null

chart-lint: cluster-tools
	@$$(tests/cluster/build-tools.sh --print-bin-dir)/helm lint --strict charts/modelroll

# --- pipeline (examples/pipeline) -------------------------------------------------------------
# Raw data to a released model, one step per target: data -> train -> evaluate (the gate) ->
# package -> push -> release; `make pipeline` runs them in order, then the rollout demo's bad
# model (pipeline-bad) and drifted traffic (pipeline-drift). Every step reads the previous
# one's files under PIPELINE_BUILD (layout: examples/pipeline/README.md), so CI runs each as
# its own step. PIPELINE_STORE is a prefix: a release goes under PIPELINE_STORE/VERSION/.
# PIPELINE_MANIFEST is the file pipeline-release writes, from the committed manifest: a copy
# in the build dir unless it is set (the release workflow sets it to the committed file).
.PHONY: pipeline pipeline-raw pipeline-data pipeline-train pipeline-evaluate pipeline-package pipeline-push pipeline-release pipeline-bad pipeline-drift
PIPELINE_DIR := examples/pipeline
PIPELINE_RAW ?= $(PIPELINE_DIR)/data/raw.csv
PIPELINE_BUILD ?= $(PIPELINE_DIR)/build
PIPELINE_VERSION ?= v1
PIPELINE_STORE ?= file://$(abspath $(PIPELINE_BUILD))/store
PIPELINE_MANIFEST ?= $(PIPELINE_BUILD)/modeldeployment.yaml
# the evaluation gate's bounds, METRIC=VALUE each (modelroll evaluate --min)
PIPELINE_MIN ?= f1=0.9 roc_auc=0.97
# the share of training labels the bad model is trained with flipped
PIPELINE_CORRUPT ?= 0.45
# the label column: columns.TARGET (tests/pipeline checks the two agree)
PIPELINE_TARGET := malignant
# $(call ...,DIR,VERSION): package DIR/model/model.joblib into DIR/package (reference: the
# training split), push it to PIPELINE_STORE/VERSION (DIR/push.json), write DIR's manifest.
pipeline_package = modelroll package $(1)/model/model.joblib --reference $(PIPELINE_BUILD)/data/train.csv --target $(PIPELINE_TARGET) --out $(1)/package --version $(2)
pipeline_push = $(if $(PIPELINE_STORE),,$(error PIPELINE_STORE is empty: set it to s3://BUCKET/PREFIX or file:///DIR))modelroll push $(1)/package $(PIPELINE_STORE)/$(2) --json > $(1)/push.json && cat $(1)/push.json
pipeline_release = $(PY) $(PIPELINE_DIR)/release.py $(1)/push.json $(PIPELINE_DIR)/deploy/modeldeployment.yaml --out $(2)

pipeline: venv
	@for step in data train evaluate package push release bad drift; do \
	  $(MAKE) --no-print-directory pipeline-$$step || exit 1; done

# Rewrites the committed raw CSV (only after changing make_raw.py; a test checks they agree).
pipeline-raw: venv
	$(PY) $(PIPELINE_DIR)/make_raw.py $(PIPELINE_RAW)

pipeline-data: venv
	$(PY) $(PIPELINE_DIR)/clean.py $(PIPELINE_RAW) --out $(PIPELINE_BUILD)/data

pipeline-train: venv
	$(PY) $(PIPELINE_DIR)/train.py $(PIPELINE_BUILD)/data --out $(PIPELINE_BUILD)/model

pipeline-evaluate: venv
	modelroll evaluate $(PIPELINE_BUILD)/model/model.joblib --data $(PIPELINE_BUILD)/data/test.csv \
	  --target $(PIPELINE_TARGET) $(addprefix --min ,$(PIPELINE_MIN))

pipeline-package: venv
	$(call pipeline_package,$(PIPELINE_BUILD),$(PIPELINE_VERSION))

pipeline-push: venv
	$(call pipeline_push,$(PIPELINE_BUILD),$(PIPELINE_VERSION))

pipeline-release: venv
	$(call pipeline_release,$(PIPELINE_BUILD),$(PIPELINE_MANIFEST))

# The rollout demo's bad release, VERSION-bad: trained on corrupted labels, with no evaluation
# gate (it would stop this model, and the demo needs it served to show a canary catching it).
pipeline-bad: venv
	$(PY) $(PIPELINE_DIR)/train.py $(PIPELINE_BUILD)/data --out $(PIPELINE_BUILD)/bad/model \
	  --corrupt-labels $(PIPELINE_CORRUPT)
	$(call pipeline_package,$(PIPELINE_BUILD)/bad,$(PIPELINE_VERSION)-bad)
	$(call pipeline_push,$(PIPELINE_BUILD)/bad,$(PIPELINE_VERSION)-bad)
	$(call pipeline_release,$(PIPELINE_BUILD)/bad,$(PIPELINE_BUILD)/bad/modeldeployment.yaml)

pipeline-drift: venv
	$(PY) $(PIPELINE_DIR)/drift.py $(PIPELINE_BUILD)/data/traffic.csv --out $(PIPELINE_BUILD)/data/traffic-drifted.csv
