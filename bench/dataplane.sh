#!/usr/bin/env bash
# Data-plane benchmark, as users run each side: the same upstream (its own nginx process, a fixed
# small body) measured directly and through
#   nginx            a reverse proxy with its access log on (buffered, as production runs it)
#   bare-pingora     examples/bare_pingora: Pingora with one fixed upstream, nothing else (the
#                    floor Portcullis is built on)
#   portcullis       the default configuration (log level info: the access log on), a public route
#   portcullis-auth  an authenticated route (a signed-in session cookie, a claim policy, identity
#                    headers with the cached assertion)
#   oauth2-proxy     what users migrate from: nginx with auth_request to oauth2-proxy (the
#                    ingress-nginx pattern), signed in once at the local identity provider, the
#                    same role required (--allowed-group on the namespaced roles claim) and two
#                    identity headers passed on; both with their request logs on
# over plain HTTP/1.1 and over HTTPS (nginx, bare Pingora and Portcullis terminate TLS with the
# same certificate). Equal workers for every proxy; rounds in rotating order; each target's median
# round is reported, and the ratios come from that one run. Not part of the test suite.
#
#   bench/dataplane.sh [DURATION_SECONDS] [CONNECTIONS]
#   env: WORKERS (per proxy, default 1), WRK_THREADS (default 1), ROUNDS (default 3), BIN_DIR
#        (another build of portcullis and examples/bare_pingora to measure, as it is: bench/common.sh)
#
# Needs wrk, nginx and openssl (installed from Debian's packages when missing, as root), node
# (the local identity provider in tests/idp) and Go (oauth2-proxy is built from the Go module
# proxy at the version pinned in bench/go/oauth2-proxy/go.mod, cached like the test control
# plane).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
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
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -d tests/idp/node_modules ] || npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error

# oauth2-proxy, built once into the same cache as the test control plane.
CACHE=${PORTCULLIS_CACHE_DIR:-$HOME/.cache/portcullis}
O2P_VERSION=$(awk '$1=="github.com/oauth2-proxy/oauth2-proxy/v7" {print $2}' bench/go/oauth2-proxy/go.mod)
O2P=$CACHE/bin/oauth2-proxy-$O2P_VERSION
if [ ! -x "$O2P" ]; then
  echo "building oauth2-proxy $O2P_VERSION (about a minute)" >&2
  mkdir -p "$CACHE/bin"
  # The Go the test control plane is built with (tests/cluster/lib.sh: fetched when missing).
  # shellcheck source=tests/cluster/lib.sh
  (source tests/cluster/lib.sh && find_go && cd bench/go/oauth2-proxy && GOMODCACHE=${GOMODCACHE:-$CACHE/go/mod} GOCACHE=${GOCACHE:-$CACHE/go/build} \
    CGO_ENABLED=0 GOFLAGS=-mod=readonly "$go_cmd" build -trimpath -ldflags "-s -w" -o "$O2P.tmp" \
    github.com/oauth2-proxy/oauth2-proxy/v7) && mv "$O2P.tmp" "$O2P"
fi

bench_build
BARE=$BIN_DIR/examples/bare_pingora
BIN=$BIN_DIR/portcullis
bench_session

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work/up/nginx.pid" "$work/ngx/nginx.pid" "$work/o2n/nginx.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

UP=$(port); NGX=$(port); NGXS=$(port); BP=$(port); BPS=$(port); PC=$(port); PCS=$(port)
MET=$(port); METS=$(port); IDP=$(port); O2=$(port); O2N=$(port)

# One certificate for every TLS listener.
bench_cert "$work"

