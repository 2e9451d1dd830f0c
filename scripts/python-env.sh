#!/usr/bin/env bash
# Installs the Python client libraries the end-to-end tests use into .venv
# (PyPI, pinned in tests/python/requirements.txt). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
