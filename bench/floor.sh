#!/usr/bin/env bash
# The floor against nginx: what the bare Pingora (examples/bare_pingora, the floor Portcullis is
# built on) does per request that nginx does not. Both proxy plain HTTP/1.1 to the same upstream
# (its own nginx process), one worker each, nginx as bench/dataplane.sh runs it (access log on,
# buffered; a keep-alive pool; the forwarding headers), while wrk sends keep-alive requests
# (-t1 -c32). For each proxy:
#   - per round (rounds in rotating order): requests/s, the process's context switches per
#     request, and each thread's user and kernel microseconds per request (from /proc; nginx's
#     worker process has one thread, the bare Pingora's worker is Pingora_HTTP_Pr);
#   - once: the system calls per request, by name, with the page faults and context switches
#     (perf stat on the syscall tracepoints and those two events, the whole process, while wrk
#     runs: bench_calls in bench/common.sh);
#   - once: who sleeps and who wakes, system-wide, per request: the tasks switched out to sleep
#     or preempted and the processors coming out of idle (the scheduler's tracepoints), and the
#     interprocessor interrupts that wake a task on another processor (/proc/interrupts);
#   - with PROFILE=1: where each process's time goes, sampled (perf record -e cpu-clock, every
#     thread), the shares of the process's samples grouped by what the code does (the kernel,
#     parsing, header maps, allocation, copying, tokio, the connection pool, ...) and turned into
#     microseconds a request, with the largest functions. Debian's nginx keeps no symbol table,
#     but exports its functions for dynamic modules, so they have names.
#
#   bench/floor.sh [SECONDS]   measured seconds per round (default 10)
#   env ROUNDS (default 3), BIN_DIR (another build, as it is), PIN=1 (bench/common.sh), PROFILE=1,
#       OUT (a directory to keep the profiles in; default: none kept)
#
# Needs wrk, nginx and perf (installed from Debian's packages when missing, as root; perf from
# linux-perf). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_MEASURED=${1:-10}
ROUNDS=${ROUNDS:-3}

bench_tools perf=linux-perf
bench_build bare_pingora
bench_work
bench_upstream_and_bare
NGX=$(port)
bench_nginx_proxy "$WORK/ngx" "$NGX" "$UP" 1
# nginx writes its pid file before it starts its worker: wait for both.
NGX_PID=""
for _ in $(seq 50); do
  if [ -s "$WORK/ngx/nginx.pid" ]; then
    NGX_PID=$(pgrep -P "$(cat "$WORK/ngx/nginx.pid")" | head -1 || true)
    [ -n "$NGX_PID" ] && break
  fi
  sleep 0.1
done
[ -n "$NGX_PID" ] || { echo "nginx's worker process was not found" >&2; exit 1; }

declare -A port_of pid_of
port_of[nginx]=$NGX; pid_of[nginx]=$NGX_PID
port_of[bare-pingora]=$BP; pid_of[bare-pingora]=$BARE_PID

# switches PID: the voluntary and involuntary context switches of all of PID's threads, summed.
switches() {
  cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'
}

# measure NAME: warm up, then SECONDS_MEASURED seconds of requests; prints the requests a second
# and, per thread, its share of a core, its microseconds per request (user, kernel), and the
# process's context switches per request.
measure() {
  local name=$1 pid=${pid_of[$1]} url="http://127.0.0.1:${port_of[$1]}/"
  bench_load 2 "$url" "Host: bench.test" >/dev/null
  bench_threads "$pid" >"$WORK/before"
  local cs run requests
  cs=$(switches "$pid")
  run=$(bench_load "$SECONDS_MEASURED" "$url" "Host: bench.test")
  cs=$(( $(switches "$pid") - cs ))
  bench_threads "$pid" >"$WORK/after"
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  join "$WORK/before" "$WORK/after" | awk -v name="$name" -v n="$requests" -v secs="$SECONDS_MEASURED" \
    -v tick="$TICK" -v cs="$cs" '
    BEGIN { printf "%-12s %8.0f requests/s   %.3f context switches per request\n", name, n / secs, cs / n }
    { du = ($4 - $2) / tick; ds = ($5 - $3) / tick
      if (du + ds > 0)
        printf "  %-24s %5.1f %% of a core   user %6.2f us   kernel %6.2f us   per request\n",
          $1, 100 * (du + ds) / secs, 1e6 * du / n, 1e6 * ds / n }'
}

