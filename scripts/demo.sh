#!/usr/bin/env bash
# make demo: a ModelDeployment from nothing to Healthy on a local control plane.
# Uses $KUBECONFIG when it points at a cluster; otherwise starts the local one (tests/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"

if [ -n "${KUBECONFIG:-}" ] && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "demo: using the cluster in KUBECONFIG=$KUBECONFIG"
else
  tests/cluster/build-tools.sh
  $PY tests/cluster/launcher.py up
  export KUBECONFIG="$PWD/.devcluster/kubeconfig"
fi

echo "demo: installing the CRD"
kubectl apply --server-side -f crds/modeldeployment.yaml >/dev/null
kubectl wait --for=condition=Established crd/modeldeployments.modelroll.io --timeout=60s >/dev/null
kubectl create namespace modelroll-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side -f scripts/demo-volume.yaml >/dev/null  # the pvc:// example's claim

mkdir -p .devcluster
if [ -f .devcluster/operator.pid ] && kill -0 "$(cat .devcluster/operator.pid)" 2>/dev/null; then
  echo "demo: operator already running (pid $(cat .devcluster/operator.pid))"
else
  MODELROLL_METRICS_PORT=${MODELROLL_METRICS_PORT:-18081} nohup .venv/bin/modelroll-operator \
    >.devcluster/operator.log 2>&1 &
  echo $! >.devcluster/operator.pid
  echo "demo: operator started (pid $!, log .devcluster/operator.log)"
fi

echo "demo: applying examples/ (a rolling, a canary and a blue-green ModelDeployment)"
kubectl apply --server-side -n modelroll-demo -f examples/
names=$(kubectl get mdep -n modelroll-demo -o jsonpath='{.items[*].metadata.name}')
for _ in $(seq 1 120); do
  phases=$(kubectl get mdep -n modelroll-demo -o jsonpath='{.items[*].status.phase}' 2>/dev/null || true)
  healthy=$(echo "$phases" | tr ' ' '\n' | grep -c '^Healthy$' || true)
  [ "$healthy" -eq "$(echo "$names" | wc -w)" ] && break
  sleep 0.5
done
kubectl get mdep,deployments,services,pods -n modelroll-demo
echo
kubectl-modelroll list -n modelroll-demo
if [ "$healthy" -ne "$(echo "$names" | wc -w)" ]; then
  echo "demo: not every ModelDeployment reached Healthy (phases: $phases); see .devcluster/operator.log" >&2
  exit 1
fi
cat <<MSG

demo: every example is Healthy. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.venv/bin:\$PATH
  kubectl modelroll status fraud-canary -n modelroll-demo
  kubectl scale mdep fraud -n modelroll-demo --replicas=4
  # a new model version rolls out; follow it:
  sed 's/v7/v8/g; s/sha256:760d/sha256:860d/' examples/fraud-rolling.yaml | kubectl apply --server-side -n modelroll-demo -f -
  kubectl modelroll status fraud -n modelroll-demo --watch
Stop with: make demo-down
MSG
