#!/usr/bin/env bash
# Plain proxying throughput, Holdfast beside Pushpin 1.36, in one run:
# wrk against nginx directly (the ceiling), through Holdfast, and through
# Pushpin (default config: condure + pushpin-proxy + pushpin-handler), all on
# loopback with the same nginx origin. Runs alternate (H, P, H, P, ...) and
# the median of each is reported, since absolute numbers on a shared 2-core
# machine drift; compare the ratio.
#
# Usage: scripts/bench-proxy.sh [seconds per run, default 10] [runs, default 3]
# Installs wrk, nginx-light and pushpin with apt-get when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

. scripts/bench-lib.sh
start_nginx
start_holdfast
start_pushpin

wait_ok $ORIGIN; wait_ok $HOLDFAST; wait_ok $PUSHPIN

rate() { # port seconds -> requests/s (non-2xx counted as failures)
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$2"s "http://127.0.0.1:$1/")
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers on port $1:" >&2; echo "$out" >&2; fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss_kb() { # pids... -> total RSS in KiB
  local total=0
  for p in "$@"; do total=$((total + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0))); done
  echo $total
}
tree_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

# Warm up pools and caches.
rate $ORIGIN 2 >/dev/null; rate $HOLDFAST 2 >/dev/null; rate $PUSHPIN 2 >/dev/null

o=(); h=(); p=()
for _ in $(seq 1 "$RUNS"); do
  o+=("$(rate $ORIGIN "$SECONDS_PER_RUN")")
  h+=("$(rate $HOLDFAST "$SECONDS_PER_RUN")")
  p+=("$(rate $PUSHPIN "$SECONDS_PER_RUN")")
done
O=$(printf '%s\n' "${o[@]}" | median)
H=$(printf '%s\n' "${h[@]}" | median)
P=$(printf '%s\n' "${p[@]}" | median)
HOLDFAST_RSS=$(rss_kb $(tree_pids "$HOLDFAST_PID"))
PUSHPIN_RSS=$(rss_kb $(tree_pids "$PUSHPIN_PID"))

echo
echo "wrk -t$THREADS -c$CONNS -d${SECONDS_PER_RUN}s, $RUNS alternating runs, median requests/s"
echo "| path | req/s (median) | runs | RSS after (all processes) |"
echo "|---|---|---|---|"
echo "| nginx origin directly | $O | ${o[*]} | |"
echo "| Holdfast -> nginx | $H | ${h[*]} | ${HOLDFAST_RSS} KiB |"
echo "| Pushpin 1.36 -> nginx | $P | ${p[*]} | ${PUSHPIN_RSS} KiB |"
awk -v h="$H" -v p="$P" 'BEGIN { printf "Holdfast / Pushpin = %.2f\n", h / p }'