for name in nginx bare-pingora; do
  bench_ready "$name" "http://127.0.0.1:${port_of[$name]}/" "Host: bench.test"
done

echo "wrk -t1 -c32 -d${SECONDS_MEASURED}s, one worker each, $ROUNDS rounds in rotating order ($BIN_DIR$([ "${PIN:-0}" = 1 ] && echo ", pinned"))"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=(nginx bare-pingora); else order=(bare-pingora nginx); fi
  for name in "${order[@]}"; do measure "$name"; done
done | tee "$WORK/rounds"

python3 - "$WORK/rounds" <<'PY'
import sys
sys.path.insert(0, "bench")
from stats import lower_median
rps, user, kern, who = {}, {}, {}, None
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) > 2 and f[2] == "requests/s":
        who = f[0]
        rps.setdefault(who, []).append(float(f[1]))
    elif f and f[0] in ("Pingora_HTTP_Pr", "nginx"):
        user.setdefault(who, []).append(float(f[7]))
        kern.setdefault(who, []).append(float(f[10]))
k = min(len(v) for v in rps.values())
if any(len(user.get(w, [])) != len(rps[w]) for w in rps):
    sys.exit("a round has no worker line: the rounds cannot be paired")
def each(d):
    return [d["bare-pingora"][i] / d["nginx"][i] for i in range(k)]
rounds = ", ".join(f"{x:.2f}" for x in each(rps))
print(f"paired bare-pingora / nginx, median of {k} rounds: requests/s {lower_median(each(rps)):.2f} "
      f"(rounds: {rounds}), worker user time {lower_median(each(user)):.2f}, "
      f"worker kernel time {lower_median(each(kern)):.2f}")
PY

# The system calls a request (bench_calls, bench/common.sh).
echo
echo "system calls, page faults and context switches per request (perf stat, ${SECONDS_MEASURED}s)"
for name in nginx bare-pingora; do
  bench_calls "$name" "http://127.0.0.1:${port_of[$name]}/" "${pid_of[$name]}" "$SECONDS_MEASURED"
done

# Who sleeps and who wakes (bench_wakeups, bench/common.sh): each proxy's kernel time depends on
# how often wrk and the upstream sleep, and that on how fast the proxy is.
echo
echo "who sleeps and wakes, system-wide, per request (sched_switch over 3s; /proc/interrupts over ${SECONDS_MEASURED}s)"
for name in nginx bare-pingora; do
  bench_wakeups "$name" "http://127.0.0.1:${port_of[$name]}/" "${pid_of[$name]}" "$SECONDS_MEASURED"
done

[ "${PROFILE:-0}" = 1 ] || exit 0
# Where the time goes: each process sampled through one more measurement; its shares of the
# samples, grouped by what the code does, and turned into microseconds a request with the
# process's processor time (all threads, user and kernel) over the same requests.
echo
echo "profile (perf record -e cpu-clock -F 999, ${SECONDS_MEASURED}s each): shares of the process's samples, and microseconds a request"
for name in nginx bare-pingora; do
  url="http://127.0.0.1:${port_of[$name]}/"
  pid=${pid_of[$name]}
  perf record -q -e cpu-clock -F 999 -p "$pid" -o "$WORK/perf-$name.data" &
  rec_pid=$!
  sleep 0.5
  bench_threads "$pid" >"$WORK/before"
  run=$(bench_load "$SECONDS_MEASURED" "$url" "Host: bench.test")
  bench_threads "$pid" >"$WORK/after"
  kill -INT "$rec_pid"
  wait "$rec_pid" || true
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  cpu_us=$(join "$WORK/before" "$WORK/after" |
    awk -v n="$requests" -v tick="$TICK" '{ t += $4 - $2 + $5 - $3 } END { printf "%.3f", 1e6 * t / tick / n }')
  perf report -i "$WORK/perf-$name.data" --stdio --no-children -q --sort dso,sym \
    --percent-limit 0 2>/dev/null >"$WORK/report-$name.txt"
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp "$WORK/perf-$name.data" "$WORK/report-$name.txt" "$OUT/"; fi
  python3 - "$name" "$WORK/report-$name.txt" "$cpu_us" <<'PY'