bench_upstream "$NGINX" "$work/up" "$UP"
mkdir -p "$work/ngx"
# The nginx reverse proxy: access log on, buffered (as production runs it).
cat > "$work/ngx/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $work/ngx/nginx.pid;
error_log $work/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $work/ngx/access.log combined buffer=64k flush=1s;
  upstream backend { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX;
    listen 127.0.0.1:$NGXS ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
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
"$NGINX" -c "$work/ngx/nginx.conf" -p "$work/ngx"

"$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" "$WORKERS" 2>"$work/bare.log" &
pids+=($!)
"$BARE" "127.0.0.1:$BPS" "127.0.0.1:$UP" "$WORKERS" "$work/cert.pem" "$work/key.pem" 2>"$work/bare-tls.log" &
pids+=($!)

bench_portcullis_config "$work/portcullis.yaml" "$PC" "$MET" "$UP"
bench_portcullis_tls_config "$work/portcullis-tls.yaml" "$PCS" "$METS" "$UP" "$work/cert.pem" \
  "$work/key.pem"
# The default configuration: no RUST_LOG (info, the access log on), logs to a file. The file is
# not in the configuration's directory, which Portcullis watches for changes: every log write
# there would wake the watcher (a container's stderr never lands there).
mkdir -p "$work/logs"
env -u RUST_LOG PORTCULLIS_THREADS=$WORKERS "$BIN" serve --config "$work/portcullis.yaml" 2>"$work/logs/portcullis.log" &
pids+=($!)
env -u RUST_LOG PORTCULLIS_THREADS=$WORKERS "$BIN" serve --config "$work/portcullis-tls.yaml" 2>"$work/logs/portcullis-tls.log" &
pids+=($!)
bench_wait_ready "$MET" "$METS"

# oauth2-proxy behind nginx auth_request, signing in at the local identity provider.
cat > "$work/idp.json" <<JSON
{"clients": [{"client_id": "o2p", "client_secret": "o2p-secret",
              "redirect_uris": ["http://127.0.0.1:$O2N/oauth2/callback"]}],
 "rolesClaim": "https://example.com/roles",
 "roles": [{"id": "rol_admin0000000001", "name": "admin"}],
 "users": [{"sub": "auth0|alice", "email": "alice@example.com", "email_verified": true,
            "name": "Alice", "roles": ["admin"]}]}
JSON
node tests/idp/server.mjs --port "$IDP" --config "$work/idp.json" >"$work/idp.out" 2>"$work/idp.log" &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
GOMAXPROCS=$WORKERS "$O2P" --provider=oidc --oidc-issuer-url="http://127.0.0.1:$IDP/" \
  --client-id=o2p --client-secret=o2p-secret --redirect-url="http://127.0.0.1:$O2N/oauth2/callback" \
  --code-challenge-method=S256 \
  --cookie-secret="$(head -c32 /dev/urandom | base64 | tr '+/' '-_')" --cookie-secure=false \
  --email-domain='*' --oidc-groups-claim=https://example.com/roles --allowed-group=admin \
  --http-address="127.0.0.1:$O2" --upstream=static://202 --reverse-proxy=true \
  --set-xauthrequest=true --skip-provider-button=true --request-logging=true \
  >"$work/o2p.log" 2>&1 &
pids+=($!)
mkdir -p "$work/o2n"
cat > "$work/o2n/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $work/o2n/nginx.pid;
error_log $work/o2n/error.log warn;
events { worker_connections 4096; }
http {
  access_log $work/o2n/access.log combined buffer=64k flush=1s;
  upstream backend { server 127.0.0.1:$UP; keepalive 64; }
  upstream oauth2 { server 127.0.0.1:$O2; keepalive 64; }
  server {
    listen 127.0.0.1:$O2N;
    location /oauth2/ {
      proxy_pass http://oauth2;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Auth-Request-Redirect \$request_uri;
    }
    location = /oauth2/auth {
      proxy_pass http://oauth2;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header Content-Length "";
      proxy_pass_request_body off;
    }
    location / {
      auth_request /oauth2/auth;
      error_page 401 = /oauth2/sign_in;
      auth_request_set \$user \$upstream_http_x_auth_request_user;
      auth_request_set \$email \$upstream_http_x_auth_request_email;
      proxy_set_header X-User \$user;
      proxy_set_header X-Email \$email;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
NGINX
"$NGINX" -c "$work/o2n/nginx.conf" -p "$work/o2n"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$O2/ping" && break; sleep 0.1; done
# Sign in once as a browser would: start, the provider's login form, back to the callback.
jar=$work/o2p.jar
form=$(curl -s -c "$jar" -b "$jar" -L -o /dev/null -w '%{url_effective}' "http://127.0.0.1:$O2N/oauth2/start?rd=/")
curl -s -c "$jar" -b "$jar" -L -o /dev/null --data-urlencode 'login=auth0|alice' "$form"
O2P_COOKIE=$(awk '$6 ~ /^_oauth2_proxy/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")
[ -n "$O2P_COOKIE" ] || { echo "oauth2-proxy sign-in failed" >&2; cat "$work/o2p.log" "$work/idp.log" >&2; exit 1; }

run() { # name url [host [cookie]] -> "rps p50 p99" (latencies in ms)
  local out hdrs=(-H "Host: ${3:-bench.test}")
  [ -n "${4:-}" ] && hdrs+=(-H "Cookie: $4")
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

declare -A url host cookie
url[direct]="http://127.0.0.1:$UP/"
url[nginx]="http://127.0.0.1:$NGX/"
url[bare-pingora]="http://127.0.0.1:$BP/"
url[portcullis]="http://127.0.0.1:$PC/"
url[portcullis-auth]="http://127.0.0.1:$PC/"; host[portcullis-auth]=auth.bench.test; cookie[portcullis-auth]="_pomerium=$SESSION"
url[oauth2-proxy]="http://127.0.0.1:$O2N/"; host[oauth2-proxy]="127.0.0.1:$O2N"; cookie[oauth2-proxy]=$O2P_COOKIE
url[nginx-tls]="https://127.0.0.1:$NGXS/"
url[bare-pingora-tls]="https://127.0.0.1:$BPS/"
url[portcullis-tls]="https://127.0.0.1:$PCS/"
targets=(direct nginx bare-pingora portcullis portcullis-auth oauth2-proxy nginx-tls bare-pingora-tls portcullis-tls)

# Every target must answer 200 (the authenticated route: not a redirect to sign-in).
for t in "${targets[@]}"; do
  hdrs=(-H "Host: ${host[$t]:-bench.test}")
  [ -n "${cookie[$t]:-}" ] && hdrs+=(-H "Cookie: ${cookie[$t]}")
  code=$(curl -sk -o /dev/null -w '%{http_code}' "${hdrs[@]}" "${url[$t]}")
  [ "$code" = 200 ] || { echo "$t answered $code, not 200" >&2; cat "$work"/*.log "$work"/logs/*.log >&2; exit 1; }
  wrk -t1 -c4 -d1s "${hdrs[@]}" "${url[$t]}" >/dev/null
done
# ROUNDS rounds, the targets in a different order each round; each target's median round (by
# requests/s) is reported, so one disturbed run does not decide a ratio.
median() { sort -k2 -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
declare -A results
n=${#targets[@]}
for round in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + round) % n ))]}
    results[$t]+="$(run "$t" "${url[$t]}" "${host[$t]:-bench.test}" "${cookie[$t]:-}")"$'\n'
  done
done
lines=()
for t in "${targets[@]}"; do lines+=("$(printf '%s' "${results[$t]}" | median)"); done

python3 - "$DURATION" "$CONNS" "$THREADS" "$WORKERS" "${lines[@]}" <<'PY'
import os, sys
dur, conns, threads, workers = sys.argv[1:5]
d = {}
for r in sys.argv[5:]:
    name, rps, p50, p99 = r.split()
    d[name] = (float(rps), float(p50), float(p99))
print(f"wrk -t{threads} -c{conns} -d{dur}s on loopback, {os.cpu_count()} cores, {workers} worker(s) per proxy, "
      f"upstream in its own nginx process, median of {os.environ.get('ROUNDS', '3')} rounds")
print("| target | requests/s | p50 ms | p99 ms | vs nginx | vs bare Pingora | p99 over direct ms |")
print("|---|---|---|---|---|---|---|")
for name in d:
    rps, p50, p99 = d[name]
    tls = name.endswith("-tls")
    ngx = d["nginx-tls" if tls else "nginx"][0]
    bare = d["bare-pingora-tls" if tls else "bare-pingora"][0]
    print(f"| {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {rps / ngx:.2f} | {rps / bare:.2f} | {p99 - d['direct'][2]:+.3f} |")
print(f"authenticated / public route throughput: {d['portcullis-auth'][0] / d['portcullis'][0]:.2f}")
o = d["oauth2-proxy"]
a = d["portcullis-auth"]
print(f"authenticated route / oauth2-proxy + nginx throughput: {a[0] / o[0]:.2f}; p99 {a[2]:.3f} vs {o[2]:.3f} ms")
PY
