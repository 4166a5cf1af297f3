#!/usr/bin/env bash
# Builds the local control plane's binaries from their Go modules, once per version set:
#   kube-apiserver, kube-controller-manager, kube-scheduler,
#   kubelet, kube-proxy (the real node)                      (tests/cluster/gomod/kubernetes)
#   etcd                                                     (tests/cluster/gomod/etcd)
#   pause (the Pod sandbox process, static)                  (tests/cluster/gomod/pause)
#   kwok, helm, crictl (tears the real node's Pods down),
#   prometheus (with Kubernetes discovery, which Debian's
#   package lacks; only that discovery compiled in)          (go install <module>@<pinned version>)
# into   ${MODELROLL_CACHE:-~/.cache/modelroll}/k8s-<version>-<hash>/bin/
# where <hash> covers the Go module files and the pinned tool versions, so a version bump
# lands in a new directory and rebuilds. Binaries already present are not rebuilt.
#
#   tests/cluster/build-tools.sh               build what is missing, print the bin dir last
#   tests/cluster/build-tools.sh --print-bin-dir   only print the bin dir (no build); the
#                                                  launcher and the pytest fixtures use this
set -Eeuo pipefail  # -E: the ERR trap that names the failed step also fires inside functions

K8S_VERSION=v1.32.6
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.17.4
CRICTL_VERSION=v1.34.0
# Prometheus 3.N.M is published as the Go module version v0.3NN.M.
PROMETHEUS_MODULE_VERSION=v0.316.0
PROMETHEUS_VERSION=3.16.0
TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd pause kwok helm crictl prometheus)

here=$(cd "$(dirname "$0")" && pwd)
gomod=$here/gomod
cache_root=${MODELROLL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelroll}
hash=$(
  {
    echo "k8s=$K8S_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION crictl=$CRICTL_VERSION prometheus=$PROMETHEUS_MODULE_VERSION stamped"
    cat "$gomod/kubernetes/go.mod" "$gomod/kubernetes/go.sum"
    cat "$gomod/etcd/go.mod" "$gomod/etcd/go.sum" "$gomod/etcd/main.go"
    cat "$gomod/pause/go.mod" "$gomod/pause/main.go"
  } | sha256sum | cut -c1-12
)
version_dir=$cache_root/k8s-$K8S_VERSION-$hash
bin_dir=$version_dir/bin

if [ "${1:-}" = "--print-bin-dir" ]; then
  echo "$bin_dir"
  exit 0
fi

log() { echo "build-tools: $*" >&2; }

missing=()
for t in "${TOOLS[@]}"; do
  [ -x "$bin_dir/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all binaries cached in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

step=""
fail() {
  local rc=$?
  log "FAILED at step '$step' (exit $rc); see the output above"
  exit "$rc"
}
trap fail ERR

step="check Go toolchain"
command -v go >/dev/null || { log "go is not on PATH"; false; }
log "$(go version); missing: ${missing[*]}"

# Module files of a k8s.io release are not all in the checksum database mirror reachable
# here; go.sum still pins every hash, so only the lookup of new modules is skipped.
export GOTOOLCHAIN=local
export GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}k8s.io,sigs.k8s.io
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
ldflags="-s -w"
# Stamp the versions the release builds carry, so /version, kubectl's skew check and helm's
# default capabilities report 1.32 rather than v0.0.0-master / 1.20.
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ldflags="$ldflags -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor \
  -X k8s.io/component-base/version.gitTreeState=clean"
helm_ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"

mkdir -p "$version_dir"
# Build into a temporary directory next to bin/, then move each finished binary in with a
# rename, so a killed build never leaves a half-written binary that looks cached.
tmp=$(mktemp -d "$version_dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$bin_dir"

build_one() {
  local name=$1
  shift
  step="build $name"
  local start=$SECONDS
  log "building $name ..."
  "$@"
  [ -x "$tmp/$name" ] || { log "$name was not produced"; false; }
  mv -f "$tmp/$name" "$bin_dir/$name"
  log "built $name in $((SECONDS - start)) s"
}

for t in "${missing[@]}"; do
  case $t in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      build_one "$t" bash -c "cd '$gomod/kubernetes' && go build -trimpath -ldflags='$k8s_ldflags' \
        -o '$tmp/$t' k8s.io/kubernetes/cmd/$t"
      ;;
    etcd)
      build_one etcd bash -c "cd '$gomod/etcd' && go build -trimpath -ldflags='$ldflags' \
        -o '$tmp/etcd' ."
      ;;
    pause)
      build_one pause bash -c "cd '$gomod/pause' && CGO_ENABLED=0 go build -trimpath -ldflags='$ldflags' \
        -o '$tmp/pause' ."
      ;;
    kwok)
      build_one kwok env GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
      ;;
    helm)
      build_one helm env GOBIN="$tmp" go install -trimpath -ldflags="$helm_ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
      ;;
    crictl)
      build_one crictl env GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
      ;;
    prometheus)
      build_one prometheus env GOBIN="$tmp" go install -trimpath -tags remove_all_sd,enable_kubernetes_sd \
        -ldflags="$ldflags -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
        "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION"
      ;;
  esac
done

step="verify"
"$bin_dir/kube-apiserver" --version >&2
"$bin_dir/etcd" --version | sed -n 1p >&2  # sed reads to the end: head could SIGPIPE etcd
"$bin_dir/kwok" --version >&2 || true
"$bin_dir/helm" version --short >&2
"$bin_dir/prometheus" --version 2>&1 | sed -n 1p >&2
log "cache: $version_dir ($(du -sh "$version_dir" | cut -f1))"
echo "$bin_dir"
