#!/usr/bin/env bash
# Soak: many held streams for a long time under steady publishing, Holdfast
# beside Pushpin 1.36 (default config), one after the other, same scenario.
# Connections are spread over PROCS holdfast-bench processes, each from its
# own 127.0.0.x address (the per-process open-file limit here is 20,000).
# One process publishes RATE items/s for DURATION seconds and samples the
# proxy's RSS every 10 s; the others only hold and count. Reported: held
# connections, deliveries lost (every connection must get every item), RSS
# at warm-up (after 60 s) and at the end, and the growth between them.
#
# Usage: scripts/bench-soak.sh [connections, default 19000] [seconds, default 600]
# RATE=0.1 (items/s: 1,900 deliveries/s at 19,000, under Pushpin's default
# pacing of 2,500/s), PROCS (default 4, or one per 15,000 connections),
# CONNMGRS (Holdfast's connmgr_count, default one per 15,000 connections),
# PROXIES="holdfast pushpin-default".
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-19000}
DURATION=${2:-600}
RATE=${RATE:-0.1}
PROCS=${PROCS:-$(( CONNECTIONS > 60000 ? (CONNECTIONS + 14999) / 15000 : 4 ))}
CONNMGRS=${CONNMGRS:-$(( (CONNECTIONS + 14999) / 15000 ))}
# Connection attempts in flight per process: gentle, so the scenario is the
# soak and not a connection storm (Pushpin answers 502 to part of a storm).
CONCURRENCY=${CONCURRENCY:-32}
MESSAGES=$(python3 -c "print(max(1, round($RATE * $DURATION)))")
PER_PROC=$(( (CONNECTIONS + PROCS - 1) / PROCS ))
. scripts/bench-lib.sh
start_nginx
wait_ok $ORIGIN

soak() { # name target-port publish-port pid
  local name=$1 target=$2 publish=$3 pid=$4 i
  echo "== $name: $CONNECTIONS connections over $PROCS processes, $MESSAGES items at $RATE/s"
  local listeners=()
  for i in $(seq 2 "$PROCS"); do
    target/release/holdfast-bench --target "127.0.0.1:$target" --path /stream \
      --connections "$PER_PROC" --messages "$MESSAGES" --listen-only \
      --connect-concurrency "$CONCURRENCY" \
      --sources "127.0.0.$i" --timeout $((DURATION + 300)) \
      > "$work/$name-listener-$i.json" 2> "$work/$name-listener-$i.err" &
    listeners+=($!)
  done
  # Publishing starts once every listener holds its connections.
  for i in $(seq 2 "$PROCS"); do
    for _ in $(seq 1 600); do
      grep -q '^ready' "$work/$name-listener-$i.err" 2>/dev/null && break
      sleep 0.5
    done
  done
  target/release/holdfast-bench --target "127.0.0.1:$target" --path /stream \
    --connections "$PER_PROC" --messages "$MESSAGES" --rate "$RATE" \
    --connect-concurrency "$CONCURRENCY" \
    --sources 127.0.0.$((PROCS + 1)) --publish "http://127.0.0.1:$publish" \
    --pids "$pid" --timeout 300 > "$work/$name-driver.json"
  for l in "${listeners[@]}"; do wait "$l" || true; done
  python3 - "$work" "$name" "$PROCS" <<'PY'
import json, sys, glob
work, name, procs = sys.argv[1], sys.argv[2], int(sys.argv[3])
driver = json.load(open(f"{work}/{name}-driver.json"))
parts = [driver] + [json.load(open(f)) for f in sorted(glob.glob(f"{work}/{name}-listener-*.json"))]
connected = sum(p["connected"] for p in parts)
lost = sum(p["lost_deliveries"] for p in parts)
short = sum(p["connections_missing_items"] for p in parts)
samples = driver["rss_kb_samples"]
warm = next((kb for t, kb in samples if t >= 60), None)
end = samples[-1][1] if samples else None
json.dump({"proxy": name, "connections": sum(p["connections"] for p in parts),
           "connected": connected, "items": driver["published"],
           "lost_deliveries": lost, "connections_missing_items": short,
           "rss_kb_warm": warm, "rss_kb_end": end,
           "rss_growth_after_warmup_pct": driver["rss_growth_after_warmup_pct"],
           "rss_kb_samples": samples},
          open(f"{work}/{name}.json", "w"))
print(json.dumps({k: v for k, v in json.load(open(f"{work}/{name}.json")).items() if k != "rss_kb_samples"}))
PY
}

PROXIES=${PROXIES:-holdfast pushpin-default}
HOLDFAST_RUNNER=$(many_connections_runner "$CONNECTIONS" "$CONNMGRS") each_proxy soak

echo
echo "bench-soak: $CONNECTIONS connections, $DURATION s, $RATE items/s ($MESSAGES items)"
echo "| proxy | connected | items | lost deliveries | RSS MiB after warm-up | RSS MiB at end | growth |"
echo "|---|---|---|---|---|---|---|"
for name in $PROXIES; do
  python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mib = lambda kb: f"{kb / 1024:.1f}" if kb else "-"
g = r["rss_growth_after_warmup_pct"]
print(f"| {r['proxy']} | {r['connected']}/{r['connections']} | {r['items']} | {r['lost_deliveries']} "
      f"({r['connections_missing_items']} connections short) | {mib(r['rss_kb_warm'])} | {mib(r['rss_kb_end'])} | "
      + (f"{g:+.1f}%" if g is not None else "-") + " |")
PY
done
