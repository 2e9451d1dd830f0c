#!/usr/bin/env bash
# Installs Debian's Chromium for the browser end-to-end tests (headless,
# driven by the page itself; no browser download by any test tool).
# Safe to run again.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt-lib.sh"
apt_install chromium
