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
# round is reported, and the ratios come from that one run: of the medians, and paired (within
# each round, then the median over rounds). Not part of the test suite.
#
#   bench/dataplane.sh [DURATION_SECONDS] [CONNECTIONS]
#   env: WORKERS (per proxy, default 1), WRK_THREADS (default 1), ROUNDS (default 3), BIN_DIR
#        (another build of portcullis and examples/bare_pingora to measure, as it is), PIN=1 (every
#        proxy on the first WORKERS processors, wrk and the upstream on the others: bench/common.sh)
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

bench_tools openssl
scripts/idp-modules

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

bench_build portcullis bare_pingora
bench_session

bench_work
bench_pin "$WORKERS"

UP=$(port); NGX=$(port); NGXS=$(port); BP=$(port); BPS=$(port); PC=$(port); PCS=$(port)
MET=$(port); METS=$(port); IDP=$(port); O2=$(port); O2N=$(port)

# One certificate for every TLS listener.
bench_cert "$WORK"

bench_upstream "$NGINX" "$WORK/up" "$UP"
bench_nginx_proxy "$WORK/ngx" "$NGX" "$UP" "$WORKERS" "$NGXS" "$WORK/cert.pem" "$WORK/key.pem"

bench_bare "$BP" "$UP" "$WORKERS" "$WORK/logs/bare.log"
bench_bare "$BPS" "$UP" "$WORKERS" "$WORK/logs/bare-tls.log" "$WORK/cert.pem" "$WORK/key.pem"

bench_portcullis_config "$WORK/portcullis.yaml" "$PC" "$MET" "$UP"
bench_portcullis_tls_config "$WORK/portcullis-tls.yaml" "$PCS" "$METS" "$UP" "$WORK/cert.pem" \
  "$WORK/key.pem"
bench_portcullis "$WORK/portcullis.yaml" "$WORKERS" "$WORK/logs/portcullis.log"
bench_portcullis "$WORK/portcullis-tls.yaml" "$WORKERS" "$WORK/logs/portcullis-tls.log"
bench_wait_ready "$MET" "$METS"

# oauth2-proxy behind nginx auth_request, signing in at the local identity provider.
cat > "$WORK/idp.json" <<JSON
{"clients": [{"client_id": "o2p", "client_secret": "o2p-secret",
              "redirect_uris": ["http://127.0.0.1:$O2N/oauth2/callback"]}],
 "rolesClaim": "https://example.com/roles",
 "roles": [{"id": "rol_admin0000000001", "name": "admin"}],
 "users": [{"sub": "auth0|alice", "email": "alice@example.com", "email_verified": true,
            "name": "Alice", "roles": ["admin"]}]}
JSON
node tests/idp/server.mjs --port "$IDP" --config "$WORK/idp.json" >"$WORK/idp.out" 2>"$WORK/idp.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$WORK/idp.out" 2>/dev/null && break; sleep 0.1; done
"${PROXY_ON[@]}" env GOMAXPROCS="$WORKERS" "$O2P" --provider=oidc --oidc-issuer-url="http://127.0.0.1:$IDP/" \
  --client-id=o2p --client-secret=o2p-secret --redirect-url="http://127.0.0.1:$O2N/oauth2/callback" \
  --code-challenge-method=S256 \
  --cookie-secret="$(head -c32 /dev/urandom | base64 | tr '+/' '-_')" --cookie-secure=false \
  --email-domain='*' --oidc-groups-claim=https://example.com/roles --allowed-group=admin \
  --http-address="127.0.0.1:$O2" --upstream=static://202 --reverse-proxy=true \
  --set-xauthrequest=true --skip-provider-button=true --request-logging=true \
  >"$WORK/o2p.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/o2n"
cat > "$WORK/o2n/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $WORK/o2n/nginx.pid;
error_log $WORK/o2n/error.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/o2n/access.log combined buffer=64k flush=1s;
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
"${PROXY_ON[@]}" "$NGINX" -c "$WORK/o2n/nginx.conf" -p "$WORK/o2n"
bench_ready oauth2-proxy "http://127.0.0.1:$O2/ping"
# Sign in once as a browser would: start, the provider's login form, back to the callback.
jar=$WORK/o2p.jar
form=$(curl -s -c "$jar" -b "$jar" -L -o /dev/null -w '%{url_effective}' "http://127.0.0.1:$O2N/oauth2/start?rd=/")
curl -s -c "$jar" -b "$jar" -L -o /dev/null --data-urlencode 'login=auth0|alice' "$form"
O2P_COOKIE=$(awk '$6 ~ /^_oauth2_proxy/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")
[ -n "$O2P_COOKIE" ] || { echo "oauth2-proxy sign-in failed" >&2; cat "$WORK/o2p.log" "$WORK/idp.log" >&2; exit 1; }

run() { # name url [host [cookie]] -> "rps p50 p99" (latencies in ms)
  local out hdrs=(-H "Host: ${3:-bench.test}")
  [ -n "${4:-}" ] && hdrs+=(-H "Cookie: $4")
  out=$("${LOAD_ON[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${hdrs[@]}" "$2")
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
  hdrs=("Host: ${host[$t]:-bench.test}")
  [ -n "${cookie[$t]:-}" ] && hdrs+=("Cookie: ${cookie[$t]}")
  bench_ready "$t" "${url[$t]}" "${hdrs[@]}"
  bench_load 1 "${url[$t]}" "${hdrs[@]}" >/dev/null
done
# ROUNDS rounds, the targets in a different order each round; each target's median round (by
# requests/s) is reported, so one disturbed run does not decide a ratio. Every round is kept
# ("round target rps p50 p99") for the paired ratios below.
n=${#targets[@]}
for round in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + round) % n ))]}
    echo "$round $(run "$t" "${url[$t]}" "${host[$t]:-bench.test}" "${cookie[$t]:-}")" >>"$WORK/rounds"
  done
done

python3 - "$DURATION" "$CONNS" "$THREADS" "$WORKERS" "$ROUNDS" "$WORK/rounds" "${targets[*]}" <<'PY'
import os, sys
dur, conns, threads, workers, rounds, path, order = sys.argv[1:8]
runs = {}  # target -> {round: (rps, p50, p99)}
for line in open(path):
    r, name, rps, p50, p99 = line.split()
    runs.setdefault(name, {})[int(r)] = (float(rps), float(p50), float(p99))

sys.path.insert(0, "bench")
from stats import lower_median as median

# In the order of the targets, not of the first round.
d = {name: median(list(runs[name].values())) for name in order.split()}
pinned = ", proxies pinned apart from wrk and the upstream" if os.environ.get("PIN") == "1" else ""
print(f"wrk -t{threads} -c{conns} -d{dur}s on loopback, {os.cpu_count()} cores, {workers} worker(s) per proxy, "
      f"upstream in its own nginx process{pinned}, median of {rounds} rounds")
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
# Paired: the two targets' ratio within each round (measured minutes apart at most), then the
# median over rounds. The machine's speed drifts between rounds; a ratio of two medians taken
# from different rounds carries that drift, a paired one mostly does not.
for a, b in [("portcullis", "bare-pingora"), ("portcullis", "nginx"),
             ("portcullis-tls", "bare-pingora-tls"), ("portcullis-tls", "nginx-tls"),
             ("portcullis-auth", "portcullis")]:
    each = [runs[a][r][0] / runs[b][r][0] for r in sorted(runs[a]) if r in runs[b]]
    print(f"paired {a} / {b}: median {median(each):.2f} (rounds: {', '.join(f'{x:.2f}' for x in each)})")
PY
