#!/usr/bin/env bash
# Very many held streams, from several client processes: memory per held
# connection and fan-out to the last subscriber, Holdfast beside Pushpin
# 1.36, one after the other, same scenario.
#
# The per-process open-file limit here is 20,000, so the connections are
# spread over PROCS holdfast-bench processes (--listen-only), each from its
# own 127.0.0.x address, and Holdfast runs CONNMGRS connection managers.
# Once all are held and SETTLE seconds have passed, a publisher process
# sends M items, one every INTERVAL seconds; each listener notes when each
# item reached its first and last connection (wall clock), and the reports
# are merged: latency from publish to the first and to the last of all
# subscribers, per item (p50/p99 over the items), deliveries lost. RSS of
# the proxy's whole process tree, per process: before, once held, settled,
# and SETTLE seconds after every client left (the share of the growth up
# to the last item that went back).
#
# Usage: scripts/bench-held.sh [connections, default 20000] [items, default 5]
# PROXIES="holdfast pushpin-default" (default); PROCS (default one per
# 5,000 connections); CONCURRENCY connection attempts in flight per
# process (default 64: gentle), STORM=1 for all at once; CONNMGRS (default
# one per 15,000 connections); INTERVAL (default 2 s); SETTLE (default 15 s).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-20000}
MESSAGES=${2:-5}
PROCS=${PROCS:-$(( (CONNECTIONS + 4999) / 5000 ))}
PER_PROC=$(( (CONNECTIONS + PROCS - 1) / PROCS ))
CONCURRENCY=${CONCURRENCY:-64}
[ "${STORM:-0}" = 1 ] && CONCURRENCY=$PER_PROC
CONNMGRS=${CONNMGRS:-$(( (CONNECTIONS + 14999) / 15000 ))}
INTERVAL=${INTERVAL:-2}
SETTLE=${SETTLE:-15}
. scripts/bench-lib.sh
start_nginx
wait_ok $ORIGIN

# RSS KiB of a process tree, per program name, as JSON.
rss() { target/release/holdfast-bench --rss-only --pids "$1"; }

held() { # name target-port publish-port pid
  local name=$1 target=$2 publish=$3 pid=$4 i dir="$work/$1"
  mkdir -p "$dir"
  echo "== $name: $CONNECTIONS connections over $PROCS processes ($CONCURRENCY connecting at a time each)"
  rss "$pid" > "$dir/rss-before.json"
  local listeners=() started=$(date +%s.%N)
  for i in $(seq 1 "$PROCS"); do
    target/release/holdfast-bench --target "127.0.0.1:$target" --path /stream \
      --connections "$PER_PROC" --messages "$MESSAGES" --listen-only \
      --connect-concurrency "$CONCURRENCY" --sources "127.0.0.$((i + 1))" \
      --timeout $(( MESSAGES * INTERVAL + 120 )) \
      > "$dir/listener-$i.json" 2> "$dir/listener-$i.err" &
    listeners+=($!)
  done
  # Each listener says "ready" once all its connections are held (or failed).
  until [ "$(cat "$dir"/listener-*.err | grep -c '^ready')" -ge "$PROCS" ]; do sleep 0.2; done
  python3 -c "import time; print(time.time() - $started)" > "$dir/connect-secs"
  rss "$pid" > "$dir/rss-held.json"
  sleep "$SETTLE"
  rss "$pid" > "$dir/rss-settled.json"
  target/release/holdfast-bench --connections 0 --messages "$MESSAGES" \
    --rate "$(python3 -c "print(1 / $INTERVAL)")" --channel bench \
    --publish "http://127.0.0.1:$publish" > "$dir/publisher.json"
  rss "$pid" > "$dir/rss-published.json"
  for i in "${listeners[@]}"; do wait "$i" || true; done
  sleep "$SETTLE"
  rss "$pid" > "$dir/rss-closed.json"
  # Why connections failed, if any did (each listener names its first 5).
  grep -h '^connection' "$dir"/listener-*.err | head -5 || true
}

PROXIES=${PROXIES:-holdfast pushpin-default}
HOLDFAST_RUNNER=$(many_connections_runner "$CONNECTIONS" "$CONNMGRS") each_proxy held

echo
echo "$CONNECTIONS held streams over $PROCS client processes, $CONCURRENCY connecting at a time each, $MESSAGES items every ${INTERVAL}s (latencies in ms, RSS in KiB per held connection)"
echo "| proxy | connected | connect/s | RSS at connect | settled | settled by process | settled total MiB | given back after close | lost deliveries | first p50 | last p50 | last p99 | last max |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for name in $PROXIES; do
  python3 - "$work/$name" "$name" "$PROCS" "$CONNECTIONS" <<'PY'
import json, sys
d, name, procs, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
load = lambda f: json.load(open(f"{d}/{f}"))
listeners = [load(f"listener-{i}.json") for i in range(1, procs + 1)]
published = load("publisher.json")["published_at_us"]
connected = sum(l["connected"] for l in listeners)
lost = sum(l["lost_deliveries"] for l in listeners)
first, last = [], []
for k, at in enumerate(published):
    seen = [l["arrivals"][k] for l in listeners if l["arrivals"][k][0] > 0]
    if seen:
        first.append((min(s[1] for s in seen) - at) / 1000)
        last.append((max(s[2] for s in seen) - at) / 1000)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else float("nan")
before, held, settled, closed = (load(f"rss-{s}.json") for s in ("before", "held", "settled", "closed"))
total = lambda r: sum(r.values())
per = lambda r: (total(r) - total(before)) / max(connected, 1)
by = ", ".join(f"{n.removeprefix('holdfast-')} {(kb - before.get(n, 0)) / max(connected, 1):.1f}"
               for n, kb in sorted(settled.items()) if (kb - before.get(n, 0)) / max(connected, 1) >= 0.1)
published_rss, grown = load("rss-published.json"), 0
grown = total(published_rss) - total(before)
back = (total(published_rss) - total(closed)) * 100 / grown if grown > 0 else 0
secs = float(open(f"{d}/connect-secs").read())
print(f"| {name} | {connected}/{wanted} | {connected / secs:.0f} | {per(held):.1f} | {per(settled):.1f} | {by} | {total(settled) / 1024:.0f} | {back:.0f}% | {lost} | "
      f"{pct(first, .5):.1f} | {pct(last, .5):.1f} | {pct(last, .99):.1f} | {max(last, default=float('nan')):.1f} |")
PY
done
