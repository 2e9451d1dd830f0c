#!/usr/bin/env bash
# Installs the npm packages the tests use into .npm (pinned in
# tests/npm/package.json; Debian's npm and Node.js when missing): what the
# browser tests load into their pages, and the Node.js scripts beside it
# (copied into .npm, where their imports resolve). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  . scripts/apt-lib.sh
  apt_install npm
fi
mkdir -p .npm
cp tests/npm/package.json tests/npm/*.mjs .npm/
# Installed once per version of the pins (.npm/installed.json says which).
if ! cmp -s tests/npm/package.json .npm/installed.json; then
  (cd .npm && npm install --no-audit --no-fund --no-save --loglevel=error >/dev/null)
  cp tests/npm/package.json .npm/installed.json
fi
