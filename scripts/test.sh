#!/usr/bin/env bash
# The whole test suite, as the README names it and CI runs it (.ci/run).
# Needs a Rust toolchain, a C/C++ compiler (libzmq is built from source by
# the zmq crate) and python3; installs the Python client libraries the tests
# use into .venv, and from Debian: chromium for the browser tests, varnish
# (with varnish-modules) for the CDN chaining tests, and pushpin 1.36 (with
# condure and zurl) for the tests that mix its processes with Holdfast's.
# Then it runs the Autobahn WebSocket suite through Holdfast
# (scripts/autobahn.sh installs it with pyenv's Python 2.7).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "python client libraries (.venv)"
scripts/python-env.sh

step "chromium for the browser tests"
scripts/browser-env.sh

step "varnish for the CDN chaining tests"
scripts/varnish-env.sh

step "pushpin for the interoperability tests"
scripts/pushpin-env.sh

step "format"
cargo fmt --all -- --check

step "build the binaries (the end-to-end tests run them)"
cargo build --workspace --bins

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "every feature set of the wire crate builds"
cargo check -p holdfast-protocol --no-default-features --quiet
cargo check -p holdfast-protocol --no-default-features --features zmq --quiet

step "fuzz targets compile"
# One target folder for both fuzz crates: they share what --cfg fuzzing builds.
for manifest in fuzz/Cargo.toml connmgr/fuzz/Cargo.toml; do
  RUSTFLAGS="--cfg fuzzing" CARGO_TARGET_DIR=target/fuzz cargo check --manifest-path "$manifest" --locked --quiet
done

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nholdfast: %d passed, %d failed\n", p, f }' "$log"
[ "$status" -eq 0 ] || exit "$status"

step "Autobahn|TestSuite through Holdfast (WebSocket conformance, compression on)"
AUTOBAHN_DIRECT=tests/autobahn/direct.json scripts/autobahn.sh
