# shellcheck shell=bash
# Shared by the benchmarks in bench/ (sourced, not run): the builds, the
# signed-in session cookie, free ports, the upstream, nginx and Portcullis's configuration, so
# that every benchmark measures the same proxies in the same configuration.

# bench_build BINARY...: the release binaries a benchmark measures, of `portcullis` and
# `bare_pingora` (examples/bare_pingora). Sets BIN_DIR, where they are
# (`portcullis` and `examples/bare_pingora`): target/release, or, when BIN_DIR is set already,
# that directory's binaries as they are (another build, e.g. with profile-guided optimisation),
# unbuilt.
bench_build() {
  local want=("$@") b
  if [ -n "${BIN_DIR:-}" ]; then
    for b in "${want[@]}"; do
      [ "$b" = portcullis ] || b=examples/$b
      [ -x "$BIN_DIR/$b" ] || { echo "BIN_DIR=$BIN_DIR has no $b" >&2; exit 1; }
    done
  else
    for b in "${want[@]}"; do
      if [ "$b" = portcullis ]; then
        cargo build --release --quiet
      else
        cargo build --release --quiet --example "$b"
      fi
    done
    BIN_DIR=target/release
  fi
}

# Sets COOKIE_SECRET (a bench-only secret) and SESSION, a session cookie for auth.bench.test
# minted with it: no identity provider is needed (the provider URL in the configuration points
# nowhere, which only logs discovery warnings). The minter is a debug build: it runs once, and a
# release build of examples would rebuild the dev-dependency feature set in release.
# shellcheck disable=SC2034 # both are read by the scripts that source this file
bench_session() {
  cargo build --quiet --example mint_session
  COOKIE_SECRET=$(head -c32 /dev/urandom | base64)
  SESSION=$(bench_mint auth.bench.test)
}

# bench_mint HOST: a session cookie for HOST (bench@example.com, role admin), minted with
# COOKIE_SECRET; after bench_session.
bench_mint() {
  target/debug/examples/mint_session "$COOKIE_SECRET" "$1" _pomerium bench@example.com admin
}

