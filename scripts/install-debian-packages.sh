#!/usr/bin/env bash
# Installs Debian packages the tests and the dev cluster need, once; nothing is installed by hand.
#
#   scripts/install-debian-packages.sh COMMAND=PACKAGE ...
#
# Each COMMAND=PACKAGE pair is checked by looking COMMAND up (on PATH, or as an absolute path):
# only the packages whose command is missing are installed. Needs root (CI runs as root) or
# passwordless sudo; runs without a terminal (CI has no stdin).
#
# Maintainer scripts would start system-wide services (containerd on /run/containerd); the
# project starts its own with their own sockets and state, so service starts are refused while
# packages install (policy-rc.d exit 101 = "action forbidden").
set -euo pipefail

log() { echo "install-debian-packages: $*" >&2; }
have() { if [[ $1 == /* ]]; then [ -e "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }

wanted=()
for pair in "$@"; do
  cmd=${pair%%=*}
  pkg=${pair#*=}
  have "$cmd" || wanted+=("$pkg")
done
[ ${#wanted[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: install ${wanted[*]} by hand"; exit 1; }
  sudo="sudo -n"
fi
command -v apt-get >/dev/null 2>&1 || { log "apt-get not found: install ${wanted[*]} by hand"; exit 1; }

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
log "installing Debian's ${wanted[*]}"
start=$SECONDS
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
for pair in "$@"; do
  have "${pair%%=*}" || { log "${pair%%=*} is still missing after installing ${pair#*=}"; exit 1; }
done
log "installed ${wanted[*]} in $((SECONDS - start)) s"
