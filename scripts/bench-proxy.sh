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

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v pushpin >/dev/null || need+=(pushpin)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --bins --quiet

work=$(mktemp -d /tmp/hf-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ORIGIN=28080 HOLDFAST=28999 PUSHPIN=29999

# Origin: nginx answering a small fixed body.
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN;
    location / { default_type text/plain; return 200 "hello from the origin\n"; }
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

# Holdfast: built-in defaults, ports moved off the standard ones.
mkdir -p "$work/holdfast"
cat > "$work/holdfast/holdfast.conf" <<CONF
[global]
rundir=$work/holdfast/run
[runner]
http_port=127.0.0.1:$HOLDFAST
log_level=1
[proxy]
routesfile=routes
[handler]
command_spec=tcp://127.0.0.1:28563
CONF
echo "* 127.0.0.1:$ORIGIN" > "$work/holdfast/routes"
target/release/holdfast --config "$work/holdfast/holdfast.conf" > "$work/holdfast/log" 2>&1 &
pids+=($!)

# Pushpin 1.36 from Debian, as reference/running-pushpin.md describes.
mkdir -p "$work/pushpin/run" "$work/pushpin/log"
sed -e "s|^rundir=.*|rundir=$work/pushpin/run|" \
    -e "s|^logdir=.*|logdir=$work/pushpin/log|" \
    -e "s|^services=.*|services=condure,zurl,pushpin-proxy,pushpin-handler|" \
    -e "s|^http_port=.*|http_port=127.0.0.1:$PUSHPIN|" \
    -e "s|^log_level=.*|log_level=1|" \
    -e "s|^push_in_spec=.*|push_in_spec=tcp://127.0.0.1:29560|" \
    -e "s|^push_in_sub_specs=.*|push_in_sub_specs=tcp://127.0.0.1:29562|" \
    -e "s|^push_in_http_port=.*|push_in_http_port=29561|" \
    -e "s|^command_spec=.*|command_spec=tcp://127.0.0.1:29563|" \
    /etc/pushpin/pushpin.conf > "$work/pushpin/pushpin.conf"
sed -i "s|^\[proxy\]$|[proxy]\nzurl_out_specs=ipc://$work/pushpin/run/pushpin-zurl-in\nzurl_out_stream_specs=ipc://$work/pushpin/run/pushpin-zurl-in-stream\nzurl_in_specs=ipc://$work/pushpin/run/pushpin-zurl-out|" "$work/pushpin/pushpin.conf"
echo "* 127.0.0.1:$ORIGIN" > "$work/pushpin/routes"
pushpin --config "$work/pushpin/pushpin.conf" --merge-output > "$work/pushpin/out" 2>&1 &
pids+=($!)

wait_ok() {
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$1/" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "port $1 never answered 200" >&2
  return 1
}
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
HOLDFAST_RSS=$(rss_kb $(tree_pids "${pids[1]}"))
PUSHPIN_RSS=$(rss_kb $(tree_pids "${pids[2]}"))

echo
echo "wrk -t$THREADS -c$CONNS -d${SECONDS_PER_RUN}s, $RUNS alternating runs, median requests/s"
echo "| path | req/s (median) | runs | RSS after (all processes) |"
echo "|---|---|---|---|"
echo "| nginx origin directly | $O | ${o[*]} | |"
echo "| Holdfast -> nginx | $H | ${h[*]} | ${HOLDFAST_RSS} KiB |"
echo "| Pushpin 1.36 -> nginx | $P | ${p[*]} | ${PUSHPIN_RSS} KiB |"
awk -v h="$H" -v p="$P" 'BEGIN { printf "Holdfast / Pushpin = %.2f\n", h / p }'
