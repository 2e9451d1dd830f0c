#!/usr/bin/env bash
# Installs what the benchmark scenarios (holdfast-bench <scenario>) start
# or drive, from Debian: wrk and h2load (nghttp2-client) for load,
# nginx-light as the origin (and the reverse proxy compared with),
# heaptrack for heap profiles, and Varnish, Pushpin 1.36 and nats-server
# through their own installers. Only the binaries are used: services the
# packages start are stopped and disabled. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt-lib.sh
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v heaptrack >/dev/null 2>&1 || need+=(heaptrack)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
  disable_services nginx
fi
scripts/varnish-env.sh
scripts/pushpin-env.sh
scripts/nats-env.sh
