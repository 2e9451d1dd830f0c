#!/usr/bin/env bash
# Autobahn|TestSuite (the WebSocket conformance suite) through Holdfast.
#
# Runs the fuzzing client twice in one go, against the same echo origin
# (tests/python/ws_origin.py, on the `websockets` library, permessage-deflate
# on): once directly and once through a Holdfast passthrough route with
# allow_compression=true. Fails when a case that passes directly does not
# pass through Holdfast. Prints a summary table per category.
#
# Usage: scripts/autobahn.sh [--full] [CASES]
#        Default: categories 1-7 and 10 whole, and of 12 (compressed
#        payloads) and 13 (deflate parameters) one case of each message-size
#        group in every group (60 of 216 cases: see `subset` below); with
#        --full, all of 12 and 13. CASES: a pattern, e.g. '9.*' for the
#        performance cases.
# Environment: HOLDFAST_BIN_DIR (default target/release; build it first),
#              AUTOBAHN_REPORT (keep the HTML reports in that folder, one
#                per fuzzing client),
#              AUTOBAHN_DIRECT=FILE: take the direct run's results from FILE
#                instead of running it (the test command does, with
#                tests/autobahn/direct.json: the direct run alone takes 11
#                minutes on 2 cores, and depends only on the pinned
#                autobahntestsuite and websockets versions),
#              AUTOBAHN_SAVE_DIRECT=FILE: write the direct run's results
#                there (to renew that file).
#
# autobahntestsuite is Python 2 code: it is installed from PyPI (0.8.2)
# with pyenv's Python 2.7.18 into ~/.cache/holdfast/autobahn-0.8.2
# (HOLDFAST_CACHE), once: a clean clone finds it there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
full=
if [ "${1:-}" = --full ]; then
  full=1
  shift
fi

python2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}
if [ ! -x "$python2" ]; then
  echo "autobahn: Python 2.7 not found at $python2 (set PYTHON2)" >&2
  exit 1
fi
cache=${HOLDFAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/holdfast}
install=$cache/autobahn-0.8.2
lib=$install/lib
if [ ! -f "$install/installed" ]; then
  echo "autobahn: installing autobahntestsuite 0.8.2 into $install"
  # Into a folder of its own, moved into place whole: a run stopped halfway
  # leaves nothing that looks installed.
  fresh=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-autobahn-install.XXXXXX")
  "$python2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$fresh/lib" autobahntestsuite==0.8.2
  touch "$fresh/installed"
  mkdir -p "$cache"
  rm -rf "$install"
  mv "$fresh" "$install"
fi
[ -x .venv/bin/python ] || scripts/python-env.sh

bins=${HOLDFAST_BIN_DIR:-$root/target/release}
[ -x "$bins/holdfast" ] || { echo "autobahn: $bins/holdfast not built" >&2; exit 1; }

# Case patterns, dealt over two fuzzing clients running side by side: the
# client (Python 2) is what limits a run, and there are two cores.
# Without --full, 12.* and 13.* in part. Each group is 18 cases of 1,000
# messages: 12.N one payload (JSON, a bitmap, Faust, HTML, a PDF) with the
# default deflate offer, 13.N one set of deflate parameters (context takeover,
# window bits 0, 9 or 15, a fallback of three offers) with the JSON payload.
# Case k's size: 1-4 16 B-1 KiB, 5-8 4-32 KiB, 9-10 64 and 128 KiB,
# 11-15 8-128 KiB in 256-byte frames, 16-18 128 KiB in 1-32 KiB frames. One
# case of each size group in every group, rotated, so every size meets both
# of what Holdfast sends back (compressed, and uncompressed when the client
# asks for a window below 15: 13.3, 13.5, 13.7), text and binary, with and
# without context takeover. Case 15 (512 frames a message, the slowest) runs
# with --full only; 14 covers the same path.
subset=(12.1:1,5,9,11,16 12.2:2,6,10,12,17 12.3:3,7,9,13,18 12.4:4,8,10,14,16
        12.5:1,6,9,12,17 13.1:2,7,10,11,18 13.2:3,8,9,12,16 13.3:4,5,10,13,17
        13.4:1,6,9,14,18 13.5:2,7,9,11,16 13.6:3,8,10,12,17 13.7:4,5,10,14,18)
if [ -n "${1:-}" ]; then
  patterns=("$1")
else
  patterns=('1.*' '2.*' '3.*' '4.*' '5.*' '6.*' '7.*' '10.*')
  if [ -n "$full" ]; then
    patterns+=('12.*' '13.*')
  else
    for group in "${subset[@]}"; do
      IFS=, read -ra cases <<<"${group#*:}"
      for k in "${cases[@]}"; do
        patterns+=("${group%%:*}.$k")
      done
    done
  fi
fi
shards=("" "")
for i in "${!patterns[@]}"; do
  n=$((i % 2))
  shards[$n]="${shards[$n]:+${shards[$n]}, }\"${patterns[$i]}\""
done

