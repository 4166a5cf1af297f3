#!/usr/bin/env bash
# make demo: real models served on the local cluster's real node, rolled out by the operator.
#
# Starts the local cluster (tests/cluster: control plane + a real node running the images that
# `make images` built), installs the operator with its Helm chart (the real operator image, two
# replicas, watching only the demo's namespace so it never touches anything else), makes the
# examples' models (scripts/demo_models.py: trained here, no download) and puts each in a model
# store of the demo's own -- a host volume behind pvc://models and a local S3-compatible server
# behind s3://models -- then applies every example with the digest of the file really stored.
# It ends with a prediction fetched through a Service and the command that rolls the next
# version as a canary. `make demo-down` stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"
NS=modelroll-demo
OPERATOR_NS=modelroll-system
STATE=.devcluster

$PY tests/cluster/launcher.py up
export KUBECONFIG="$PWD/$STATE/kubeconfig"
host_ip=$(cat "$STATE/host-ip")
helm="$(tests/cluster/build-tools.sh --print-bin-dir)/helm"

# --- the demo's S3-compatible server (moto, from the dev extra), on the address Pods reach ---
if [ -f "$STATE/demo-s3.pid" ] && kill -0 "$(cat "$STATE/demo-s3.pid")" 2>/dev/null; then
  s3_port=$(cat "$STATE/demo-s3.port")
else
  s3_port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  nohup moto_server -H "$host_ip" -p "$s3_port" >"$STATE/demo-s3.log" 2>&1 &
  echo $! >"$STATE/demo-s3.pid"
  echo "$s3_port" >"$STATE/demo-s3.port"
fi
s3="http://$host_ip:$s3_port"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$s3/" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "$s3/" || { echo "demo: the S3 server did not start; see $STATE/demo-s3.log" >&2; exit 1; }

echo "demo: installing the operator (Helm chart, image localhost/modelroll-operator:dev)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$helm" upgrade --install modelroll charts/modelroll -n "$OPERATOR_NS" --create-namespace --wait --timeout 5m \
  --set image.repository=localhost/modelroll-operator --set image.tag=dev --set image.pullPolicy=Never \
  --set operator.serverImage=localhost/modelroll-server:dev --set "watchNamespaces={$NS}" >/dev/null

echo "demo: training the examples' models into the demo's stores (host volume, S3 at $s3)"
volume="$PWD/$STATE/demo-models"
# A claim deleted with an earlier demo namespace leaves the volume Released: bind it afresh.
if [ "$(kubectl get pv modelroll-demo-models -o jsonpath='{.status.phase}' 2>/dev/null)" = Released ]; then
  kubectl delete pv modelroll-demo-models >/dev/null
fi
sed "s#path: /srv/models#path: $volume#" scripts/demo-volume.yaml | kubectl apply --server-side -f - >/dev/null
kubectl create secret generic s3-creds -n "$NS" --dry-run=client -o yaml \
  --from-literal=AWS_ENDPOINT_URL="$s3" --from-literal=AWS_ACCESS_KEY_ID=demo \
  --from-literal=AWS_SECRET_ACCESS_KEY=demo --from-literal=AWS_REGION=us-east-1 | kubectl apply -f - >/dev/null
$PY scripts/demo_models.py --volume "$volume" --s3-endpoint "$s3" --made "$STATE/demo-made" >"$STATE/demo-examples.yaml" 2>"$STATE/demo-next.txt"

echo "demo: applying examples/ (rolling, canary, blue-green) with those models"
kubectl apply --server-side -n "$NS" -f "$STATE/demo-examples.yaml"
names=$(kubectl get mdep -n "$NS" -o jsonpath='{.items[*].metadata.name}')
for _ in $(seq 1 300); do
  phases=$(kubectl get mdep -n "$NS" -o jsonpath='{.items[*].status.phase}' 2>/dev/null || true)
  healthy=$(echo "$phases" | tr ' ' '\n' | grep -c '^Healthy$' || true)
  [ "$healthy" -eq "$(echo "$names" | wc -w)" ] && break
  sleep 1
done
kubectl get mdep -n "$NS"
echo
kubectl get pods -n "$NS" -o wide
if [ "$healthy" -ne "$(echo "$names" | wc -w)" ]; then
  echo "demo: not every ModelDeployment reached Healthy (phases: $phases);" \
    "see kubectl logs -n $OPERATOR_NS deploy/modelroll" >&2
  exit 1
fi

ip=$(kubectl get service fraud -n "$NS" -o jsonpath='{.spec.clusterIP}')
request='{"id": "demo-1", "inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": [0.5, -1.2, 0.3, 2.1, -0.7, 0.0, 1.5, -0.4]}]}'
echo
echo "demo: a prediction through Service fraud ($ip):"
echo "  curl -s http://$ip/v2/models/fraud/infer -d '$request'"
curl -fsS "http://$ip/v2/models/fraud/infer" -d "$request"
echo
cat <<MSG

demo: every example is Healthy and serving on the real node. Roll the next version of
fraud-canary out as a canary (its analysis waits for Prometheus and traffic; see docs/analysis.md):
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.venv/bin:\$PATH
  $(cat "$STATE/demo-next.txt")
  kubectl modelroll status fraud-canary -n $NS --watch
Stop with: make demo-down
MSG
