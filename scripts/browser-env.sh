#!/usr/bin/env bash
# Installs Debian's Chromium for the browser end-to-end tests (headless,
# driven by the page itself; no browser download by any test tool).
# Safe to run again.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || true
$sudo apt-get install -y -qq chromium >/dev/null
