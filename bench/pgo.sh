#!/usr/bin/env bash
# Profile-guided builds of the two binaries the benchmarks measure, Portcullis and the bare
# Pingora (examples/bare_pingora), made alike: both built instrumented, both run under the
# training traffic of bench/train.lua, the profiles merged into one, both built again with it.
# Then measure them with
#
#   BIN_DIR=target/pgo/<host>/release bench/dataplane.sh     (or bench/cpu.sh, bench/instructions.sh)
#
# The training is not the benchmarks' traffic (one GET of / with one header, a 24-byte answer):
# it is a mix of what an ingress answers (pages of 16 KiB, POST bodies, query strings, browser
# and forged identity headers, cookies, sessions that a policy admits and one it refuses, the
# sign-in redirect, unknown hosts; plain HTTP and HTTPS), against an upstream of its own. Both
# binaries get the same mix, so the ratio to the bare Pingora stays fair; against nginx, which
# is Debian's build, the profile is an advantage a user gets only from a profile-guided build
# (scripts/image --pgo).
#
#   bench/pgo.sh [SECONDS]     seconds of traffic per target while profiling (default 8)
#
# Needs llvm-profdata of the LLVM major version rustc is built with (`rustc -vV`), installed from
# Debian's llvm-N package when missing (as root), wrk, nginx, curl and openssl. Two release
# builds: about 25 minutes in all on two cores (2026-12-06). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_TRAINED=${1:-8}

LLVM=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
PROFDATA=llvm-profdata-$LLVM
bench_tools openssl curl "$PROFDATA=llvm-$LLVM"
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
OUT=$PWD/target/pgo
PROFILES=$OUT/profiles
# --target: the flags apply to the two binaries only, not to build scripts and proc macros.
build() {
  CARGO_TARGET_DIR=$OUT RUSTFLAGS=$1 cargo build --release --locked --quiet --target "$HOST" \
    --bin portcullis --example bare_pingora
}

rm -rf "$PROFILES" && mkdir -p "$PROFILES"
echo "building instrumented (profiles to $PROFILES)" >&2
build "-Cprofile-generate=$PROFILES"
BIN_DIR=$OUT/$HOST/release
bench_build portcullis bare_pingora
bench_session
bench_work

bench_cert "$WORK"
# The training upstream: its own nginx, with a page of 16 KiB, a small answer for everything
# else (any method), and the headers applications set.
UP=$(port)
mkdir -p "$WORK/up/static"
head -c 12288 /dev/urandom | base64 -w 100 >"$WORK/up/static/page.html"
# nginx's worker, started by root, runs as nobody: it must be able to read the page.
chmod 755 "$WORK" "$WORK/up" "$WORK/up/static" && chmod 644 "$WORK/up/static/page.html"
cat >"$WORK/up/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$UP;
    add_header Cache-Control "private, max-age=60";
    add_header Set-Cookie "app=1; Path=/; HttpOnly";
    location /static/ { root $WORK/up; }
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
  }
}
NGINX
"$NGINX" -c "$WORK/up/nginx.conf" -p "$WORK/up"

# Portcullis's training configuration (two processes, plain HTTP and HTTPS, as the benchmarks
# run): a public host, a host whose policy the session meets, one whose policy refuses it.
SESSION=$(target/debug/examples/mint_session "$COOKIE_SECRET" app.train.test _pomerium \
  bench@example.com admin)
REFUSED_SESSION=$(target/debug/examples/mint_session "$COOKIE_SECRET" admin.train.test _pomerium \
  bench@example.com admin)
