# Shared set-up for the benchmark scripts (sourced, not run): installs what
# is missing, builds the release binaries, and starts nginx (the origin),
# Holdfast and Pushpin 1.36 on loopback with their own folders and ports.
# Everything started is stopped on exit.

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v pushpin >/dev/null || need+=(pushpin)
command -v varnishd >/dev/null || need+=(varnish varnish-modules)
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

ORIGIN=28080 HOLDFAST=28999 HOLDFAST_PUBLISH=28561 PUSHPIN=29999 PUSHPIN_PUBLISH=29561
VARNISH=28081 PURGE_SINK=28082

# nginx: / answers a small fixed body; /stream answers a GRIP stream hold on
# channel "bench"; /cached the same, cacheable for 10 minutes, each request
# logged to $work/nginx/cached.log; /ws is a WebSocket-over-HTTP origin that
# accepts every connection with GRIP and subscribes it to channel "bench"
# (and answers any later request with no events). On $PURGE_SINK it answers
# anything (purges) with 200, logged to $work/nginx/purges.log.
start_nginx() {
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
    location /stream {
      default_type text/plain;
      add_header Grip-Hold stream;
      add_header Grip-Channel bench;
      return 200 "stream open\n";
    }
    location /cached {
      default_type text/plain;
      access_log $work/nginx/cached.log;
      add_header Grip-Hold stream;
      add_header Grip-Channel bench;
      add_header Cache-Control s-maxage=600;
      return 200 "stream open\n";
    }
    location /ws {
      default_type application/websocket-events;
      add_header Sec-WebSocket-Extensions grip;
      if (\$http_content_length = 6) {
        return 200 "OPEN\r\nTEXT 28\r\nc:{\\"type\\":\\"subscribe\\",\\"channel\\":\\"bench\\"}\r\n";
      }
      return 200 "";
    }
  }
  server {
    listen 127.0.0.1:$PURGE_SINK;
    access_log $work/nginx/purges.log;
    location / { return 200 "purged\n"; }
  }
}
NGINX
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
}

# [runner] settings for very many connections (for HOLDFAST_RUNNER):
# `connmgrs` connection managers, and client_maxconn (Pushpin's default
# is 50,000) with 30% headroom, since each connmgr gets an equal share of
# it and the kernel spreads connections over them unevenly.
many_connections_runner() { # connections connmgrs
  printf 'connmgr_count=%s\nclient_maxconn=%s\n' "$2" $(( $1 * 13 / 10 + 1000 ))
}

# Holdfast with built-in defaults, ports moved off the standard ones
# (HOLDFAST_BIN: the folder of another build's binaries).
start_holdfast() {
  mkdir -p "$work/holdfast"
  cat > "$work/holdfast/holdfast.conf" <<CONF
[global]
rundir=$work/holdfast/run
[runner]
http_port=127.0.0.1:$HOLDFAST
log_level=1
${HOLDFAST_RUNNER:-}
[proxy]
routesfile=routes
[handler]
command_spec=tcp://127.0.0.1:28563
push_in_spec=tcp://127.0.0.1:28560
push_in_sub_specs=tcp://127.0.0.1:28562
push_in_http_port=$HOLDFAST_PUBLISH
CONF
  echo "${HOLDFAST_ROUTE:-* 127.0.0.1:$ORIGIN,over_http}" > "$work/holdfast/routes"
  if [ -n "${HOLDFAST_HANDLER:-}" ]; then
    printf '%s\n' "$HOLDFAST_HANDLER" >> "$work/holdfast/holdfast.conf"
  fi
  "${HOLDFAST_BIN:-target/release}/holdfast" --config "$work/holdfast/holdfast.conf" > "$work/holdfast/log" 2>&1 &
  pids+=($!)
  HOLDFAST_PID=$!
}

# Pushpin 1.36 from Debian, as reference/running-pushpin.md describes; extra
# sed expressions (e.g. a message_rate) may be passed.
start_pushpin() {
  mkdir -p "$work/pushpin/run" "$work/pushpin/log"
  sed -e "s|^rundir=.*|rundir=$work/pushpin/run|" \
      -e "s|^logdir=.*|logdir=$work/pushpin/log|" \
      -e "s|^services=.*|services=condure,zurl,pushpin-proxy,pushpin-handler|" \
      -e "s|^http_port=.*|http_port=127.0.0.1:$PUSHPIN|" \
      -e "s|^log_level=.*|log_level=1|" \
      -e "s|^push_in_spec=.*|push_in_spec=tcp://127.0.0.1:29560|" \
      -e "s|^push_in_sub_specs=.*|push_in_sub_specs=tcp://127.0.0.1:29562|" \
      -e "s|^push_in_http_port=.*|push_in_http_port=$PUSHPIN_PUBLISH|" \
      -e "s|^command_spec=.*|command_spec=tcp://127.0.0.1:29563|" \
      "$@" /etc/pushpin/pushpin.conf > "$work/pushpin/pushpin.conf"
  sed -i "s|^\[proxy\]$|[proxy]\nzurl_out_specs=ipc://$work/pushpin/run/pushpin-zurl-in\nzurl_out_stream_specs=ipc://$work/pushpin/run/pushpin-zurl-in-stream\nzurl_in_specs=ipc://$work/pushpin/run/pushpin-zurl-out|" "$work/pushpin/pushpin.conf"
  echo "${PUSHPIN_ROUTE:-* 127.0.0.1:$ORIGIN,over_http}" > "$work/pushpin/routes"
  pushpin --config "$work/pushpin/pushpin.conf" --merge-output > "$work/pushpin/out" 2>&1 &
  pids+=($!)
  PUSHPIN_PID=$!
}

# Varnish with the repository's VCL, caching nginx.
start_varnish() {
  mkdir -p "$work/varnish"
  sed "s/\"8080\"/\"$ORIGIN\"/" cdn/varnish/holdfast.vcl > "$work/varnish/holdfast.vcl"
  varnishd -F -j none -T none -n "$work/varnish/work" -a "127.0.0.1:$VARNISH" \
    -f "$work/varnish/holdfast.vcl" -s malloc,64m > "$work/varnish/log" 2>&1 &
  pids+=($!)
}

# Runs `$1 <name> <target port> <publish port> <pid>` once per name in
# $PROXIES (holdfast, pushpin-default), starting that proxy before and
# stopping it after.
each_proxy() {
  local run=$1 name
  for name in $PROXIES; do
    case $name in
      holdfast)
        start_holdfast; wait_ok $HOLDFAST; wait_ok $HOLDFAST_PUBLISH
        "$run" holdfast $HOLDFAST $HOLDFAST_PUBLISH "$HOLDFAST_PID" ;;
      pushpin-default)
        start_pushpin; wait_ok $PUSHPIN; wait_ok $PUSHPIN_PUBLISH
        "$run" pushpin-default $PUSHPIN $PUSHPIN_PUBLISH "$PUSHPIN_PID" ;;
      *) echo "unknown proxy $name" >&2; exit 2 ;;
    esac
    stop_last
  done
}

stop_last() { # stops the most recently started service
  local pid=${pids[-1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'pids[-1]'
}

wait_ok() {
  for _ in $(seq 1 100); do
    if curl -fsS -m 2 "http://127.0.0.1:$1/" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "port $1 never answered 200" >&2
  return 1
}
