#!/usr/bin/env bash
# Installs Debian's Varnish and varnish-modules (for xkey), the caching CDN
# the chaining tests start on loopback with the VCL in cdn/varnish/. Only
# the binaries are used: the package's own service is stopped and disabled
# where a service manager runs. Safe to run again.
set -euo pipefail
if command -v varnishd >/dev/null 2>&1 && ls /usr/lib/*/varnish/vmods/libvmod_xkey.so >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt-lib.sh"
apt_install varnish varnish-modules
disable_services varnish varnishncsa
