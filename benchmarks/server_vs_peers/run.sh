#!/usr/bin/env bash
# modelroll-server vs MLServer vs KServe, other HTTP layers and nginx on loopback, over HTTP
# (wrk) and gRPC (ghz) — see README.md here. Installs what it drives, once:
#   - a venv for modelroll-server with only the `server` extra's dependencies, as its image
#     has them (not .venv's development tools), running this tree's code;
#   - the peers, each in its own venv under ~/.cache/modelroll/bench (their pins conflict
#     with ours), with the same scikit-learn/joblib/numpy as .venv;
#   - uvicorn and granian into a directory of their own there (never the project's deps),
#     imported by the server venv's Python so only the HTTP layer differs from our server;
#   - ghz, built from its Go module into bin/ there, keyed by version;
#   - wrk and nginx from Debian.
# Knobs: BENCH_DURATION (s per cell, default 10), BENCH_WORKERS (default 1),
# BENCH_CONNECTIONS (default "1 16 64"), BENCH_ONLY (servers), BENCH_PARTS (parts; "quality"
# runs only when named), BENCH_DRIFT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MODELROLL_BENCH_CACHE:-$HOME/.cache/modelroll/bench}"
py="${PYTHON:-python3}"
mkdir -p "$cache/bin"

UVICORN_VERSION=0.54.0
GRANIAN_VERSION=2.8.7
GHZ_VERSION=v0.121.0

"$repo/scripts/install-debian-packages.sh" wrk=wrk /usr/sbin/nginx=nginx

# Same scikit-learn/joblib/numpy in every venv, so every server loads the very same files.
pins="$("$repo/.venv/bin/python" -c 'import sklearn, joblib, numpy; print(f"scikit-learn=={sklearn.__version__} joblib=={joblib.__version__} numpy=={numpy.__version__}")')"

make_venv() {  # python, name, packages...
  local python=$1 name=$2; shift 2
  local dir="$cache/$name" stamp
  stamp="$dir/.ok-$(echo "$* $pins" | sha256sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "bench: creating $dir ($*)"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    # the peers' own pins may refuse ours; fall back to theirs and say so in the table
    "$dir/bin/pip" install -q "$@" $pins || "$dir/bin/pip" install -q "$@"
    touch "$stamp"
  fi
}

make_venv "$py" mlserver "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22"
make_venv "$py" kserve "kserve==0.21.0"
# modelroll-server and the HTTP layers that serve its App: .venv's interpreter (the layers'
# directory below is built for it), the `server` extra as pyproject.toml lists it (a change
# there makes a new venv); the code comes from this tree on PYTHONPATH (bench.py), so an edit
# needs no reinstall. .venv has pandas, which scikit-learn imports when it is installed.
server_deps="$("$repo/.venv/bin/python" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["server"]))' "$repo/pyproject.toml")"
# shellcheck disable=SC2086 # one word per requirement
make_venv "$repo/.venv/bin/python" server $server_deps

# The other HTTP layers go on PYTHONPATH in front of .venv's site-packages: .venv's
# interpreter, numpy, scikit-learn, uvloop and httptools serve every layer alike.
layers="$cache/layers-uvicorn$UVICORN_VERSION-granian$GRANIAN_VERSION"
if [ ! -f "$layers/.ok" ]; then
  echo "bench: installing uvicorn $UVICORN_VERSION and granian $GRANIAN_VERSION into $layers"
  rm -rf "$layers"
  "$repo/.venv/bin/python" -m pip install -q --target "$layers" \
    "uvicorn==$UVICORN_VERSION" "granian==$GRANIAN_VERSION"
  touch "$layers/.ok"
fi

ghz="$cache/bin/ghz-$GHZ_VERSION"
if [ ! -x "$ghz" ]; then
  command -v go >/dev/null || { echo "bench: go is not on PATH (needed once, to build ghz)" >&2; exit 1; }
  echo "bench: building ghz $GHZ_VERSION from its Go module"
  tmp="$(mktemp -d "$cache/bin/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN="$tmp" \
    go install -trimpath -ldflags="-s -w -X main.version=$GHZ_VERSION" \
    "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  mv -f "$tmp/ghz" "$ghz"  # a rename: a killed build never leaves a half-written binary
fi
[ "${BENCH_SETUP_ONLY:-0}" = 1 ] && exit 0

exec "$repo/.venv/bin/python" "$here/bench.py" --cache "$cache" --results "$repo/benchmarks/results" \
  --layers "$layers" --ghz "$ghz" --nginx /usr/sbin/nginx --server-python "$cache/server/bin/python" "$@"
