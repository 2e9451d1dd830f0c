#!/usr/bin/env bash
# Installs the npm packages the browser tests load into their pages into
# .npm (pinned in tests/npm/package.json; Debian's npm and Node.js when
# missing). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  . scripts/apt-lib.sh
  apt_install npm
fi
mkdir -p .npm
cp tests/npm/package.json .npm/package.json
if [ ! -f .npm/node_modules/sockjs-client/dist/sockjs.min.js ]; then
  (cd .npm && npm install --no-audit --no-fund --no-save --loglevel=error >/dev/null)
fi
