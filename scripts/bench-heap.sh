#!/usr/bin/env bash
# Where the bytes of a held stream go: heaptrack under each of Holdfast's
# processes while holdfast-bench holds N streams (nginx answers a stream
# hold on channel "bench") and publishes M items; then, per process, the
# heap at its peak divided by N, by allocation site (the first frame in
# Holdfast's own code, and the library frame it called).
#
# Usage: scripts/bench-heap.sh [connections, default 5000] [messages, default 5]
# MODE=ws holds WebSockets instead (nginx's /ws, a WebSocket-over-HTTP
# origin subscribing each to "bench"). BENCH_ARGS adds holdfast-bench
# options ("--connect-concurrency 5000" for a storm), SETTLE its
# --settle-secs (default 1).
# MASSIF=1 also writes target/heap/<process>.massif: the heap's total
# over time (`grep mem_heap_B`), for what is still held at a given moment
# (after a storm has settled, say) rather than at the peak. heaptrack
# 1.5's massif export gives no per-site breakdown for these runs.
# Builds the `profiling` profile (release with line tables) with the system
# allocator (--no-default-features): heaptrack sees malloc, not jemalloc.
# Reports go to target/heap/<process>.txt; a summary is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-5000}
MESSAGES=${2:-5}
command -v heaptrack >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq heaptrack >/dev/null
}
cargo build --profile profiling --no-default-features --bins --quiet
. scripts/bench-lib.sh
out=target/heap
rm -rf "$out" && mkdir -p "$out"

# The runner finds its helpers beside itself: each is a wrapper that runs
# the real one under heaptrack.
mkdir -p "$work/bin"
cp target/profiling/holdfast "$work/bin/"
for helper in connmgr proxy handler; do
  printf '#!/bin/sh\nexec heaptrack -o %s/%s %s/target/profiling/holdfast-%s "$@"\n' \
    "$work" "$helper" "$PWD" "$helper" > "$work/bin/holdfast-$helper"
  chmod +x "$work/bin/holdfast-$helper"
done

start_nginx
wait_ok $ORIGIN
HOLDFAST_BIN=$work/bin start_holdfast
wait_ok $HOLDFAST; wait_ok $HOLDFAST_PUBLISH
if [ "${MODE:-http}" = ws ]; then set -- --path /ws --websocket; else set -- --path /stream; fi
target/release/holdfast-bench --target "127.0.0.1:$HOLDFAST" "$@" \
  --connections "$CONNECTIONS" --messages "$MESSAGES" --settle-secs "${SETTLE:-1}" ${BENCH_ARGS:-} \
  --publish "http://127.0.0.1:$HOLDFAST_PUBLISH" --pids "$HOLDFAST_PID" > "$out/bench.json"
# heaptrack's shell stands between the runner and each helper, so the
# runner's SIGTERM does not reach them: stop them by their command lines,
# then let heaptrack finish writing.
stop_last
pkill -TERM -f "target/profiling/holdfast-.*$work" || true
while pgrep -f "heaptrack.*$work" >/dev/null; do sleep 0.5; done

for helper in connmgr proxy handler; do
  heaptrack_print -f "$work/$helper".zst --print-peaks 1 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 --peak-limit 40 --sub-peak-limit 10 \
    > "$out/$helper.txt" 2>/dev/null
  if [ -n "${MASSIF:-}" ]; then
    heaptrack_print -f "$work/$helper".zst --print-massif "$out/$helper.massif" \
      --massif-threshold 0.2 > /dev/null 2>&1
  fi
done
python3 - "$out" "$CONNECTIONS" <<'PY'
import collections, re, sys
out, n = sys.argv[1], int(sys.argv[2])
units = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
ours = re.compile(r" at ((connmgr|proxy-core|handler|grip|runtime|protocol)/src/\S+)")
lib = re.compile(r" at \S*/(hyper|tokio|tokio-util|h2|bytes|hashbrown|tungstenite|zmq)-[0-9.]+/src/(\S+)")
for helper in ("connmgr", "proxy", "handler"):
    sites, total = collections.Counter(), 0.0
    site, size, first_lib = None, 0.0, None
    for line in open(f"{out}/{helper}.txt"):
        m = re.match(r"\s*([0-9.]+)([KMG]?) consumed over \d+ calls from:", line)
        if m:
            if site:
                sites[site] += size
            size, site, first_lib = float(m.group(1)) * units[m.group(2)], None, None
            continue
        m = re.match(r"peak heap memory consumption: ([0-9.]+)([KMG]?)", line)
        if m:
            total = float(m.group(1)) * units[m.group(2)]
        if size and site is None:
            o, l = ours.search(line), lib.search(line)
            if l and first_lib is None:
                first_lib = f"{l.group(1)} {l.group(2)}"
            if o:
                site = o.group(1) + (f" <- {first_lib}" if first_lib else "")
    if site:
        sites[site] += size
    print(f"== {helper}: {total / n / 1024:.1f} KiB per held stream at the heap's peak (the process's own base included)")
    for where, bytes_ in sites.most_common(8):
        if bytes_ / n >= 100:
            print(f"  {bytes_ / n / 1024:6.2f} KiB  {where}")
PY
