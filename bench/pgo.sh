#!/usr/bin/env bash
# Profile-guided builds of the two binaries the benchmarks measure, Portcullis and the bare
# Pingora (examples/bare_pingora), made alike: both built instrumented, both run under the
# training traffic of bench/train.lua, the profiles merged into one, both built again with it.
# Then measure them with
#
#   BIN_DIR=target/pgo/<host>/release bench/dataplane.sh     (or bench/cpu.sh, bench/instructions.sh)
#
# The training is not the benchmarks' request alone (one GET of / with one header, a 24-byte
# answer): it is a mix of what an ingress answers (pages of 16 KiB, POST bodies, query strings,
# browser and forged identity headers, cookies, sessions that a policy admits and one it refuses,
# the sign-in redirect, unknown hosts; plain HTTP and HTTPS), against an upstream of its own. Its
# transport is the benchmarks' (wrk, 32 keep-alive HTTP/1.1 connections, one worker, loopback),
# and the mix includes the benchmarks' kind of request. The bare Pingora, which has no routes,
# gets the six kinds of request any proxy passes on; the four that only routes tell apart go to
# Portcullis alone. The profiles of both are merged into the one both are built with. Against
# nginx, which is Debian's build, the profile is an advantage a user gets only from a
# profile-guided build (scripts/image --pgo).
#
#   bench/pgo.sh [SECONDS]          seconds of traffic per target while profiling (default 8)
#   bench/pgo.sh --profile FILE     no training: both built with the merged profile FILE (the
#                                   one a release kept, say), into the same directory
#
# Before training, every kind of request of the mix is sent once to each proxy and must be
# answered as the mix expects; after, the share of 4xx answers must be the mix's (none for the
# bare Pingora, two kinds in ten for Portcullis), and each of the four proxies must have written
# a profile of its own. A run that fails or is stopped before the profile-guided build removes
# BIN_DIR's instrumented portcullis and examples/bare_pingora. Needs llvm-profdata of the LLVM
# major version rustc is built with (`rustc -vV`): rustup's llvm-tools component when installed,
# else Debian's llvm-N package (installed when missing, as root); wrk, nginx, curl and openssl.
# Two release builds: about 25 minutes in all on two cores (2026-12-06). Not part of the test
# suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
OUT=$PWD/target/pgo
PROFILES=$OUT/profiles
# --target: the flags apply to the two binaries only, not to build scripts and proc macros.
build() {
  CARGO_TARGET_DIR=$OUT RUSTFLAGS=$1 cargo build --release --locked --quiet --target "$HOST" \
    --bin portcullis --example bare_pingora
}

if [ "${1:-}" = --profile ]; then
  profile=${2:?--profile needs a merged profile (a .profdata file)}
  [ -s "$profile" ] || { echo "bench/pgo.sh: no profile at $profile" >&2; exit 1; }
  profile=$(cd "$(dirname "$profile")" && pwd)/$(basename "$profile")
  echo "building with the profile $profile" >&2
  build "-Cprofile-use=$profile"
  echo "BIN_DIR=$OUT/$HOST/release"
  exit 0
fi
SECONDS_TRAINED=${1:-8}
[[ $SECONDS_TRAINED =~ ^[1-9][0-9]*$ ]] || {
  echo "bench/pgo.sh: SECONDS must be a whole number of seconds, 1 or more (got '$1')" >&2
  exit 1
}

LLVM=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
if [ -x "$PROFDATA" ]; then
  bench_tools openssl curl
else
  PROFDATA=llvm-profdata-$LLVM
  bench_tools openssl curl "$PROFDATA=llvm-$LLVM"
fi

