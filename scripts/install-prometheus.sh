#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package) for the analysis tests, once.
# Idempotent: does nothing when `prometheus` is already on PATH. Needs root (CI runs as root)
# or passwordless sudo; runs without a terminal (CI has no stdin).
#
# The package's maintainer scripts would start a system-wide Prometheus on :9090; the tests
# start their own on a free loopback port instead, so service starts are refused while the
# package installs (policy-rc.d exit 101 = "action forbidden").
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
log() { echo "install-prometheus: $*" >&2; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: install Debian's prometheus package by hand"; exit 1; }
  sudo="sudo -n"
fi
command -v apt-get >/dev/null 2>&1 || { log "apt-get not found: install Prometheus >= 2.x so that 'prometheus' is on PATH"; exit 1; }

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
log "installing Debian's prometheus package"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Some images have no systemd: make sure nothing the package started keeps :9090 busy.
if command -v pgrep >/dev/null 2>&1 && pgrep -x prometheus >/dev/null 2>&1; then
  $sudo systemctl stop prometheus 2>/dev/null || $sudo service prometheus stop 2>/dev/null || true
fi
command -v prometheus >/dev/null 2>&1 || { log "prometheus is still not on PATH after the install"; exit 1; }
log "$(prometheus --version 2>&1 | sed -n 1p)"