work=$(mktemp -d /tmp/holdfast-autobahn.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The origin.
.venv/bin/python tests/python/ws_origin.py --deflate > "$work/origin.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q '"port"' "$work/origin.log" 2>/dev/null && break
  sleep 0.1
done
origin_port=$(head -1 "$work/origin.log" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["port"])')

# Holdfast in front of it.
port=$(free_port)
mkdir -p "$work/run"
cat > "$work/holdfast.conf" <<EOF
[global]
rundir=$work/run
[runner]
http_port=127.0.0.1:$port
allow_compression=true
[handler]
push_in_spec=tcp://127.0.0.1:$(free_port)
push_in_sub_specs=tcp://127.0.0.1:$(free_port)
push_in_http_port=$(free_port)
command_spec=tcp://127.0.0.1:$(free_port)
EOF
"$bins/holdfast" --config "$work/holdfast.conf" --route "* 127.0.0.1:$origin_port" \
  > "$work/holdfast.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  grep -q 'holdfast ready' "$work/holdfast.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'holdfast ready' "$work/holdfast.log" || { cat "$work/holdfast.log" >&2; exit 1; }

direct=${AUTOBAHN_DIRECT:-}
servers='{"agent": "holdfast", "url": "ws://127.0.0.1:'$port'/echo"}'
if [ -z "$direct" ]; then
  servers='{"agent": "origin", "url": "ws://127.0.0.1:'$origin_port'/echo"}, '$servers
fi
echo "autobahn: cases ${patterns[*]}, origin :$origin_port, holdfast :$port"
started=$(date +%s)
clients=()
for n in 0 1; do
  [ -n "${shards[$n]}" ] || continue
  mkdir -p "$work/client-$n"
  cat > "$work/client-$n/fuzzingclient.json" <<EOF
{
  "outdir": "$work/client-$n/reports",
  "servers": [$servers],
  "cases": [${shards[$n]}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
  (cd "$work/client-$n" && "$python2" -c "
import site, sys
site.addsitedir('$lib')
sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', 'fuzzingclient.json']
from autobahntestsuite import wstest
wstest.run()
" > wstest.log 2>&1) &
  clients+=($!)
done
for n in "${!clients[@]}"; do
  wait "${clients[$n]}" || { tail -30 "$work"/client-*/wstest.log >&2; exit 1; }
done
echo "autobahn: ran in $(( $(date +%s) - started )) s"

if [ -n "${AUTOBAHN_REPORT:-}" ]; then
  rm -rf "$AUTOBAHN_REPORT" && mkdir -p "$AUTOBAHN_REPORT"
  for report in "$work"/client-*; do cp -r "$report/reports" "$AUTOBAHN_REPORT/${report##*/}"; done
fi

.venv/bin/python - "$work" "$direct" "${AUTOBAHN_SAVE_DIRECT:-}" <<'EOF'
import glob, json, sys
from collections import defaultdict

# Each client's report, merged per agent.
index = defaultdict(dict)
for path in glob.glob(sys.argv[1] + "/client-*/reports/index.json"):
    for agent, cases in json.load(open(path)).items():
        index[agent].update(cases)
# Only what the comparison needs: each case's behaviour.
keep = ("behavior", "behaviorClose")
if sys.argv[2]:
    recorded = json.load(open(sys.argv[2]))
    missing = sorted(set(index["holdfast"]) - set(recorded))
    if missing:
        sys.exit(f"autobahn: {sys.argv[2]} has no result for {missing[:5]}...: renew it (AUTOBAHN_SAVE_DIRECT)")
    index["origin"] = {c: r for c, r in recorded.items() if c in index["holdfast"]}
if sys.argv[3]:
    order = lambda case: [int(p) for p in case.split(".")]
    lines = [
        f'"{case}": {json.dumps({k: index["origin"][case][k] for k in keep})}'
        for case in sorted(index["origin"], key=order)
    ]
    with open(sys.argv[3], "w") as out:
        out.write("{\n" + ",\n".join(lines) + "\n}\n")
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}


def passed(result):
    return result["behavior"] in PASS and result["behaviorClose"] in PASS | {"UNIMPLEMENTED"}


def key(case):
    return [int(p) for p in case.split(".")]


table = defaultdict(lambda: defaultdict(lambda: [0, 0]))
regressions = []
for case in sorted(index["holdfast"], key=key):
    category = case.split(".")[0]
    for agent in ("origin", "holdfast"):
        result = index[agent].get(case)
        counts = table[category][agent]
        counts[1] += 1
        if result and passed(result):
            counts[0] += 1
    direct, through = index["origin"].get(case), index["holdfast"].get(case)
    if direct and passed(direct) and not (through and passed(through)):
        regressions.append((case, through))

source = "recorded" if sys.argv[2] else "run now"
print(f"| category | origin directly ({source}) | through Holdfast |")
print("|---|---|---|")
for category in sorted(table, key=int):
    o, h = table[category]["origin"], table[category]["holdfast"]
    print(f"| {category} | {o[0]}/{o[1]} | {h[0]}/{h[1]} |")
if regressions:
    print(f"\nautobahn: {len(regressions)} case(s) pass directly but not through Holdfast:")
    for case, result in regressions:
        print(f"  {case}: {result}")
    sys.exit(1)
print("\nautobahn: every case that passes directly passes through Holdfast")
EOF