rm -rf "$PROFILES" && mkdir -p "$PROFILES"
BIN_DIR=$OUT/$HOST/release
bench_work
# From the instrumented build until the profile-guided build replaces them, BIN_DIR's
# portcullis and examples/bare_pingora are instrumented, and no benchmark should measure them: a
# run that fails or is stopped in between removes them.
INSTRUMENTED=1
pgo_cleanup() {
  local rc=$?
  bench_cleanup
  if [ "$rc" -ne 0 ] && [ "$INSTRUMENTED" = 1 ]; then
    rm -f "$BIN_DIR/portcullis" "$BIN_DIR/examples/bare_pingora"
    echo "bench/pgo.sh failed: the instrumented binaries in $BIN_DIR are removed" >&2
  fi
}
trap pgo_cleanup EXIT
echo "building instrumented (profiles to $PROFILES)" >&2
build "-Cprofile-generate=$PROFILES"
bench_build portcullis bare_pingora
bench_session

bench_cert "$WORK"
# The training upstream: its own nginx, with a page of 16 KiB, a small answer for everything
# else (any method), and the headers applications set.
UP=$(port)
mkdir -p "$WORK/up/static"
head -c 12288 /dev/urandom | base64 -w 100 >"$WORK/up/static/page.html"
# nginx's worker, started by root, runs as nobody: it must be able to reach and read the page
# (and nothing else of WORK, which holds the secrets of Portcullis's configuration).
chmod 711 "$WORK" "$WORK/up" && chmod 755 "$WORK/up/static" && chmod 644 "$WORK/up/static/page.html"
bench_upstream "$NGINX" "$WORK/up" "$UP" "
    add_header Cache-Control \"private, max-age=60\";
    add_header Set-Cookie \"app=1; Path=/; HttpOnly\";
    location /static/ { root $WORK/up; }
    location / { default_type application/json; return 200 '{\"ok\":true,\"items\":[1,2,3]}'; }"

# Portcullis's training configuration (two processes, plain HTTP and HTTPS, as the benchmarks
# run): a public host, a host whose policy the session meets, one whose policy refuses it.
SESSION=$(bench_mint app.train.test)
REFUSED_SESSION=$(bench_mint admin.train.test)
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
    bench_sign_in "$4" train.test
    cat <<YAML
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
# Each proxy writes its profile to a file of its own (NAME-PID.profraw), so that a proxy that
# wrote none is found (after the training) instead of merged away unnoticed.
LLVM_PROFILE_FILE=$PROFILES/bare-%p.profraw bench_bare "$BP" "$UP" 1 "$WORK/logs/bare.log"
LLVM_PROFILE_FILE=$PROFILES/bare-tls-%p.profraw bench_bare "$BPS" "$UP" 1 \
  "$WORK/logs/bare-tls.log" "$WORK/cert.pem" "$WORK/key.pem"
train_config "$WORK/portcullis.yaml" "$PC" "$MET" http
train_config "$WORK/portcullis-tls.yaml" "$PCS" "$METS" https "$WORK/cert.pem" "$WORK/key.pem"
LLVM_PROFILE_FILE=$PROFILES/portcullis-%p.profraw bench_portcullis "$WORK/portcullis.yaml" 1 \
  "$WORK/logs/portcullis.log"
LLVM_PROFILE_FILE=$PROFILES/portcullis-tls-%p.profraw bench_portcullis \
  "$WORK/portcullis-tls.yaml" 1 "$WORK/logs/portcullis-tls.log"
bench_wait_ready "$MET" "$METS"

