#!/usr/bin/env bash
# Profile-guided builds of the two binaries the benchmarks measure, Portcullis and the bare
# Pingora (examples/bare_pingora), made alike: both built instrumented, both run under the
# benchmark's traffic (plain HTTP and HTTPS; Portcullis's public and authenticated routes), the
# profiles merged into one, both built again with it. Then measure them with
#
#   BIN_DIR=target/pgo/<host>/release bench/dataplane.sh     (or bench/cpu.sh, bench/instructions.sh)
#
# The profile comes from the very traffic the benchmarks send, which flatters both builds against
# nginx and oauth2-proxy; the ratio to the bare Pingora stays fair, since both got the same. The
# release image is not built this way (scripts/image).
#
#   bench/pgo.sh [SECONDS]     seconds of traffic per target while profiling (default 8)
#
# Needs llvm-profdata of the LLVM major version rustc is built with (`rustc -vV`), installed from
# Debian's llvm-N package when missing (as root), wrk, nginx and openssl. Two release builds:
# 33 minutes in all on two cores (2026-12-03). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
SECONDS_TRAINED=${1:-8}

LLVM=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
PROFDATA=llvm-profdata-$LLVM
bench_tools openssl "$PROFDATA=llvm-$LLVM"
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
OUT=$PWD/target/pgo
PROFILES=$OUT/profiles
# --target: the flags apply to the two binaries only, not to build scripts and proc macros.
build() {
  CARGO_TARGET_DIR=$OUT RUSTFLAGS=$1 cargo build --release --quiet --target "$HOST" \
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
UP=$(port)
bench_upstream "$NGINX" "$WORK/up" "$UP"
BP=$(port); BPS=$(port); PC=$(port); PCS=$(port); MET=$(port); METS=$(port)
bench_bare "$BP" "$UP" 1 "$WORK/logs/bare.log"
bench_bare "$BPS" "$UP" 1 "$WORK/logs/bare-tls.log" "$WORK/cert.pem" "$WORK/key.pem"
bench_portcullis_config "$WORK/portcullis.yaml" "$PC" "$MET" "$UP"
bench_portcullis_tls_config "$WORK/portcullis-tls.yaml" "$PCS" "$METS" "$UP" "$WORK/cert.pem" \
  "$WORK/key.pem"
bench_portcullis "$WORK/portcullis.yaml" 1 "$WORK/logs/portcullis.log"
bench_portcullis "$WORK/portcullis-tls.yaml" 1 "$WORK/logs/portcullis-tls.log"
bench_wait_ready "$MET" "$METS"

# train NAME URL [HEADER...]: SECONDS_TRAINED seconds of keep-alive requests, every one a 200.
train() {
  local name=$1 url=$2 run
  shift 2
  bench_ready "$name" "$url" "$@"
  run=$(bench_load "$SECONDS_TRAINED" "$url" "$@")
  echo "profiled $name: $(awk '/Requests\/sec/ {print $2}' <<<"$run") requests/s (instrumented)" >&2
}
train bare-pingora "http://127.0.0.1:$BP/" "Host: bench.test"
train bare-pingora-tls "https://127.0.0.1:$BPS/" "Host: bench.test"
train portcullis "http://127.0.0.1:$PC/" "Host: bench.test"
train portcullis-auth "http://127.0.0.1:$PC/" "Host: auth.bench.test" "Cookie: _pomerium=$SESSION"
train portcullis-tls "https://127.0.0.1:$PCS/" "Host: bench.test"

# SIGINT: Pingora's fast shutdown exits the process normally, which writes the profiles.
for p in "${PIDS[@]}"; do kill -INT "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
ls "$PROFILES"/*.profraw >/dev/null
"$PROFDATA" merge -o "$OUT/merged.profdata" "$PROFILES"/*.profraw

echo "building with the profile" >&2
build "-Cprofile-use=$OUT/merged.profdata"
echo "BIN_DIR=$BIN_DIR"