import re, sys
name, path, cpu_us = sys.argv[1], sys.argv[2], float(sys.argv[3])
# The first rule a function matches names its group.
rules = [
    ("kernel", lambda d, w, s: w == "k"),
    ("copying (memmove, memcpy)", lambda d, w, s: "memmove" in s or "memcpy" in s),
    ("allocation (malloc or mimalloc; nginx: also its pools)",
        lambda d, w, s: s.startswith(("_mi_", "mi_", "_int_free", "free", "cfree")) or "malloc" in s
        or s in ("ngx_palloc", "ngx_pnalloc", "ngx_pcalloc", "ngx_pfree", "ngx_alloc",
                 "ngx_calloc", "ngx_create_pool", "ngx_destroy_pool", "ngx_reset_pool",
                 "ngx_alloc_chain_link")),
    ("the upstream connection released to the pool and taken again (a task spawned each time)",
        lambda d, w, s: any(k in s for k in (
            "release_http_session", "release_stream", "pingora_pool", "reused_stream",
            "get_http_session", "idle_poll", "test_reusable", "reuse_hash", "OwnedTasks",
            "spawn_inner", "Lru"))),
    ("the channel between the client's and the upstream's halves (tokio's bounded mpsc)",
        lambda d, w, s: "tokio::sync::mpsc" in s or "batch_semaphore" in s),
    ("HTTP/1 parsing and writing", lambda d, w, s: any(k in s for k in (
        "read_request", "read_resp_header", "httparse", "prepare_response_header", "parse_hdr",
        "from_bytes", "content_length", "header_to_h1", "write_request_header",
        "write_response_header", "BufWriter", "common_header_name", "body_reader",
        "body_writer", "BodyReader", "BodyWriter", "finish_body", "do_read_body"))),
    ("header maps (http, pingora-http)",
        lambda d, w, s: s.startswith(("http::", "<http::", "pingora_http", "<pingora_http"))),
    ("the proxy's futures (async state machines)",
        lambda d, w, s: "{{closure}}" in s and "pingora" in s),
    ("tokio: I/O readiness, tasks, wakers", lambda d, w, s: "tokio" in s or "l4::stream" in s
        or "RawStreamWrapper" in s),
    ("shared byte buffers (bytes)", lambda d, w, s: "bytes::" in s),
    ("reading the clock", lambda d, w, s: "clock_gettime" in s or "gettimeofday" in s),
    ("system call wrappers (libc)", lambda d, w, s: d.startswith("libc") and s.lstrip("_").startswith(
        ("send", "recv", "libc_recv", "libc_send", "writev", "epoll", "getpeername", "getsockopt",
         "write", "read"))),
    ("nginx's own code", lambda d, w, s: d == "nginx"),
]
groups, top = {}, []
for line in open(path):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    share, dso, where, sym = float(m[1]), m[2], m[3], m[4].strip()
    g = next((g for g, f in rules if f(dso, where, sym)), "the rest")
    groups[g] = groups.get(g, 0) + share
    top.append((share, where, dso, sym))
print(f"{name}: {cpu_us:.2f} us of processor time a request")
for g, v in sorted(groups.items(), key=lambda x: -x[1]):
    print(f"  {v:5.1f} %  {v / 100 * cpu_us:5.2f} us  {g}")
print("  the largest functions:")
for share, where, dso, sym in sorted(top, reverse=True)[:15]:
    print(f"  {share:5.2f} %  [{where}] {dso:14.14} {sym[:90]}")
PY
done
