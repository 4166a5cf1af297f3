#!/usr/bin/env bash
# modelroll-server vs MLServer vs KServe on loopback, driven by wrk (see README.md here).
# Peers go into their own venvs under ~/.cache/modelroll/bench (their pins conflict with
# ours); wrk comes from Debian. Knobs: BENCH_DURATION (s per cell, default 10),
# BENCH_WORKERS (default 1), BENCH_CONNECTIONS (default "1 16 64"), BENCH_ONLY (servers).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MODELROLL_BENCH_CACHE:-$HOME/.cache/modelroll/bench}"
py="${PYTHON:-python3}"
mkdir -p "$cache"

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk from Debian"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi

# Same scikit-learn/joblib/numpy in every venv, so every server loads the very same files.
pins="$("$repo/.venv/bin/python" -c 'import sklearn, joblib, numpy; print(f"scikit-learn=={sklearn.__version__} joblib=={joblib.__version__} numpy=={numpy.__version__}")')"

make_venv() {  # name, packages...
  local name=$1; shift
  local dir="$cache/$name" stamp
  stamp="$dir/.ok-$(echo "$* $pins" | sha256sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "bench: creating $dir ($*)"
    rm -rf "$dir"
    "$py" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    # the peers' own pins may refuse ours; fall back to theirs and say so in the table
    "$dir/bin/pip" install -q "$@" $pins || "$dir/bin/pip" install -q "$@"
    touch "$stamp"
  fi
}

make_venv mlserver "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22"
make_venv kserve "kserve==0.21.0"
[ "${BENCH_SETUP_ONLY:-0}" = 1 ] && exit 0

exec "$repo/.venv/bin/python" "$here/bench.py" --cache "$cache" --results "$repo/benchmarks/results" "$@"
