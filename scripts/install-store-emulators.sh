#!/usr/bin/env bash
# Installs the object-store emulators the fetch tests (tests/server/test_fetch_stores.py) start
# on loopback, once per version set:
#   fake-gcs-server   a GCS emulator, built from its Go module       (go install <module>@<version>)
#   azurite           Microsoft's Azure Storage emulator, from npm   (npm install azurite@<version>)
# into   ${MODELROLL_CACHE:-~/.cache/modelroll}/store-emulators-<hash>/
# where <hash> covers the pinned versions, so a bump lands in a new directory. S3 needs nothing
# here: moto's server comes with the dev extra (.venv).
#
#   scripts/install-store-emulators.sh               install what is missing, print the dir last
#   scripts/install-store-emulators.sh --print-dir   only print the dir (no install)
set -Eeuo pipefail

FAKE_GCS_SERVER_VERSION=v1.56.1
# 3.35 is the newest Azurite that runs on Node 20 (3.36 wants Node >= 21).
AZURITE_VERSION=3.35.0

cache_root=${MODELROLL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelroll}
hash=$(echo "fake-gcs-server=$FAKE_GCS_SERVER_VERSION azurite=$AZURITE_VERSION" | sha256sum | cut -c1-12)
dir=$cache_root/store-emulators-$hash

if [ "${1:-}" = "--print-dir" ]; then
  echo "$dir"
  exit 0
fi

log() { echo "store-emulators: $*" >&2; }
step=""
trap 'rc=$?; log "FAILED at step '"'"'$step'"'"' (exit $rc); see the output above"; exit $rc' ERR

fake_gcs=$dir/bin/fake-gcs-server
azurite=$dir/azurite/node_modules/.bin/azurite-blob
if [ -x "$fake_gcs" ] && [ -x "$azurite" ]; then
  log "cached in $dir"
  echo "$dir"
  exit 0
fi
mkdir -p "$dir/bin"
# Each tool is built into a temporary directory and moved in with a rename, so a killed install
# never leaves a half-written tool that looks cached.
tmp=$(mktemp -d "$dir/.install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$fake_gcs" ]; then
  step="build fake-gcs-server $FAKE_GCS_SERVER_VERSION"
  command -v go >/dev/null || { log "go is not on PATH"; false; }
  start=$SECONDS
  log "building fake-gcs-server $FAKE_GCS_SERVER_VERSION with $(go version) ..."
  GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOBIN="$tmp" \
    go install -trimpath -ldflags="-s -w" "github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION"
  mv -f "$tmp/fake-gcs-server" "$fake_gcs"
  log "built fake-gcs-server in $((SECONDS - start)) s"
fi

if [ ! -x "$azurite" ]; then
  step="npm install azurite@$AZURITE_VERSION"
  command -v npm >/dev/null || { log "npm is not on PATH"; false; }
  start=$SECONDS
  log "installing azurite $AZURITE_VERSION with node $(node --version) ..."
  mkdir -p "$tmp/azurite"
  npm install --prefix "$tmp/azurite" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
  rm -rf "$dir/azurite"
  mv "$tmp/azurite" "$dir/azurite"
  log "installed azurite in $((SECONDS - start)) s"
fi

step="verify"
[ -x "$fake_gcs" ] && [ -x "$azurite" ]
log "cache: $dir ($(du -sh "$dir" | cut -f1))"
echo "$dir"
