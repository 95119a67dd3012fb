#!/usr/bin/env bash
# Instructions per request, counted rather than timed: the bare Pingora proxy, Portcullis's
# public route and its authenticated route (a signed-in session cookie, a claim policy, the
# assertion and two claim headers; the configuration bench/dataplane.sh runs, both written by
# bench/common.sh, log level info with the access log on), each run under valgrind's callgrind
# against the same upstream (its own nginx process) while wrk sends keep-alive requests. Every
# user-space instruction of the proxy process is counted, its access-log writer thread included;
# the kernel's work (the system calls) is not.
#
# Throughput on a shared virtual machine moves 5-20 % from run to run (bench/dataplane.sh);
# instruction counts move well under 1 %, so they show what a change to our code costs or saves.
# They are not a speed: a request's time is about half system calls (docs/performance.md).
#
#   bench/instructions.sh [SECONDS]     measured seconds per proxy (default 10)
#   env BIN_DIR                         another build to count, as it is (bench/common.sh)
#   env CACHE_SIM=1                     also simulate the caches and branch predictor: level-1
#                                       instruction and data misses and mispredicted branches per
#                                       request (valgrind's model, not this processor's counters;
#                                       about twice as slow)
#   env LOCKED=1                        also count the proxies' locked instructions a request
#                                       (atomic read-modify-writes: reference counts, locks,
#                                       shared counters; bench/locked.py), and name the sites
#                                       that run most of them (LOCKED_SITES=N, default 12)
#
# The callgrind files are kept in target/bench-instructions/ for callgrind_annotate.
# Needs valgrind, wrk and nginx (installed from Debian's packages when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_MEASURED=${1:-10}

bench_tools valgrind

bench_build portcullis bare_pingora
bench_session

SIM=()
[ "${CACHE_SIM:-}" != 1 ] || SIM=(--cache-sim=yes --branch-sim=yes)
[ "${LOCKED:-}" != 1 ] || SIM+=(--dump-instr=yes)
OUT=target/bench-instructions
rm -rf "$OUT" && mkdir -p "$OUT"
bench_work

UP=$(port)
bench_upstream "$NGINX" "$WORK/up" "$UP"

# wrk counts as errors only answers above 399: this script makes it count every answer that is
# not a 200 (a sign-in redirect included), printed as "not 200: N".
cat >"$WORK/count.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not200 = 0 end
function response(status, headers, body) if status ~= 200 then not200 = not200 + 1 end end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("not200") end
  io.write("not 200: " .. n .. "\n")
end
LUA

# measure NAME PORT HOST COOKIE CMD...: start CMD under callgrind (not counting yet), warm it
# up, count the instructions of SECONDS_MEASURED seconds of requests for HOST (with COOKIE when
# not empty), every one of them answered 200; appends NAME, requests and instructions to
# $WORK/results.
measure() {
  local name=$1 listen=$2 host=$3 cookie=$4
  shift 4
  # The request's headers, as bench_ready takes them and as wrk's options.
  local sent=("Host: $host") headers=() h
  [ -z "$cookie" ] || sent+=("Cookie: $cookie")
  for h in "${sent[@]}"; do headers+=(-H "$h"); done
  valgrind --tool=callgrind "${SIM[@]}" --instr-atstart=no --callgrind-out-file="$OUT/$name.callgrind" \
    "$@" 2>"$WORK/logs/$name.log" &
  local pid=$!
  PIDS+=("$pid")
  # valgrind takes a while to start a proxy
  READY_SECONDS=60 bench_ready "$name" "http://127.0.0.1:$listen/" "${sent[@]}"
  wrk -t1 -c8 -d3s "${headers[@]}" "http://127.0.0.1:$listen/" >/dev/null
  callgrind_control -i on "$pid" >"$WORK/$name.control" 2>&1 ||
    { cat "$WORK/$name.control" >&2; echo "$name: callgrind_control failed" >&2; exit 1; }
  local run
  run=$(wrk -t1 -c8 -d"${SECONDS_MEASURED}s" -s "$WORK/count.lua" "${headers[@]}" "http://127.0.0.1:$listen/")
  callgrind_control -i off "$pid" >"$WORK/$name.control" 2>&1 ||
    { cat "$WORK/$name.control" >&2; echo "$name: callgrind_control failed" >&2; exit 1; }
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
  # Every counted request must have been let through: anything else means a broken setup.
  if ! grep -q '^not 200: 0$' <<<"$run" || grep -q 'Socket errors' <<<"$run"; then
    echo "$name: not every request was answered 200" >&2
    echo "$run" >&2
    exit 1
  fi
  local requests instructions
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  instructions=$(awk '/^totals:/ {print $2}' "$OUT/$name.callgrind")
  if [ -z "$requests" ] || [ -z "$instructions" ] || [ "$requests" = 0 ] || [ "$instructions" = 0 ]; then
    echo "$name: no count (requests '$requests', instructions '$instructions')" >&2
    exit 1
  fi
  # Every event callgrind recorded (the instructions alone, or with CACHE_SIM the misses too),
  # as its names and its totals, comma-separated.
  local events
  events=$(awk '/^events:/ {$1=""; e=$0} /^totals:/ {$1=""; t=$0} END {gsub(/^ | $/,"",e); gsub(/^ | $/,"",t); gsub(/ +/,",",e); gsub(/ +/,",",t); print e, t}' "$OUT/$name.callgrind")
  echo "$name $requests $instructions $events" >>"$WORK/results"
}

