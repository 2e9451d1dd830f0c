#!/usr/bin/env bash
# Chaining through a CDN, in one run: new held connections per second and
# origin requests per N connections, for Holdfast -> Varnish (cache hits),
# Holdfast -> origin directly, Holdfast's own edge cache, and Pushpin 1.36 ->
# Varnish; then a purge + publish storm (items naming a cache key, at a
# fixed rate) against Holdfast: purges sent, items each subscriber got, and
# how soon the last item arrived after the last publish.
#
# Usage: scripts/bench-cdn.sh [connections, default 10000]
# STORM="rate seconds subscribers" (default "1000 5 100").
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-10000}
read -r STORM_RATE STORM_SECONDS STORM_SUBSCRIBERS <<< "${STORM:-1000 5 100}"
. scripts/bench-lib.sh
start_nginx
wait_ok $ORIGIN
start_varnish
wait_ok $VARNISH

origin_requests() { [ -f "$work/nginx/cached.log" ] && wc -l < "$work/nginx/cached.log" || echo 0; }

run_connect() { # name port publish-port pid path
  local before after
  before=$(origin_requests)
  echo "== $1"
  target/release/holdfast-bench --target "127.0.0.1:$2" --path "$5" \
    --connections "$CONNECTIONS" --messages 1 \
    --publish "http://127.0.0.1:$3" --pids "$4" > "$work/$1.json"
  after=$(origin_requests)
  python3 - "$work/$1.json" "$1" "$((after - before))" "$5" <<'PY' | tee -a "$work/table"
import json, sys
r = json.load(open(sys.argv[1]))
origin = sys.argv[3] if sys.argv[4] == "/cached" else str(r["connected"])
print(f"| {sys.argv[2]} | {r['connected']}/{r['connections']} | {r['connect_rate_per_sec']:.0f} | {origin} | {r['latency_last_subscriber']['p50_ms']:.1f} |")
PY
}

# Clear Varnish between runs, so each starts with one miss.
purge_varnish() { curl -fsS -X PURGE -H "Host: bench" "http://127.0.0.1:$VARNISH/cached" >/dev/null; }

HOLDFAST_ROUTE="* 127.0.0.1:$VARNISH" start_holdfast; wait_ok $HOLDFAST_PUBLISH
run_connect holdfast-varnish $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" /cached
stop_last
HOLDFAST_ROUTE="* 127.0.0.1:$ORIGIN" start_holdfast; wait_ok $HOLDFAST_PUBLISH
run_connect holdfast-direct $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" /stream
stop_last
HOLDFAST_ROUTE="*,cache 127.0.0.1:$ORIGIN" start_holdfast; wait_ok $HOLDFAST_PUBLISH
run_connect holdfast-edge-cache $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" /cached
stop_last
purge_varnish
PUSHPIN_ROUTE="* 127.0.0.1:$VARNISH" start_pushpin; wait_ok $PUSHPIN_PUBLISH
run_connect pushpin-varnish $PUSHPIN $PUSHPIN_PUBLISH "$PUSHPIN_PID" /cached
stop_last

# The storm: purges go to nginx's sink, which counts them.
STORM_ITEMS=$((STORM_RATE * STORM_SECONDS))
HOLDFAST_ROUTE="* 127.0.0.1:$ORIGIN" HOLDFAST_HANDLER="purge_targets=http://127.0.0.1:$PURGE_SINK" start_holdfast
wait_ok $HOLDFAST_PUBLISH
echo "== storm"
target/release/holdfast-bench --target "127.0.0.1:$HOLDFAST" --path /stream \
  --connections "$STORM_SUBSCRIBERS" --messages "$STORM_ITEMS" --rate "$STORM_RATE" --purge \
  --publish "http://127.0.0.1:$HOLDFAST_PUBLISH" | tee "$work/storm.json"
purges=$(wc -l < "$work/nginx/purges.log")
stop_last

echo
echo "holdfast-bench --connections $CONNECTIONS --messages 1 (connect/s: held connections set up per second; origin: requests the origin got)"
echo "| path | connected | connect/s | origin requests | publish->last subscriber ms |"
echo "|---|---|---|---|---|"
cat "$work/table"
echo
python3 - "$work/storm.json" "$purges" "$STORM_SECONDS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["last_item_after_last_publish"]
print(f"storm: {r['published']} items at {r['publish_rate_per_sec']:.0f}/s to {r['connected']} subscribers, "
      f"{sys.argv[2]} purges (window 1 s, {sys.argv[3]} s), {r['items_received_per_connection']:.1f} items per subscriber, "
      f"last item reached {r['last_item_received_by']}/{r['connected']}, p50 {l['p50_ms']:.0f} ms / max {l['max_ms']:.0f} ms after the last publish")
PY
