#!/usr/bin/env bash
# Data-plane benchmark: the same local upstream measured (a) directly, (b) through nginx as a
# plain reverse proxy, (c) through Portcullis on a public route, (d) through Portcullis on an
# authenticated route (a signed-in session cookie, a claim policy, identity headers with the
# cached assertion) — same machine, same run — printed as a table with ratios. Not part of the
# test suite.
#
#   bench/dataplane.sh [DURATION_SECONDS] [CONNECTIONS]
#   env: WORKERS (per proxy, default 1), WRK_THREADS (default 1), ROUNDS (default 3)
#
# Needs wrk and nginx (installed from Debian's packages when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
THREADS=${WRK_THREADS:-1}
# Worker processes/threads given to each proxy alike. On a 2-core machine wrk and the upstream
# need a core too, so one worker each is the fair default.
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-3}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
# The cookie minter is a debug build: it runs once, and a release build of examples would
# rebuild the dev-dependency feature set in release.
cargo build --quiet --example mint_session
BIN=target/release/portcullis
# Bench-only secret: the session cookie below is minted with it (no identity provider needed;
# the provider URL points nowhere, which only logs discovery warnings).
COOKIE_SECRET=$(head -c32 /dev/urandom | base64)
SESSION=$(target/debug/examples/mint_session "$COOKIE_SECRET" auth.bench.test _pomerium bench@example.com admin)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); NGX=$(port); PC=$(port); MET=$(port)

# One nginx process serves both the upstream (a fixed small body) and the reverse proxy.
cat > "$work/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } }
  server {
    listen 127.0.0.1:$NGX;
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
"$NGINX" -c "$work/nginx.conf" -p "$work"

cat > "$work/portcullis.yaml" <<YAML
address: 127.0.0.1:$PC
metrics_address: 127.0.0.1:$MET
insecure_server: true
authenticate_service_url: http://authenticate.bench.test
idp_provider: auth0
idp_provider_url: http://127.0.0.1:9/
idp_client_id: bench
idp_client_secret: bench
cookie_secret: $COOKIE_SECRET
shared_secret: $COOKIE_SECRET
jwt_claims_headers: [email, groups]
routes:
  - from: http://bench.test
    to: http://127.0.0.1:$UP
    allow_public_unauthenticated_access: true
  - from: http://auth.bench.test
    to: http://127.0.0.1:$UP
    pass_identity_headers: true
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
YAML
PORTCULLIS_THREADS=$WORKERS RUST_LOG=warn "$BIN" serve --config "$work/portcullis.yaml" 2>"$work/portcullis.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$MET/readyz" >/dev/null && break; sleep 0.1; done

run() { # name url [host [cookie]] -> "rps p50 p99" (latencies in ms)
  local out hdrs=(-H "Host: ${3:-bench.test}")
  [ -n "${4:-}" ] && hdrs+=(-H "Cookie: _pomerium=$4")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${hdrs[@]}" "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errs
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errs" ] && echo "  $1: $errs" >&2
  echo "$1 $rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() { # wrk prints 1.23ms / 456.00us / 1.2s
  python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); n=float(m.group(1)); print(round(n/1000 if m.group(2)=='us' else n*1000 if m.group(2)=='s' else n,3))" "$1"
}

# Warm up each target, then measure.
for u in "http://127.0.0.1:$UP/" "http://127.0.0.1:$NGX/" "http://127.0.0.1:$PC/"; do
  wrk -t1 -c4 -d1s -H "Host: bench.test" "$u" >/dev/null
done
# The authenticated route must answer 200 (not a redirect to sign-in) before it is measured.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: auth.bench.test" -H "Cookie: _pomerium=$SESSION" "http://127.0.0.1:$PC/")
[ "$code" = 200 ] || { echo "authenticated route answered $code, not 200" >&2; cat "$work/portcullis.log" >&2; exit 1; }
wrk -t1 -c4 -d1s -H "Host: auth.bench.test" -H "Cookie: _pomerium=$SESSION" "http://127.0.0.1:$PC/" >/dev/null
# ROUNDS rounds, the targets in a different order each round; each target's median round (by
# requests/s) is reported, so one disturbed run does not decide a ratio.
median() { sort -k2 -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
declare -A results
targets=(direct nginx portcullis portcullis-auth)
for round in $(seq "$ROUNDS"); do
  for i in 0 1 2 3; do
    t=${targets[$(( (i + round) % 4 ))]}
    case $t in
      direct) line=$(run direct "http://127.0.0.1:$UP/") ;;
      nginx) line=$(run nginx "http://127.0.0.1:$NGX/") ;;
      portcullis) line=$(run portcullis "http://127.0.0.1:$PC/") ;;
      portcullis-auth) line=$(run portcullis-auth "http://127.0.0.1:$PC/" auth.bench.test "$SESSION") ;;
    esac
    results[$t]+="$line"$'\n'
  done
done
direct=$(printf '%s' "${results[direct]}" | median)
nginx=$(printf '%s' "${results[nginx]}" | median)
pc=$(printf '%s' "${results[portcullis]}" | median)
pcauth=$(printf '%s' "${results[portcullis-auth]}" | median)

python3 - "$direct" "$nginx" "$pc" "$pcauth" "$DURATION" "$CONNS" "$THREADS" "$WORKERS" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:5]]
dur, conns, threads, workers = sys.argv[5:9]
d = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows}
print(f"wrk -t{threads} -c{conns} -d{dur}s, plain HTTP/1.1 on loopback, {__import__('os').cpu_count()} cores, {workers} worker(s) per proxy, median of {__import__('os').environ.get('ROUNDS', '3')} rounds")
print(f"| target | requests/s | p50 ms | p99 ms | rps vs nginx | p99 over direct ms |")
print(f"|---|---|---|---|---|---|")
for name in ("direct", "nginx", "portcullis", "portcullis-auth"):
    rps, p50, p99 = d[name]
    print(f"| {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {rps / d['nginx'][0]:.2f} | {p99 - d['direct'][2]:+.3f} |")
print(f"authenticated / public route throughput: {d['portcullis-auth'][0] / d['portcullis'][0]:.2f}")
PY