BARE_PORT=$(port)
measure bare-pingora "$BARE_PORT" bench.test "" "$BIN_DIR/examples/bare_pingora" \
  "127.0.0.1:$BARE_PORT" "127.0.0.1:$UP" 1

PC_PORT=$(port)
METRICS_PORT=$(port)
bench_portcullis_config "$WORK/portcullis.yaml" "$PC_PORT" "$METRICS_PORT" "$UP"
# As users run it: the default log level (the access log on), one worker like the bare proxy.
unset RUST_LOG
export PORTCULLIS_THREADS=1
measure portcullis "$PC_PORT" bench.test "" "$BIN_DIR/portcullis" serve --config "$WORK/portcullis.yaml"
measure portcullis-auth "$PC_PORT" auth.bench.test "_pomerium=$SESSION" \
  "$BIN_DIR/portcullis" serve --config "$WORK/portcullis.yaml"

python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
base = int(rows[0][2]) / int(rows[0][1])
print("%-14s %9s %21s %7s" % ("proxy", "requests", "instructions/request", "x bare"))
for name, reqs, ins, *_ in rows:
    per = int(ins) / int(reqs)
    print("%-14s %9d %21.0f %7.3f" % (name, int(reqs), per, per / base))
# With the cache and branch simulation: per request, and against the bare Pingora.
def sim(row):
    names, totals = row[3].split(","), [int(v) for v in row[4].split(",")]
    ev = dict(zip(names, totals))
    if "I1mr" not in ev:
        return None
    n = int(row[1])
    return {"I1 misses": ev["I1mr"] / n, "D1 misses": (ev["D1mr"] + ev["D1mw"]) / n,
            "mispredicted": (ev["Bcm"] + ev["Bim"]) / n}
first = sim(rows[0])
if first:
    print()
    print("%-14s %13s %13s %13s   (per request, x bare)" % ("proxy", *first))
    for row in rows:
        s = sim(row)
        print("%-14s %s" % (row[0], " ".join("%7.0f %5.2f" % (s[k], s[k] / first[k]) for k in first)))
' <"$WORK/results"

if [ "${LOCKED:-}" = 1 ]; then
  echo
  echo "locked instructions a request (bench/locked.py), and the sites that run the most:"
  while read -r name requests _; do
    binary=$BIN_DIR/portcullis
    [ "$name" != bare-pingora ] || binary=$BIN_DIR/examples/bare_pingora
    counted=$(bench/locked.py "$OUT/$name.callgrind" "$binary" "$requests" "${LOCKED_SITES:-12}")
    echo "$name $counted"
  done <"$WORK/results"
fi
