#!/usr/bin/env bash
# make demo: real models served on the local cluster's real node, rolled out by the operator.
#
# Starts the local cluster (tests/cluster: control plane + a real node running the images that
# `make images` built), installs the operator with its Helm chart (the real operator image, two
# replicas, watching only the demo's namespace so it never touches anything else), makes the
# examples' models (scripts/demo_models.py: trained here, no download) and puts each in a model
# store of the demo's own -- a host volume behind pvc://models and a local S3-compatible server
# behind s3://models -- then applies every example with the digest of the file really stored.
# A Prometheus (the one `make cluster-tools` builds, with the documented scrape job) discovers
# the model Pods for the analysis gates, and a bounded traffic generator gives fraud-canary
# requests to judge. It ends with a prediction fetched through a Service and the command that
# rolls the next version as a canary. `make demo-down` stops all of it: the host processes by
# the pids recorded in .devcluster/demo-*.pid, the rest with the cluster.
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
bin_dir=$(tests/cluster/build-tools.sh --print-bin-dir)

# background NAME COMMAND...: run a host process of the demo once (kept across re-runs),
# recording its pid for `make demo-down`; its output goes to .devcluster/demo-NAME.log.
background() {
  local name=$1
  shift
  if [ -f "$STATE/demo-$name.pid" ] && kill -0 "$(cat "$STATE/demo-$name.pid")" 2>/dev/null; then
    return
  fi
  nohup "$@" >"$STATE/demo-$name.log" 2>&1 &
  echo $! >"$STATE/demo-$name.pid"
}
# wait_http NAME URL: poll until URL answers (the process may still be starting).
wait_http() {
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$2" 2>/dev/null && return
    sleep 0.2
  done
  echo "demo: $1 did not start; see $STATE/demo-$1.log" >&2
  exit 1
}
port_of() {  # the port a host process of the demo listens on, chosen once
  [ -f "$STATE/demo-$1.port" ] ||
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
      >"$STATE/demo-$1.port"
  cat "$STATE/demo-$1.port"
}

# --- the demo's S3-compatible server (moto, from the dev extra), on the address Pods reach ---
s3="http://$host_ip:$(port_of s3)"
background s3 moto_server -H "$host_ip" -p "$(port_of s3)"
wait_http s3 "$s3/"

# --- Prometheus with the documented scrape job, discovering the demo's model Pods -----------
$PY - "$PWD/$STATE" "$NS" <<'EOF'
import sys
from pathlib import Path

import yaml

state, namespace = Path(sys.argv[1]), sys.argv[2]
config = yaml.safe_load(Path("docs/prometheus-scrape-config.yaml").read_text())
for job in config["scrape_configs"]:
    job["scrape_interval"] = "5s"
    for sd in job["kubernetes_sd_configs"]:  # from outside the cluster, for one namespace
        sd.update(kubeconfig_file=str(state / "kubeconfig"), namespaces={"names": [namespace]})
(state / "demo-prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
EOF
prometheus="http://$host_ip:$(port_of prometheus)"
background prometheus "$bin_dir/prometheus" --config.file="$STATE/demo-prometheus.yml" \
  --storage.tsdb.path="$STATE/demo-prometheus" --web.listen-address="$host_ip:$(port_of prometheus)"
wait_http prometheus "$prometheus/-/ready"

echo "demo: installing the operator (Helm chart, image localhost/modelroll-operator:dev)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$bin_dir/helm" upgrade --install modelroll charts/modelroll -n "$OPERATOR_NS" --create-namespace --wait --timeout 5m \
  --set image.repository=localhost/modelroll-operator --set image.tag=dev --set image.pullPolicy=Never \
  --set operator.serverImage=localhost/modelroll-server:dev --set "watchNamespaces={$NS}" \
  --set operator.prometheusUrl="$prometheus" >/dev/null

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
# kube-proxy programs a Service a moment after its Pods turn Ready: retry while it is refused.
curl -fsS --retry 30 --retry-connrefused --retry-delay 1 "http://$ip/v2/models/fraud/infer" -d "$request"
echo
background traffic $PY scripts/demo_traffic.py "$(kubectl get service fraud-canary -n "$NS" \
  -o jsonpath='{.spec.clusterIP}')" fraud-canary --features 8 --rate 40 --seconds 1800
cat <<MSG

demo: every example is Healthy and serving on the real node. fraud-canary gets 40 requests a
second for 30 minutes, and Prometheus at $prometheus scrapes the Pods. Roll its next version
out as a canary, judged by its analysis gates (docs/analysis.md):
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.venv/bin:\$PATH
  $(cat "$STATE/demo-next.txt")
  kubectl modelroll status fraud-canary -n $NS --watch
Stop with: make demo-down
MSG
