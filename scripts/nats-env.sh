#!/usr/bin/env bash
# Installs Debian's nats-server (2.9, with JetStream), the bus the
# multi-instance tests start as a 3-node cluster on loopback. Only the
# binary is used: a service the package may start is stopped and disabled.
# Safe to run again.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt-lib.sh"
apt_install nats-server
disable_services nats-server