train_config() { # FILE LISTEN METRICS SCHEME [CERT KEY]
  {
    echo "address: 127.0.0.1:$2"
    echo "metrics_address: 127.0.0.1:$3"
    if [ "$4" = https ]; then
      echo "certificates:"
      echo "  - cert: $(base64 -w0 "$5")"
      echo "    key: $(base64 -w0 "$6")"
    else
      echo "insecure_server: true"
    fi
    cat <<YAML
authenticate_service_url: $4://authenticate.train.test
idp_provider: auth0
idp_provider_url: http://127.0.0.1:9/
idp_client_id: train
idp_client_secret: train
cookie_secret: $COOKIE_SECRET
shared_secret: $COOKIE_SECRET
jwt_claims_headers: [email, groups]
routes:
  - from: $4://www.train.test
    to: http://127.0.0.1:$UP
    allow_public_unauthenticated_access: true
  - from: $4://app.train.test
    to: http://127.0.0.1:$UP
    pass_identity_headers: true
    set_request_headers:
      X-Team: platform
    policy:
      allow:
        or:
          - claim/https://example.com/roles: admin
          - email:
              is: owner@example.com
  - from: $4://admin.train.test
    to: http://127.0.0.1:$UP
    policy:
      allow:
        and:
          - claim/https://example.com/roles: superuser
YAML
  } >"$1"
}
BP=$(port); BPS=$(port); PC=$(port); PCS=$(port); MET=$(port); METS=$(port)
bench_bare "$BP" "$UP" 1 "$WORK/logs/bare.log"
bench_bare "$BPS" "$UP" 1 "$WORK/logs/bare-tls.log" "$WORK/cert.pem" "$WORK/key.pem"
train_config "$WORK/portcullis.yaml" "$PC" "$MET" http
train_config "$WORK/portcullis-tls.yaml" "$PCS" "$METS" https "$WORK/cert.pem" "$WORK/key.pem"
bench_portcullis "$WORK/portcullis.yaml" 1 "$WORK/logs/portcullis.log"
bench_portcullis "$WORK/portcullis-tls.yaml" 1 "$WORK/logs/portcullis-tls.log"
bench_wait_ready "$MET" "$METS"

# train NAME URL [ENV...]: SECONDS_TRAINED seconds of bench/train.lua's mix; the first ten of its
# requests must have been answered as expected first (bench/pgo.sh checks them below).
train() {
  local name=$1 url=$2 run
  shift 2
  run=$(env "$@" TRAIN_SESSION="$SESSION" TRAIN_REFUSED_SESSION="$REFUSED_SESSION" \
    wrk -t1 -c32 -d"${SECONDS_TRAINED}s" -s bench/train.lua "$url")
  if grep -q 'Socket errors' <<<"$run"; then
    echo "$run" >&2
    echo "$name: requests failed while training" >&2
    exit 1
  fi
  echo "trained $name: $(awk '/Requests\/sec/ {print $2}' <<<"$run") requests/s (instrumented);" \
    "$(awk '/requests in/ {print $1}' <<<"$run") requests, of them 4xx and 5xx:" \
    "$(awk '/Non-2xx/ {n = $NF} END {print n + 0}' <<<"$run")" >&2
}
# expect URL HOST STATUS [CURL ARGS...]: one request of the mix answered as the mix expects, so
# that a configuration mistake cannot train the build on error pages alone.
expect() {
  local url=$1 host=$2 expected=$3 got
  shift 3
  got=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $host" "$@" "$url")
  [ "$got" = "$expected" ] || { echo "$url (Host: $host) answered $got, not $expected" >&2; exit 1; }
}
for url in "http://127.0.0.1:$PC" "https://127.0.0.1:$PCS"; do
  expect "$url/static/page.html" www.train.test 200
  expect "$url/api/items" www.train.test 200 -X POST -d '{}'
  expect "$url/" app.train.test 200 -H "Cookie: _pomerium=$SESSION"
  expect "$url/" app.train.test 302 -H "Accept: text/html"
  expect "$url/" admin.train.test 403 -H "Cookie: _pomerium=$REFUSED_SESSION"
  expect "$url/" nowhere.train.test 404
done
expect "http://127.0.0.1:$BP/static/page.html" www.train.test 200
train bare-pingora "http://127.0.0.1:$BP" TRAIN_BARE=1
train bare-pingora-tls "https://127.0.0.1:$BPS" TRAIN_BARE=1
train portcullis "http://127.0.0.1:$PC"
train portcullis-tls "https://127.0.0.1:$PCS"

# SIGINT: Pingora's fast shutdown exits the process normally, which writes the profiles.
for p in "${PIDS[@]}"; do kill -INT "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
ls "$PROFILES"/*.profraw >/dev/null
"$PROFDATA" merge -o "$OUT/merged.profdata" "$PROFILES"/*.profraw

echo "building with the profile" >&2
build "-Cprofile-use=$OUT/merged.profdata"
echo "BIN_DIR=$BIN_DIR"
