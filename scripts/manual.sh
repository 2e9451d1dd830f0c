#!/usr/bin/env bash
# Builds the manual (the mdBook in docs/) into target/manual, fails on any
# broken internal link, and checks in headless Chromium that its first page
# renders: its DOM has the book's title, and a screenshot of it is not
# blank. mdBook comes from crates.io into ~/.cache/holdfast/mdbook-0.4.52
# (HOLDFAST_CACHE), once: a clean clone finds it there.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HOLDFAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/holdfast}
root=$cache/mdbook-0.4.52
mdbook=$root/bin/mdbook
if [ ! -x "$mdbook" ]; then
  # cargo install writes the binary last: a stopped install is no binary.
  cargo install mdbook --version 0.4.52 --locked --no-default-features \
    --features search --root "$root" --quiet
fi
rm -rf target/manual
"$mdbook" build docs
python3 scripts/check-links.py target/manual

page="file://$PWD/target/manual/index.html"
profile=$(mktemp -d "${TMPDIR:-/tmp}/hf-manual-chromium.XXXXXX")
trap 'rm -rf "$profile"' EXIT
chrome() {
  # TMPDIR inside the profile: Chromium leaves org.chromium.Chromium.* there.
  mkdir -p "$profile/tmp"
  TMPDIR="$profile/tmp" chromium --headless --no-sandbox --disable-gpu --user-data-dir="$profile" "$@" 2>/dev/null
}
dom=$(chrome --dump-dom "$page")
if ! grep -q '<title>Holdfast - Holdfast</title>' <<<"$dom" || ! grep -q 'id="holdfast"' <<<"$dom"; then
  echo "the manual's first page did not render with its title" >&2
  exit 1
fi
shot=target/manual-first-page.png
chrome --window-size=1280,900 --screenshot="$PWD/$shot" "$page" >/dev/null
size=$(stat -c %s "$shot")
# A blank 1280x900 page compresses to a few KiB; text and the sidebar do not.
if [ "$size" -lt 30000 ]; then
  echo "the screenshot of the manual's first page looks blank ($size bytes)" >&2
  exit 1
fi
echo "manual: target/manual/index.html (first page: $shot, $size bytes)"