# train NAME URL 4XX_PERCENT [ENV...]: SECONDS_TRAINED seconds of bench/train.lua's mix; the share
# of 4xx answers must be within two points of 4XX_PERCENT, the mix's.
train() {
  local name=$1 url=$2 share=$3 run total refused
  shift 3
  run=$(env "$@" TRAIN_SESSION="$SESSION" TRAIN_REFUSED_SESSION="$REFUSED_SESSION" \
    wrk -t1 -c32 -d"${SECONDS_TRAINED}s" -s bench/train.lua "$url") || {
    echo "$run" >&2
    echo "$name: wrk failed" >&2
    exit 1
  }
  total=$(awk '/requests in/ {print $1}' <<<"$run")
  refused=$(awk '/Non-2xx/ {n = $NF} END {print n + 0}' <<<"$run")
  echo "trained $name: $(awk '/Requests\/sec/ {print $2}' <<<"$run") requests/s (instrumented);" \
    "$total requests, of them 4xx and 5xx: $refused" >&2
  if grep -q 'Socket errors' <<<"$run" || [ "${total:-0}" -eq 0 ] ||
    [ $((refused * 100 / total)) -lt $((share - 2)) ] || [ $((refused * 100 / total)) -gt $((share + 2)) ]; then
    echo "$run" >&2
    echo "$name: the training's answers are not the mix's (4xx: $refused of $total, expected $share %)" >&2
    exit 1
  fi
}
# expect URL HOST STATUS [CURL ARGS...]: one request of the mix answered as the mix expects, so
# that a configuration mistake cannot train the build on error pages; on any other answer, or
# none, the proxies' logs and the failure.
expect() {
  local url=$1 host=$2 expected=$3 got
  shift 3
  got=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' -H "Host: $host" "$@" "$url" || true)
  [ "$got" = "$expected" ] && return 0
  bench_logs 40
  echo "$url (Host: $host) answered ${got:-nothing}, not $expected" >&2
  exit 1
}
bench_ready bare-pingora "http://127.0.0.1:$BP/" "Host: www.train.test"
bench_ready bare-pingora-tls "https://127.0.0.1:$BPS/" "Host: www.train.test"
# Every kind of request in bench/train.lua, in its order; the bare Pingora gets the first six.
forged=(-H "X-Forwarded-For: 203.0.113.9" -H "X-Pomerium-Jwt-Assertion: forged")
for url in "http://127.0.0.1:$BP" "https://127.0.0.1:$BPS" "http://127.0.0.1:$PC" "https://127.0.0.1:$PCS"; do
  expect "$url/" www.train.test 200
  expect "$url/static/page.html?v=42&lang=en" www.train.test 200
  expect "$url/api/items" www.train.test 200 -X POST -H "Content-Type: application/json" -d '{}'
  expect "$url/api/items/7" www.train.test 200 "${forged[@]}"
  case $url in *":$BP" | *":$BPS")
    expect "$url/" app.train.test 200
    expect "$url/api/items" app.train.test 200 -X POST -d '{}'
    continue ;;
  esac
  cookie=(-H "Cookie: _pomerium=$SESSION; theme=dark")
  expect "$url/" app.train.test 200 "${cookie[@]}"
  expect "$url/api/me?fields=email,groups" app.train.test 200 "${cookie[@]}"
  expect "$url/api/items" app.train.test 200 "${cookie[@]}" -X POST -d '{}'
  expect "$url/reports?month=11" app.train.test 302 -H "Accept: text/html"
  expect "$url/" admin.train.test 403 -H "Cookie: _pomerium=$REFUSED_SESSION"
  expect "$url/" nowhere.train.test 404
done
train bare-pingora "http://127.0.0.1:$BP" 0 TRAIN_BARE=1
train bare-pingora-tls "https://127.0.0.1:$BPS" 0 TRAIN_BARE=1
train portcullis "http://127.0.0.1:$PC" 20
train portcullis-tls "https://127.0.0.1:$PCS" 20

# SIGINT: Pingora's fast shutdown exits the process normally, which writes the profiles.
for p in "${PIDS[@]}"; do kill -INT "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
for name in bare bare-tls portcullis portcullis-tls; do
  # One file, not empty, for each proxy (the glob does not match the -tls names' files).
  written=("$PROFILES/$name"-[0-9]*.profraw)
  if [ ! -s "${written[0]}" ]; then
    echo "bench/pgo.sh: the proxy $name wrote no profile to $PROFILES; the proxies' logs:" >&2
    bench_logs 20
    exit 1
  fi
done
"$PROFDATA" merge -o "$OUT/merged.profdata" "$PROFILES"/*.profraw

echo "building with the profile" >&2
build "-Cprofile-use=$OUT/merged.profdata"
INSTRUMENTED=0
echo "BIN_DIR=$BIN_DIR"
