#!/usr/bin/env bash
# Installs Debian's Varnish and varnish-modules (for xkey), the caching CDN
# the chaining tests start on loopback with the VCL in cdn/varnish/. Only
# the binaries are used: the package's own service is stopped and disabled
# where a service manager runs. Safe to run again.
set -euo pipefail
if command -v varnishd >/dev/null 2>&1 && ls /usr/lib/*/varnish/vmods/libvmod_xkey.so >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || true
$sudo apt-get install -y -qq varnish varnish-modules >/dev/null
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  $sudo systemctl disable --now varnish varnishncsa >/dev/null 2>&1 || true
fi
