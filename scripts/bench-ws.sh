#!/usr/bin/env bash
# WebSocket echo, Holdfast beside Pushpin 1.36, in one run: holdfast-bench's
# echo origin (tungstenite) behind a passthrough route on each proxy, and
# holdfast-bench's echo client driving it directly (the ceiling), through
# Holdfast and through Pushpin (default config), alternating runs. Reported
# per path: echoes per second (median of the runs), round trip p50 and p99
# (of the median run), and messages lost (must be 0).
#
# Usage: scripts/bench-ws.sh [connections, default 50] [messages per
#        connection, default 2000] [bytes per message, default 100]
#        [in flight per connection, default 8]
# RUNS=3 alternating runs by default. Installs what bench-lib.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-50}
MESSAGES=${2:-2000}
SIZE=${3:-100}
IN_FLIGHT=${4:-8}
RUNS=${RUNS:-3}
. scripts/bench-lib.sh
ECHO=28090

target/release/holdfast-bench --serve-echo "127.0.0.1:$ECHO" 2>/dev/null &
pids+=($!)
HOLDFAST_ROUTE="* 127.0.0.1:$ECHO" start_holdfast
PUSHPIN_ROUTE="* 127.0.0.1:$ECHO" start_pushpin

listening() { # port: waits until it accepts connections
  for _ in $(seq 1 100); do
    if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on port $1" >&2
  return 1
}
listening $ECHO; listening $HOLDFAST; listening $PUSHPIN

echo_run() { # port -> JSON report
  target/release/holdfast-bench --ws-echo --target "127.0.0.1:$1" --path /echo \
    --connections "$CONNECTIONS" --messages "$MESSAGES" --size "$SIZE" \
    --in-flight "$IN_FLIGHT" --timeout 30
}
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['$1'])" 2>/dev/null \
  || python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# Warm up (connection pools, Pushpin's zurl).
echo_run $ECHO >/dev/null; echo_run $HOLDFAST >/dev/null; echo_run $PUSHPIN >/dev/null

declare -A reports
for run in $(seq 1 "$RUNS"); do
  for name in origin holdfast pushpin; do
    case $name in origin) port=$ECHO ;; holdfast) port=$HOLDFAST ;; pushpin) port=$PUSHPIN ;; esac
    reports[$name-$run]=$(echo_run $port)
  done
done

echo
echo "holdfast-bench --ws-echo: $CONNECTIONS connections x $MESSAGES messages of $SIZE bytes, $IN_FLIGHT in flight each; $RUNS alternating runs"
echo "| path | echoes/s (median) | runs | round trip p50 / p99 (median run) | lost |"
echo "|---|---|---|---|---|"
for name in origin holdfast pushpin; do
  rates=(); lost=0
  for run in $(seq 1 "$RUNS"); do
    r=${reports[$name-$run]}
    rates+=("$(echo "$r" | field echoes_per_sec | awk '{printf "%d", $1}')")
    lost=$((lost + $(echo "$r" | field lost)))
  done
  median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  for run in $(seq 1 "$RUNS"); do
    r=${reports[$name-$run]}
    if [ "$(echo "$r" | field echoes_per_sec | awk '{printf "%d", $1}')" = "$median" ]; then
      p50=$(echo "$r" | field round_trip_p50_ms); p99=$(echo "$r" | field round_trip_p99_ms)
      break
    fi
  done
  case $name in origin) label="echo origin directly" ;; holdfast) label="Holdfast -> origin" ;; pushpin) label="Pushpin 1.36 -> origin" ;; esac
  echo "| $label | $median | ${rates[*]} | $p50 / $p99 ms | $lost |"
done
