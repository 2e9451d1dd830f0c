#!/usr/bin/env bash
# Held streams and fan-out, Holdfast beside Pushpin 1.36, in one run.
# For each proxy, holdfast-bench holds N stream connections (nginx answers
# Grip-Hold: stream on channel "bench"), publishes M items over HTTP one
# after another and reports JSON: connect rate, RSS per held connection (all
# the proxy's processes), publish->delivery latency to the first and last
# subscriber, deliveries/s. Pushpin runs with its default config and a tuned
# one (message_rate raised; it paces deliveries at 2500/s by default).
#
# Usage: scripts/bench-fanout.sh [connections, default 10000] [messages, default 5]
# PROXIES="holdfast pushpin-default pushpin-tuned" (the default) selects runs;
# holdfast-2connmgr is Holdfast with connmgr_count=2; holdfast-alt is the
# build in $HOLDFAST_ALT_BIN (A/B-compare a change in one run). A name may
# be repeated (runs alternate, each gets its row).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-10000}
MESSAGES=${2:-5}
. scripts/bench-lib.sh
start_nginx
wait_ok $ORIGIN

# MODE=ws holds WebSocket connections instead (nginx's /ws is a
# WebSocket-over-HTTP origin subscribing each to "bench") and publishes
# ws-message items.
MODE=${MODE:-http}
if [ "$MODE" = ws ]; then
  BENCH_PATH=/ws; BENCH_ARGS="${BENCH_ARGS:-} --websocket"
else
  BENCH_PATH=/stream
fi

run_bench() { # name target-port publish-port pid
  echo "== $1"
  target/release/holdfast-bench --target "127.0.0.1:$2" --path "$BENCH_PATH" \
    --connections "$CONNECTIONS" --messages "$MESSAGES" \
    --publish "http://127.0.0.1:$3" --pids "$4" $BENCH_ARGS | tee "$work/$run-$1.json"
}

BENCH_ARGS=${BENCH_ARGS:-}  # more holdfast-bench options, e.g. --interval-ms 500
PROXIES=${PROXIES:-holdfast pushpin-default pushpin-tuned}
run=0
for name in $PROXIES; do
  run=$((run + 1))
  case $name in
    holdfast)
      start_holdfast; wait_ok $HOLDFAST; wait_ok $HOLDFAST_PUBLISH
      run_bench holdfast $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" ;;
    holdfast-2connmgr)  # connmgr_count=2: what a second connmgr buys
      HOLDFAST_RUNNER=connmgr_count=2 start_holdfast; wait_ok $HOLDFAST; wait_ok $HOLDFAST_PUBLISH
      run_bench holdfast-2connmgr $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" ;;
    holdfast-alt)
      HOLDFAST_BIN=${HOLDFAST_ALT_BIN:?holdfast-alt needs HOLDFAST_ALT_BIN} start_holdfast
      wait_ok $HOLDFAST; wait_ok $HOLDFAST_PUBLISH
      run_bench holdfast-alt $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" ;;
    pushpin-default)
      start_pushpin; wait_ok $PUSHPIN; wait_ok $PUSHPIN_PUBLISH
      run_bench pushpin-default $PUSHPIN $PUSHPIN_PUBLISH "$PUSHPIN_PID" ;;
    pushpin-tuned)
      start_pushpin -e "s|^message_rate=.*|message_rate=1000000|"; wait_ok $PUSHPIN; wait_ok $PUSHPIN_PUBLISH
      run_bench pushpin-tuned $PUSHPIN $PUSHPIN_PUBLISH "$PUSHPIN_PID" ;;
    *) echo "unknown proxy $name" >&2; exit 2 ;;
  esac
  stop_last
done

echo
echo "holdfast-bench --connections $CONNECTIONS --messages $MESSAGES, $MODE (latencies in ms)"
echo "| proxy | connected | connect/s | RSS KiB/conn at connect | settled | settled by process | given back after close | first p50 | first p99 | last p50 | last p99 | last max | deliveries/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
run=0
for name in $PROXIES; do
  run=$((run + 1))
  python3 - "$work/$run-$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, l = r["latency_first_subscriber"], r["latency_last_subscriber"]
by = ", ".join(f"{n.removeprefix('holdfast-')} {kb}" for n, kb in r["rss_kb_per_connection_by_process"].items() if kb >= 0.1)
print(f"| {sys.argv[2]} | {r['connected']}/{r['connections']} | {r['connect_rate_per_sec']:.0f} | {r['rss_kb_per_connection']:.1f} | "
      f"{r['rss_kb_per_connection_settled']:.1f} | {by} | "
      f"{r['rss_returned_after_close_pct']:.0f}% | "
      f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {l['p50_ms']:.1f} | {l['p99_ms']:.1f} | {l['max_ms']:.1f} | {r['deliveries_per_sec']:.0f} |")
PY
done
