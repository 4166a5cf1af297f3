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
