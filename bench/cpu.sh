#!/usr/bin/env bash
# Where each proxy's time goes, per request: the processor time of every thread of the bare
# Pingora and of Portcullis's public route (the configuration bench/dataplane.sh runs, the access
# log on), split into user space and the kernel, read from /proc while wrk sends keep-alive
# requests (wrk -t1 -c32, one worker each, the upstream its own nginx process). Rounds run in
# rotating order; each row is a round.
#
# bench/instructions.sh counts a request's instructions; this shows what they cost in time. The
# two differ when one proxy's instructions run slower than the other's (cache misses, branches
# mispredicted: bench/instructions.sh with CACHE_SIM=1 simulates both), and the kernel's part
# (the system calls) is not counted there at all. When the worker thread is busy all the time (a
# share near 100 %), its microseconds per request are what bound the throughput.
#
#   bench/cpu.sh [SECONDS]     measured seconds per round (default 10)
#   env ROUNDS (default 2), BIN_DIR (another build to measure, as it is), PIN=1 (the proxy on one
#       processor, wrk and the upstream on the others: bench/common.sh), BUSY_NS=N (also measure
#       "bare-busy": the bare Pingora spending N ns of processor time on every request,
#       examples/bare_pingora's BARE_PINGORA_BUSY_NS, between the other two in each round; it
#       shows what N ns of a proxy's own work cost it in all, the kernel's part included),
#       AGAINST=DIR (also measure "against": the portcullis of another build in DIR, a relative
#       path taken from the repository's root, in the same configuration, in every round, the
#       two builds taking turns at each place in the order; then also paired portcullis /
#       against: two builds timed in the same rounds, seconds apart, compare far more closely
#       than in runs of their own, between which the machine drifts; CALLS=1 and WAKEUPS=1
#       then cover it too),
#       CALLS=1 (then, once for each proxy: its system calls by name, page faults and context
#       switches a request: bench_calls in bench/common.sh; needs perf), WAKEUPS=1 (then, once
#       for each proxy: who sleeps and who wakes, system-wide, per request: bench_wakeups in
#       bench/common.sh; needs perf)
#
# Needs wrk and nginx, and perf with CALLS=1 or WAKEUPS=1 (installed from Debian's packages when
# missing, as root; perf from linux-perf). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_MEASURED=${1:-10}
ROUNDS=${ROUNDS:-2}

bench_tools wrk
if [ "${WAKEUPS:-0}" = 1 ] || [ "${CALLS:-0}" = 1 ]; then bench_tools perf=linux-perf; fi

bench_build portcullis bare_pingora
if [ -n "${AGAINST:-}" ] && [ ! -x "$AGAINST/portcullis" ]; then
  echo "AGAINST=$AGAINST has no portcullis (a relative path starts at the repository's root)" >&2
  exit 1
fi
bench_session
bench_work
bench_upstream_and_bare
PC=$(port)
MET=$(port)
bench_portcullis_config "$WORK/portcullis.yaml" "$PC" "$MET" "$UP"
bench_portcullis "$WORK/portcullis.yaml" 1 "$WORK/logs/portcullis.log"
PC_PID=$LAST_PID
BUSY=()
if [ -n "${BUSY_NS:-}" ]; then
  BB=$(port)
  BARE_PINGORA_BUSY_NS=$BUSY_NS bench_bare "$BB" "$UP" 1 "$WORK/logs/bare-busy.log"
  BUSY=(bare-busy "$BB" "$LAST_PID")
fi
AGAINST_ROW=()
if [ -n "${AGAINST:-}" ]; then
  AP=$(port)
  # A directory of its own: each Portcullis watches its configuration's directory for changes.
  mkdir -p "$WORK/against"
  bench_portcullis_config "$WORK/against/portcullis.yaml" "$AP" "$(port)" "$UP"
  BIN_DIR=$AGAINST bench_portcullis "$WORK/against/portcullis.yaml" 1 "$WORK/logs/against.log"
  AGAINST_PID=$LAST_PID
  AGAINST_ROW=(against "$AP" "$AGAINST_PID")
fi

# measure NAME PORT PID: warm up, then SECONDS_MEASURED seconds of requests for bench.test;
# prints the requests a second and, per thread, its share of a core and its microseconds per
# request (user, kernel).
measure() {
  local name=$1 listen=$2 pid=$3 url="http://127.0.0.1:$2/"
  bench_ready "$name" "$url" "Host: bench.test"
  bench_load 2 "$url" "Host: bench.test" >/dev/null
  bench_threads "$pid" >"$WORK/before"
  local run requests
  run=$(bench_load "$SECONDS_MEASURED" "$url" "Host: bench.test")
  bench_threads "$pid" >"$WORK/after"
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  join "$WORK/before" "$WORK/after" | awk -v name="$name" -v n="$requests" -v secs="$SECONDS_MEASURED" -v tick="$TICK" '
    BEGIN { printf "%-12s %8.0f requests/s\n", name, n / secs }
    { du = ($4 - $2) / tick; ds = ($5 - $3) / tick
      if (du + ds > 0)
        printf "  %-24s %5.1f %% of a core   user %6.2f us   kernel %6.2f us   per request\n",
          $1, 100 * (du + ds) / secs, 1e6 * du / n, 1e6 * ds / n }'
}

