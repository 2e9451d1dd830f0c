#!/usr/bin/env bash
# The whole test suite, as the README names it and CI runs it (.ci/run).
# Needs a Rust toolchain, a C/C++ compiler (libzmq is built from source by
# the zmq crate) and python3; installs the Python client libraries the tests
# use into .venv, the npm packages the browser pages load into .npm
# (sockjs-client), and from Debian: chromium for the browser tests, varnish
# (with varnish-modules) for the CDN chaining tests, and pushpin 1.36 (with
# condure and zurl) for the tests that mix its processes with Holdfast's,
# and nats-server for the bus tests (a 3-node cluster on loopback).
# The tests include the Debian package, built with scripts/package-deb.sh,
# installed with dpkg, run and purged (tests/tests/package.rs: needs root).
# It builds the manual (docs/) with mdBook from crates.io, checks its links
# and renders its first page. Then it runs the Autobahn WebSocket suite through Holdfast
# (scripts/autobahn.sh installs it with pyenv's Python 2.7), and fails if
# anything it ran changed the working tree.
#
# One build serves every step: the release profile with debug assertions
# and overflow checks on. The README's `cargo build --release` (which the
# quick-start test runs), the Debian package test and Autobahn find it
# built; a cargo command run without these variables builds plain release.
# Tools that take minutes to install (mdBook, autobahntestsuite) are kept
# in ~/.cache/holdfast (HOLDFAST_CACHE), where the next run finds them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

# What git sees now: the run must leave it so (a clean clone stays clean).
tree_before=$(git status --porcelain 2>/dev/null || true)
# What the suite's temporary files are called (hf-*, holdfast-*, and what
# Chromium makes for itself): none may be left in the temp folder after
# the run.
tmp=${TMPDIR:-/tmp}
suite_tmp() { (cd "$tmp" && ls -d hf-* holdfast-* org.chromium.Chromium.* 2>/dev/null | sort) || true; }
tmp_before=$(suite_tmp)

step "python client libraries (.venv)"
scripts/python-env.sh

step "chromium for the browser tests"
scripts/browser-env.sh

step "npm packages the browser pages load (.npm)"
scripts/npm-env.sh

step "varnish for the CDN chaining tests"
scripts/varnish-env.sh

step "pushpin for the interoperability tests"
scripts/pushpin-env.sh

step "nats-server for the bus tests"
scripts/nats-env.sh

step "format"
cargo fmt --all -- --check

step "build (release profile, debug assertions and overflow checks)"
cargo build --release --locked

step "lint"
cargo clippy --release --workspace --all-targets -- -D warnings

step "every feature set of the wire crate builds"
# Without default features it is what the fuzz targets build (below).
cargo check --release -p holdfast-protocol --no-default-features --features zmq --quiet

step "the manual (mdBook in docs/: links checked, first page rendered in chromium)"
scripts/manual.sh

step "fuzz targets compile"
# One target folder for both fuzz crates, and no libFuzzer (C++) to build
# for a type check: cargo fuzz links it through the crates' default feature.
for manifest in fuzz/Cargo.toml connmgr/fuzz/Cargo.toml; do
  RUSTFLAGS="--cfg fuzzing" CARGO_TARGET_DIR=target/fuzz cargo check --manifest-path "$manifest" --locked --no-default-features --quiet
done

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nholdfast: %d passed, %d failed\n", p, f }' "$log"
[ "$status" -eq 0 ] || exit "$status"

step "the tests left the build as it was (cargo build --release compiles nothing)"
# A test that runs cargo (the package and quick-start tests) with other
# features or environment than the build above rebuilds the workspace:
# minutes of the test command, twice (again at the next cargo build).
artifacts=$(cargo build --release --locked --message-format=json)
rebuilt=$(grep '"reason":"compiler-artifact"' <<<"$artifacts" | grep -c '"fresh":false' || true)
if [ "$rebuilt" -ne 0 ]; then
  echo "after the tests, cargo build --release compiled $rebuilt crates again" >&2
  exit 1
fi

step "Autobahn|TestSuite through Holdfast (WebSocket conformance, compression on; 12.* and 13.* in part: scripts/autobahn.sh --full runs them all)"
AUTOBAHN_DIRECT=tests/autobahn/direct.json scripts/autobahn.sh

step "the working tree is as the tests found it"
tree_after=$(git status --porcelain 2>/dev/null || true)
if [ "$tree_after" != "$tree_before" ]; then
  echo "the test run changed the working tree (git status before, then after):" >&2
  echo "$tree_before" >&2
  echo "--" >&2
  echo "$tree_after" >&2
  exit 1
fi

step "the temp folder holds nothing new of the suite's"
left=$(comm -13 <(echo "$tmp_before") <(suite_tmp))
if [ -n "$left" ]; then
  echo "the test run left these in $tmp:" >&2
  echo "$left" >&2
  exit 1
fi
