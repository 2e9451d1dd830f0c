#!/usr/bin/env bash
# Scale-out, in one run: publish -> delivery latency to N held streams
# spread over three Holdfast instances, over the NATS bus (core NATS, and
# JetStream with history on) and over the ZeroMQ broker, beside one
# instance holding them all. holdfast-bench holds the streams (round robin
# over the instances; nginx answers Grip-Hold: stream on "bench"),
# publishes M items one after another (over HTTP through the instances in
# turn; to the broker's input with ZeroMQ for the broker row) and reports
# first/last-subscriber latency. A 3-node nats-server cluster (Debian's)
# runs on loopback for the NATS rows.
#
# Usage: scripts/bench-bus.sh [connections, default 3000] [messages, default 50]
# SETUPS="single broker nats nats-jetstream" (the default) selects rows.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-3000}
MESSAGES=${2:-50}
scripts/nats-env.sh
. scripts/bench-lib.sh
start_nginx
wait_ok $ORIGIN
NATS=/usr/sbin/nats-server
command -v nats-server >/dev/null && NATS=$(command -v nats-server)

# Instance i (0-2): client port 3i000, publish API 3i001, ZeroMQ inputs and
# command socket 3i002-3i004; extra [handler] lines as arguments.
start_instance() { # i handler-lines...
  local i=$1; shift
  local dir="$work/hf$i" base=$((30000 + i * 1000))
  mkdir -p "$dir"
  {
    printf '[global]\nrundir=%s/run\n[runner]\nhttp_port=127.0.0.1:%s\nlog_level=1\n' "$dir" "$base"
    printf '[proxy]\nroutesfile=routes\n[handler]\n'
    printf 'push_in_http_port=%s\npush_in_spec=tcp://127.0.0.1:%s\n' $((base + 1)) $((base + 2))
    printf 'push_in_sub_specs=tcp://127.0.0.1:%s\ncommand_spec=tcp://127.0.0.1:%s\n' $((base + 3)) $((base + 4))
    printf '%s\n' "$@"
  } > "$dir/holdfast.conf"
  echo "* 127.0.0.1:$ORIGIN" > "$dir/routes"
  target/release/holdfast --config "$dir/holdfast.conf" > "$dir/log" 2>&1 &
  pids+=($!)
  INSTANCE_PIDS+=($!)
  wait_ok "$base"; wait_ok $((base + 1))
  # Healthy: every process reported, the bus connected (its stream set up).
  for _ in $(seq 1 150); do
    curl -fsS -m 2 "http://127.0.0.1:$((base + 1))/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "instance $i never healthy: $(curl -sS "http://127.0.0.1:$((base + 1))/health")" >&2
  return 1
}

start_nats() {
  local routes="nats://127.0.0.1:36201,nats://127.0.0.1:36202,nats://127.0.0.1:36203"
  for n in 1 2 3; do
    mkdir -p "$work/nats$n"
    "$NATS" -a 127.0.0.1 -p $((36100 + n)) -n "n$n" --cluster_name bench \
      --cluster "nats://127.0.0.1:$((36200 + n))" --routes "$routes" \
      -js -sd "$work/nats$n" > "$work/nats$n/log" 2>&1 &
    pids+=($!)
  done
  for n in 1 2 3; do
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$((36100 + n))") 2>/dev/null && break
      sleep 0.1
    done
  done
  BUS_URL="nats://127.0.0.1:36101,nats://127.0.0.1:36102,nats://127.0.0.1:36103"
}

stop_all() {
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  pids=("${pids[0]}")
}

targets() { # count
  local out=() i
  for i in $(seq 0 $(($1 - 1))); do out+=("127.0.0.1:$((30000 + i * 1000))"); done
  (IFS=,; echo "${out[*]}")
}
apis() { # count
  local out=() i
  for i in $(seq 0 $(($1 - 1))); do out+=("http://127.0.0.1:$((30001 + i * 1000))"); done
  (IFS=,; echo "${out[*]}")
}

run_bench() { # name instances extra-args...
  local name=$1 count=$2; shift 2
  echo "== $name"
  target/release/holdfast-bench --target "$(targets "$count")" --path /stream \
    --connections "$CONNECTIONS" --messages "$MESSAGES" --publish "$(apis "$count")" \
    --pids "$(IFS=,; echo "${INSTANCE_PIDS[*]}")" "$@" | tee "$work/$name.json"
}

SETUPS=${SETUPS:-single broker nats nats-jetstream}
for setup in $SETUPS; do
  INSTANCE_PIDS=()
  case $setup in
    single)
      start_instance 0
      run_bench single 1 ;;
    broker)  # holdfast broker: publishers -> XSUB 36001, XPUB 36002 -> instances
      target/release/holdfast broker --in tcp://127.0.0.1:36001 --out tcp://127.0.0.1:36002 > "$work/broker.log" 2>&1 &
      pids+=($!)
      for i in 0 1 2; do
        start_instance "$i" push_in_sub_specs=tcp://127.0.0.1:36002 push_in_sub_connect=true
      done
      run_bench broker 3 --publish-zmq tcp://127.0.0.1:36001 --zmq-subscribers 3 ;;
    nats)
      start_nats
      for i in 0 1 2; do start_instance "$i" "bus_url=$BUS_URL"; done
      run_bench nats 3 ;;
    nats-jetstream)
      start_nats
      for i in 0 1 2; do
        start_instance "$i" "bus_url=$BUS_URL" history_size=100 bus_history_replicas=3
      done
      run_bench nats-jetstream 3 ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
  stop_all
done