echo "wrk -t1 -c32 -d${SECONDS_MEASURED}s, one worker each, $ROUNDS rounds in rotating order ($BIN_DIR$([ "${PIN:-0}" = 1 ] && echo ", pinned")${BUSY_NS:+, bare-busy: $BUSY_NS ns a request}${AGAINST:+, against: $AGAINST})"
for round in $(seq "$ROUNDS"); do
  # The Portcullises in the order measured after the bare Pingora (NEAR FAR): with AGAINST, the
  # other build is the near one in every other pair of rounds, so over four rounds (bare, this,
  # other; other, this, bare; bare, other, this; this, other, bare) each build is measured first,
  # last, beside the bare Pingora and away from it equally often.
  near=(portcullis "$PC" "$PC_PID") far=("${AGAINST_ROW[@]}")
  if [ ${#AGAINST_ROW[@]} != 0 ] && [ $(((round - 1) / 2 % 2)) = 1 ]; then
    far=("${near[@]}") near=("${AGAINST_ROW[@]}")
  fi
  if [ $((round % 2)) = 1 ]; then
    measure bare-pingora "$BP" "$BARE_PID"
    [ ${#BUSY[@]} = 0 ] || measure "${BUSY[@]}"
    measure "${near[@]}"
    [ ${#far[@]} = 0 ] || measure "${far[@]}"
  else
    [ ${#far[@]} = 0 ] || measure "${far[@]}"
    measure "${near[@]}"
    [ ${#BUSY[@]} = 0 ] || measure "${BUSY[@]}"
    measure bare-pingora "$BP" "$BARE_PID"
  fi
done | tee "$WORK/rounds"

# Paired: within each round, Portcullis's (and bare-busy's, against's) requests/s and worker
# thread's user microseconds per request over the bare Pingora's (and Portcullis's over
# against's), and the worker's kernel microseconds per request less the other's; the median over
# rounds (the lower middle for an even count).
# They are measured seconds apart, so the machine's drift between rounds mostly cancels.
python3 - "$WORK/rounds" <<'PY'
import sys
sys.path.insert(0, "bench")
from stats import lower_median
rps, user, kernel, who = {}, {}, {}, None
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] in ("bare-pingora", "bare-busy", "portcullis", "against"):
        who = f[0]
        rps.setdefault(who, []).append(float(f[1]))
    elif f and f[0] == "Pingora_HTTP_Pr":
        user.setdefault(who, []).append(float(f[7]))
        kernel.setdefault(who, []).append(float(f[10]))
if any(len(user.get(who, [])) != len(rps[who]) for who in rps):
    sys.exit("a round has no worker thread line: the rounds cannot be paired")
pairs = [(who, "bare-pingora") for who in ("portcullis", "bare-busy", "against")]
pairs.append(("portcullis", "against"))
for who, base in pairs:
    k = min(len(rps.get(who, [])), len(rps.get(base, [])))
    if not k:
        continue
    r = [rps[who][i] / rps[base][i] for i in range(k)]
    u = [user[who][i] / user[base][i] for i in range(k)]
    du = [user[who][i] - user[base][i] for i in range(k)]
    dk = [kernel[who][i] - kernel[base][i] for i in range(k)]
    print(f"paired {who} / {base}, median of {k} rounds: requests/s {lower_median(r):.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in r)}), worker user time {lower_median(u):.2f} "
          f"({lower_median(du):+.2f} us), worker kernel time {lower_median(dk):+.2f} us a request")
PY

if [ "${CALLS:-0}" = 1 ]; then
  echo
  echo "system calls, page faults and context switches per request (perf stat, ${SECONDS_MEASURED}s)"
  bench_calls bare-pingora "http://127.0.0.1:$BP/" "$BARE_PID" "$SECONDS_MEASURED"
  bench_calls portcullis "http://127.0.0.1:$PC/" "$PC_PID" "$SECONDS_MEASURED"
  [ -z "${AGAINST:-}" ] ||
    bench_calls against "http://127.0.0.1:$AP/" "$AGAINST_PID" "$SECONDS_MEASURED"
fi

[ "${WAKEUPS:-0}" = 1 ] || exit 0
echo
echo "who sleeps and wakes, system-wide, per request (sched_switch over 3s; /proc/interrupts over ${SECONDS_MEASURED}s)"
bench_wakeups bare-pingora "http://127.0.0.1:$BP/" "$BARE_PID" "$SECONDS_MEASURED"
bench_wakeups portcullis "http://127.0.0.1:$PC/" "$PC_PID" "$SECONDS_MEASURED"
[ -z "${AGAINST:-}" ] ||
  bench_wakeups against "http://127.0.0.1:$AP/" "$AGAINST_PID" "$SECONDS_MEASURED"
