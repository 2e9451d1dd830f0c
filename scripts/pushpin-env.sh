#!/usr/bin/env bash
# Installs Pushpin 1.36 from Debian (it brings condure and zurl): the
# reference the interoperability tests mix Holdfast's processes with. Only
# the binaries are used, each test running its own instance on loopback
# with a private config and run folder; the package's own service is
# stopped and disabled where a service manager runs. Safe to run again.
set -euo pipefail
if command -v pushpin >/dev/null 2>&1 && command -v condure >/dev/null 2>&1 && command -v zurl >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt-lib.sh"
apt_install pushpin
disable_services pushpin
