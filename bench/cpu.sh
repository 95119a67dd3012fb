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
#       processor, wrk and the upstream on the others: bench/common.sh)
#
# Needs wrk and nginx (installed from Debian's packages when missing, as root). Not part of the
# test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_MEASURED=${1:-10}
ROUNDS=${ROUNDS:-2}

bench_tools wrk

bench_build
bench_session
TICK=$(getconf CLK_TCK)

bench_work
bench_pin 1

UP=$(port)
bench_upstream "$NGINX" "$WORK/up" "$UP"

BP=$(port)
bench_bare "$BP" "$UP" 1 "$WORK/logs/bare.log"
BARE_PID=$LAST_PID
PC=$(port)
MET=$(port)
bench_portcullis_config "$WORK/portcullis.yaml" "$PC" "$MET" "$UP"
bench_portcullis "$WORK/portcullis.yaml" 1 "$WORK/logs/portcullis.log"
PC_PID=$LAST_PID

# threads PID: one line per thread name, "name user system" in clock ticks (threads of one name
# summed).
threads() {
  local t
  for t in /proc/"$1"/task/*/stat; do
    # The name is in parentheses and may hold spaces; the fields after it are numbered from 3.
    awk '{ i = index($0, "("); j = index($0, ") ");
           name = substr($0, i + 1, j - i - 1); gsub(/ /, "_", name);
           split(substr($0, j + 2), f, " "); print name, f[12], f[13] }' "$t"
  done | awk '{ u[$1] += $2; s[$1] += $3 } END { for (n in u) print n, u[n], s[n] }' | sort
}

# measure NAME PORT PID: warm up, then SECONDS_MEASURED seconds of requests for bench.test;
# prints the requests a second and, per thread, its share of a core and its microseconds per
# request (user, kernel).
measure() {
  local name=$1 listen=$2 pid=$3 url="http://127.0.0.1:$2/"
  bench_ready "$name" "$url" "Host: bench.test"
  bench_load 2 "$url" "Host: bench.test" >/dev/null
  threads "$pid" >"$WORK/before"
  local run requests
  run=$(bench_load "$SECONDS_MEASURED" "$url" "Host: bench.test")
  threads "$pid" >"$WORK/after"
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  join "$WORK/before" "$WORK/after" | awk -v name="$name" -v n="$requests" -v secs="$SECONDS_MEASURED" -v tick="$TICK" '
    BEGIN { printf "%-12s %8.0f requests/s\n", name, n / secs }
    { du = ($4 - $2) / tick; ds = ($5 - $3) / tick
      if (du + ds > 0)
        printf "  %-24s %5.1f %% of a core   user %6.2f us   kernel %6.2f us   per request\n",
          $1, 100 * (du + ds) / secs, 1e6 * du / n, 1e6 * ds / n }'
}

echo "wrk -t1 -c32 -d${SECONDS_MEASURED}s, one worker each, $ROUNDS rounds in rotating order ($BIN_DIR$([ "${PIN:-0}" = 1 ] && echo ", pinned"))"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    measure bare-pingora "$BP" "$BARE_PID"
    measure portcullis "$PC" "$PC_PID"
  else
    measure portcullis "$PC" "$PC_PID"
    measure bare-pingora "$BP" "$BARE_PID"
  fi
done | tee "$WORK/rounds"

# Paired: within each round, Portcullis's requests/s and its worker thread's user microseconds per
# request over the bare Pingora's; the median over rounds (the lower middle for an even count).
# The two are measured seconds apart, so the machine's drift between rounds mostly cancels.
awk '
  function lower_median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return a[int((n + 1) / 2)]
  }
  /^(bare-pingora|portcullis) / { who = $1; k = int(i / 2); i++; rps[who, k] = $2 }
  /^  Pingora_HTTP/ { user[who, k] = $8 }
  END {
    for (k = 0; (("portcullis", k) in rps) && (("bare-pingora", k) in rps); k++) {
      r[k + 1] = rps["portcullis", k] / rps["bare-pingora", k]
      u[k + 1] = user["portcullis", k] / user["bare-pingora", k]
      list = list sprintf("%s%.2f", k ? ", " : "", r[k + 1])
    }
    printf "paired portcullis / bare-pingora, median of %d rounds: requests/s %.2f (rounds: %s), worker user time %.2f\n",
      k, lower_median(r, k), list, lower_median(u, k)
  }' "$WORK/rounds"