# bench_tools [COMMAND[=PACKAGE]...]: installs wrk, nginx and each COMMAND that is missing (from the
# Debian package PACKAGE, by default of the command's name), from Debian's packages (as root);
# sets NGINX.
# shellcheck disable=SC2034 # NGINX is read by the scripts that source this file
bench_tools() {
  local need=() c
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  for c in "$@"; do command -v "${c%%=*}" >/dev/null || need+=("${c#*=}"); done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# bench_ready NAME URL [HEADER...]: waits up to READY_SECONDS (default 10) for URL to answer 200
# (with these request headers); else prints the logs under WORK and exits.
bench_ready() {
  local name=$1 url=$2 status="" h headers=()
  shift 2
  for h in "$@"; do headers+=(-H "$h"); done
  for _ in $(seq $((${READY_SECONDS:-10} * 10))); do
    status=$(curl -sk -o /dev/null -w '%{http_code}' "${headers[@]}" "$url" || true)
    [ "$status" = 200 ] && return 0
    sleep 0.1
  done
  bench_logs +1
  echo "$name did not answer 200 (last: $status)" >&2
  exit 1
}

# bench_logs LINES: prints the logs under WORK to stderr, each its last LINES lines (+1: whole).
bench_logs() {
  local log
  for log in "$WORK"/*.log "$WORK"/logs/*.log; do
    [ -f "$log" ] || continue
    echo "== $log" >&2
    tail -n "$1" "$log" >&2
  done
}

# bench_load SECONDS URL [HEADER...]: SECONDS of keep-alive requests from wrk (-t1 -c32, on
# LOAD_ON's processors), wrk's report on stdout; exits when a response was neither a 2xx nor a
# 3xx (wrk counts only those: check for a 200 with bench_ready first) or a connection failed.
bench_load() {
  local seconds=$1 url=$2 h headers=() run
  shift 2
  for h in "$@"; do headers+=(-H "$h"); done
  run=$("${LOAD_ON[@]}" wrk -t1 -c32 -d"${seconds}s" "${headers[@]}" "$url")
  if grep -q 'Non-2xx\|Socket errors' <<<"$run"; then
    echo "$run" >&2
    echo "$url: some requests were answered with neither a 2xx nor a 3xx, or failed" >&2
    exit 1
  fi
  echo "$run"
}

# bench_work: WORK, a temporary directory (with logs/ for the proxies' logs: in the configuration's
# directory, every write would wake Portcullis's configuration watcher) removed on exit, and
# PIDS, the processes to stop on exit, with every nginx whose pid file is in a directory of WORK.
bench_work() {
  bench_alone
  WORK=$(mktemp -d)
  mkdir -p "$WORK/logs"
  PIDS=()
  trap bench_cleanup EXIT
}
# bench_alone: says which processes that take processor time are running beside the benchmark
# (a build, a test run, the test control plane a test run leaves up): their figures would be
# disturbed. A warning, not a refusal: the run goes on, and its output says it was not alone.
bench_alone() {
  local others
  others=$(pgrep -a -x -d ' ' 'cargo|rustc|etcd.*|kube-apiserver.*|node' 2>/dev/null || true)
  if [ -n "$others" ]; then
    echo "warning: not alone on the machine (figures may be disturbed): $others" >&2
    echo "  (the test control plane stops with tests/cluster/stop)" >&2
  fi
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "$WORK"/*/nginx.pid; do
    if [ -f "$p" ]; then kill "$(cat "$p")" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}

# bench_bare PORT UPSTREAM_PORT WORKERS LOG [CERT KEY]: starts the bare Pingora from BIN_DIR on
# PORT (HTTPS with CERT and KEY when given), proxying to UPSTREAM_PORT, its log to LOG; its pid is
# added to PIDS and kept in LAST_PID. It inherits the environment: BARE_PINGORA_TIMEOUTS=1 makes
# it set Portcullis's default timeouts (examples/bare_pingora), to measure what they cost.
bench_bare() {
  "${PROXY_ON[@]}" "$BIN_DIR/examples/bare_pingora" "127.0.0.1:$1" "127.0.0.1:$2" "$3" "${@:5}" 2>"$4" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# bench_upstream_and_bare: for the one-worker comparisons (cpu.sh, floor.sh), after bench_work:
# the upstream on port UP and one bare Pingora with one worker in front of it on port BP (its pid
# BARE_PID, its log WORK/logs/bare.log), the processors chosen by bench_pin 1; TICK, the clock
# ticks a second of /proc's times.
# shellcheck disable=SC2034 # read by the scripts that source this file
bench_upstream_and_bare() {
  bench_pin 1
  TICK=$(getconf CLK_TCK)
  UP=$(port)
  bench_upstream "$NGINX" "$WORK/up" "$UP"
  BP=$(port)
  bench_bare "$BP" "$UP" 1 "$WORK/logs/bare.log"
  BARE_PID=$LAST_PID
}

# bench_portcullis CONFIG WORKERS LOG: starts Portcullis from BIN_DIR in its default configuration
# (no RUST_LOG: level info, the access log on), its log to LOG; its pid is added to PIDS and kept
# in LAST_PID. LOG should not be in CONFIG's directory, which Portcullis watches for changes:
# every write there would wake the watcher (a container's stderr never lands there).
bench_portcullis() {
  "${PROXY_ON[@]}" env -u RUST_LOG PORTCULLIS_THREADS="$2" "$BIN_DIR/portcullis" serve --config "$1" 2>"$3" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# Where processes run. By default the kernel places them. With PIN=1, bench_pin WORKERS puts the
# proxies on the first WORKERS of the processors this process may use (PROXY_ON, a command
# prefix) and the load (wrk and the upstream) on the others (LOAD_ON): a proxy's worker then never shares its processor with wrk or
# the upstream, whose placement otherwise changes from run to run and with it the figures.
PROXY_ON=()
LOAD_ON=()
bench_pin() {
  [ "${PIN:-0}" = 1 ] || return 0
  local w=$1 cpus
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (Debian's util-linux)" >&2; exit 1; }
  # The processors this process may use (a container's cpuset need not start at 0), in order.
  read -r -a cpus <<<"$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
  [ "${#cpus[@]}" -gt "$w" ] || {
    echo "PIN=1 needs more processors than the proxies' $w worker(s): ${cpus[*]}" >&2
    exit 1
  }
  local proxy=${cpus[*]:0:$w} load=${cpus[*]:$w}
  PROXY_ON=(taskset -c "${proxy// /,}")
  LOAD_ON=(taskset -c "${load// /,}")
}

# A free port: bound by the kernel, released, then used at once.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_upstream NGINX DIR PORT [SERVER]: starts the upstream, an nginx process of its own (one
# worker, no log) answering every request with a fixed small body, or serving what the server
# block's lines SERVER say; its pid file is DIR/nginx.pid.
bench_upstream() {
  local nginx=$1 dir=$2 listen=$3
  local server=${4:-'location / { return 200 "hello from the upstream\n"; }'}
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$listen; $server }
}
NGINX
  "${LOAD_ON[@]}" "$nginx" -c "$dir/nginx.conf" -p "$dir"
}

# bench_nginx_proxy DIR LISTEN UPSTREAM_PORT WORKERS [TLS_LISTEN CERT KEY]: starts nginx as the
# reverse proxy the benchmarks compare with (on PROXY_ON's processors): WORKERS workers, its
# access log on and buffered (as production runs it), a keep-alive pool to the upstream, the
# forwarding headers set, and HTTPS on TLS_LISTEN with CERT and KEY when given; its pid file is
# DIR/nginx.pid.
bench_nginx_proxy() {
  local dir=$1 listen=$2 up=$3 workers=$4 tls=""
  mkdir -p "$dir"
  if [ $# -ge 7 ]; then
    tls="listen 127.0.0.1:$5 ssl;
    ssl_certificate $6;
    ssl_certificate_key $7;"
  fi
  cat >"$dir/nginx.conf" <<NGINX
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $dir/access.log combined buffer=64k flush=1s;
  upstream backend { server 127.0.0.1:$up; keepalive 64; }
  server {
    listen 127.0.0.1:$listen;
    $tls
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
  "${PROXY_ON[@]}" "$NGINX" -c "$dir/nginx.conf" -p "$dir"
}

# bench_threads PID: one line per thread name of process PID, "name user system" in clock ticks
# (the threads of one name summed).
bench_threads() {
  local t
  for t in /proc/"$1"/task/*/stat; do
    # The name is in parentheses and may hold spaces; the fields after it are numbered from 3.
    awk '{ i = index($0, "("); j = index($0, ") ");
           name = substr($0, i + 1, j - i - 1); gsub(/ /, "_", name);
           split(substr($0, j + 2), f, " "); print name, f[12], f[13] }' "$t"
  done | awk '{ u[$1] += $2; s[$1] += $3 } END { for (n in u) print n, u[n], s[n] }' | sort
}

# bench_wakeups NAME URL PID SECONDS: who sleeps and who wakes, system-wide, per request, while wrk
# sends SECONDS of requests to URL (Host: bench.test) through the proxy whose process is PID. On
# this loopback set-up a send runs the receiver's side of TCP in the sender's system call and
# wakes the receiver (wrk, the upstream) there, with an interprocessor interrupt when the
# receiver's processor is idle; so a proxy's kernel time depends on how often the others sleep.
# Prints the tasks switched out to sleep or preempted (the proxy: PID's threads, as they are in the
# middle of the run; the upstream: any other nginx process, an idle nginx proxy's included) and the
# processors coming out of idle, from the scheduler's tracepoints over 3 s in the middle of the run
# (SECONDS should be 5 or more), and the function-call (CAL: how the kernel wakes a task on another
# processor) and rescheduling (RES) interrupts, from /proc/interrupts over the whole run; each a
# request, those under 0.005 left out. Needs perf (bench_tools perf=linux-perf).
bench_wakeups() {
  local name=$1 url=$2 pid=$3 secs=$4 before after load t tids rps requests
  before=$(bench_interrupts)
  bench_load "$secs" "$url" "Host: bench.test" >"$WORK/run-$name" &
  load=$!
  sleep $((secs > 4 ? secs / 2 - 1 : 0))
  tids=""
  for t in /proc/"$pid"/task/*; do tids+="${t##*/} "; done
  # Its errors stay visible: without a record the counts below would be missing, not zero.
  perf record -q -a -e sched:sched_switch -o "$WORK/sched-$name.data" -- sleep 3
  wait "$load"
  after=$(bench_interrupts)
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/run-$name")
  requests=$(awk '/requests in/ {print $1}' "$WORK/run-$name")
  # (perf script warns that `trace` does not apply to the event kinds not recorded.)
  perf script -i "$WORK/sched-$name.data" -F trace 2>/dev/null |
    awk -v n="$rps" -v name="$name" -v before="$before" -v after="$after" -v requests="$requests" \
      -v tids="$tids" '
      BEGIN { split(tids, t, " "); for (i in t) proxy[t[i]] = 1 }
      { for (i = 1; i <= NF; i++) {
          if ($i ~ /^prev_comm=/) { c = substr($i, 11); sub(/\/[0-9]+$/, "", c) }
          if ($i ~ /^prev_pid=/) p = substr($i, 10)
          if ($i ~ /^prev_state=/) s = substr($i, 12) }
        if (p in proxy) c = "the proxy"
        else if (c == "nginx") c = "the upstream"
        if (c == "swapper") k["processors coming out of idle"]++
        else k[c " " (s == "R" || s == "R+" ? "preempted" : "to sleep")]++ }
      END {
        printf "%-12s", name
        for (x in k) if (k[x] / (3 * n) >= 0.005) printf "  %s %.3f", x, k[x] / (3 * n)
        split(before, b, " "); split(after, a, " ")
        for (i = 1; i < length(b); i += 2) printf "  %s %.3f", b[i], (a[i + 1] - b[i + 1]) / requests
        print "" }'
}

# bench_calls NAME URL PID SECONDS: the system calls of the process PID a request, by name, with its
# page faults and context switches, counted (perf stat on the syscall tracepoints and the two
# software events, the whole process) while wrk sends SECONDS of requests to URL (Host:
# bench.test). Those under 0.005 a request are left out of the list, not of the sum. Needs perf
# (bench_tools perf=linux-perf).
bench_calls() {
  local name=$1 url=$2 pid=$3 secs=$4 stat_pid run requests
  perf stat -x, -e 'syscalls:sys_enter_*' -e page-faults -e context-switches -p "$pid" \
    -o "$WORK/calls-$name" &
  stat_pid=$!
  sleep 0.5
  run=$(bench_load "$secs" "$url" "Host: bench.test")
  kill -INT "$stat_pid"
  wait "$stat_pid" || true
  requests=$(awk '/requests in/ {print $1}' <<<"$run")
  awk -F, -v n="$requests" -v name="$name" '
    $3 ~ /sys_enter_/ && $1 + 0 > 0 { sub(/.*sys_enter_/, "", $3); c[$3] = $1; t += $1 }
    $3 ~ /^page-faults/ { e["page-faults"] = $1 }
    $3 ~ /^context-switches/ { e["context-switches"] = $1 }
    END { printf "%-12s %6.3f in all (those under 0.005 a request not listed):", name, t / n
          for (s in c) if (c[s] / n >= 0.005) printf " %s %.3f", s, c[s] / n
          printf "; page faults %.4f, context switches %.4f\n", e["page-faults"] / n, e["context-switches"] / n }' \
    "$WORK/calls-$name"
}

# bench_interrupts: the remote wake-up (CAL) and rescheduling (RES) interrupts so far, summed over
# every processor, as "CAL: N RES: N".
bench_interrupts() {
  awk '$1 == "CAL:" || $1 == "RES:" {
    n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; printf "%s %d ", $1, n }' /proc/interrupts
}

# bench_portcullis_config FILE LISTEN METRICS UPSTREAM: Portcullis's configuration, with the
# public route (bench.test) and the authenticated one (auth.bench.test: a claim policy, identity
# headers with the assertion and two claim headers), both to the upstream on port UPSTREAM. Needs
# COOKIE_SECRET (bench_session).
bench_portcullis_config() {
  {
    cat <<YAML
address: 127.0.0.1:$2
metrics_address: 127.0.0.1:$3
insecure_server: true
YAML
    bench_sign_in http bench.test
    cat <<YAML
routes:
  - from: http://bench.test
    to: http://127.0.0.1:$4
    allow_public_unauthenticated_access: true
  - from: http://auth.bench.test
    to: http://127.0.0.1:$4
    pass_identity_headers: true
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
YAML
  } >"$1"
}

# bench_sign_in SCHEME DOMAIN: the sign-in settings of a benchmark's configuration, on stdout:
# the authenticate host under DOMAIN, an Auth0 provider whose URL points nowhere (sessions are
# minted with COOKIE_SECRET: bench_session, bench_mint), the claims sent as headers.
bench_sign_in() {
  cat <<YAML
authenticate_service_url: $1://authenticate.$2
idp_provider: auth0
idp_provider_url: http://127.0.0.1:9/
idp_client_id: ${2%%.*}
idp_client_secret: ${2%%.*}
cookie_secret: $COOKIE_SECRET
shared_secret: $COOKIE_SECRET
jwt_claims_headers: [email, groups]
YAML
}

# bench_portcullis_tls_config FILE LISTEN METRICS UPSTREAM CERT KEY: Portcullis's HTTPS
# configuration, a public route (https://bench.test) to the upstream on port UPSTREAM, served
# with the certificate and key in the PEM files CERT and KEY.
bench_portcullis_tls_config() {
  cat >"$1" <<YAML
address: 127.0.0.1:$2
metrics_address: 127.0.0.1:$3
certificates:
  - cert: $(base64 -w0 "$5")
    key: $(base64 -w0 "$6")
routes:
  - from: https://bench.test
    to: http://127.0.0.1:$4
    allow_public_unauthenticated_access: true
YAML
}

# bench_cert DIR: a self-signed P-256 certificate for bench.test and auth.bench.test, written to
# DIR/cert.pem and its key to DIR/key.pem (the same for every proxy that terminates HTTPS).
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test,DNS:auth.bench.test \
    -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# bench_wait_ready METRICS_PORT...: waits up to 10 s for each Portcullis's /readyz to answer 200.
bench_wait_ready() {
  local m
  for m in "$@"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$m/readyz" >/dev/null && break; sleep 0.1; done
  done
}
