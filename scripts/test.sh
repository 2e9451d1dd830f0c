#!/usr/bin/env bash
# The whole test suite, as the README names it and CI runs it (.ci/run).
# Needs only a Rust toolchain and a C/C++ compiler: libzmq is built from
# source by the zmq crate. Installs nothing else yet.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "build the binaries (the end-to-end tests run them)"
cargo build --workspace --bins

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "fuzz targets compile"
RUSTFLAGS="--cfg fuzzing" cargo check --manifest-path fuzz/Cargo.toml --quiet

step "tests"
cargo test --workspace
