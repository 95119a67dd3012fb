# Shared by the scripts in tests/cluster; sourced, not run.
# shellcheck shell=bash
# The paths below are read by the scripts that source this file.
# shellcheck disable=SC2034

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster_src="$repo_root/tests/cluster"
cache_dir="${PORTCULLIS_CACHE_DIR:-$HOME/.cache/portcullis}"
cache_bin="$cache_dir/bin"
cluster_dir="${PORTCULLIS_CLUSTER_DIR:-$repo_root/target/cluster}"
pki="$cluster_dir/pki"
kubeconfig="$cluster_dir/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# The version of binary NAME pinned by the go.mod of the module that builds it.
pinned_version() {
  local mod gomod
  case "$1" in
    etcd) mod=go.etcd.io/etcd/server/v3 gomod=$cluster_src/go/etcd/go.mod ;;
    kube-apiserver | kubectl) mod=k8s.io/kubernetes gomod=$cluster_src/go/kubernetes/go.mod ;;
    helm) mod=helm.sh/helm/v4 gomod=$cluster_src/go/helm/go.mod ;;
    crane) mod=github.com/google/go-containerregistry gomod=$cluster_src/go/crane/go.mod ;;
    actionlint) mod=github.com/rhysd/actionlint gomod=$cluster_src/go/actionlint/go.mod ;;
    *) die "unknown binary: $1" ;;
  esac
  local v
  v=$(sed -nE "s#^[[:space:]]*(require[[:space:]]+)?${mod//./\\.}[[:space:]]+(v[^[:space:]]+).*#\\2#p" "$gomod" | head -n1)
  [ -n "$v" ] || die "no version of $mod in $gomod"
  echo "$v"
}

# --- Go ------------------------------------------------------------------------------------

# A Go that can build the modules: 1.21 or newer, which fetches the toolchain their `go` line
# asks for by itself. Older ones (Debian's golang-go is 1.19) cannot.
go_usable() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  [ "$major" -gt 1 ] 2>/dev/null || { [ "$major" = 1 ] && [ "${rest%%.*}" -ge 21 ] 2>/dev/null; }
}

# The toolchain the modules name (`go 1.26.0`), fetched once from the Go module proxy into the
# cache, as Go's own toolchain switch fetches it (module golang.org/toolchain), and checked
# against the pinned SHA-256 below.
fetch_go() {
  local version arch dir proxy
  version=$(sed -n 's/^go //p' "$cluster_src/go/etcd/go.mod" | head -n1)
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "no Go toolchain on PATH, and none to fetch for $(uname -m)" ;;
  esac
  # SHA-256 of the toolchain archives, as the module proxy serves them: a changed `go` line
  # needs its sums here (anything else is refused).
  local want
  case "go$version.linux-$arch" in
    go1.26.0.linux-amd64) want=38461905b98c59173672814302e222ab43b652274bc0c95817b08b71ab66b705 ;;
    go1.26.0.linux-arm64) want=4c3f961bc257ff52e7a425166f9f75015f645dff071d01a81823455ffe646609 ;;
    *) die "no pinned sum for the Go toolchain go$version.linux-$arch (tests/cluster/lib.sh)" ;;
  esac
  dir="$cache_dir/go-toolchain/go$version.linux-$arch"
  if [ ! -x "$dir/bin/go" ]; then
    proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%,*}
    log "no usable Go on PATH: fetching go$version from $proxy (about 70 MB, once)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    curl -fsSL --retry 3 -o "$dir.tmp/go.zip" \
      "$proxy/golang.org/toolchain/@v/v0.0.1-go$version.linux-$arch.zip" ||
      die "cannot fetch the Go toolchain go$version from $proxy"
    local got
    got=$(sha256sum "$dir.tmp/go.zip" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "the Go toolchain go$version.linux-$arch has SHA-256 $got, expected $want"
    # The module zip holds the tree under its module@version prefix and no file modes: the tools are made
    # executable here, as Go's toolchain switch does.
    python3 - "$dir.tmp/go.zip" "$dir.tmp/go" <<'PY' || die "cannot unpack the Go toolchain"
import os, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for info in z.infolist():
        # golang.org/toolchain@v0.0.1-goVERSION.OS-ARCH/<the tree>
        parts = info.filename.split("/")
        at = next((i for i, p in enumerate(parts) if "@" in p), None)
        name = "/".join(parts[at + 1:]) if at is not None else ""
        if not name or name.endswith("/") or ".." in name.split("/"):
            continue
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as dst:
            dst.write(src.read())
        if name.startswith("bin/") or name.startswith("pkg/tool/"):
            os.chmod(path, 0o755)
PY
    rm -rf "$dir" && mv "$dir.tmp/go" "$dir" && rm -rf "$dir.tmp"
  fi
  go_cmd="$dir/bin/go"
}

# Sets go_cmd: $GO, else a usable go on PATH or in /usr/local/go, else the fetched toolchain.
go_cmd="${GO:-}"
find_go() {
  [ -n "$go_cmd" ] && return
  local candidate
  for candidate in go /usr/local/go/bin/go; do
    if command -v "$candidate" >/dev/null && go_usable "$candidate"; then
      go_cmd=$candidate
      return
    fi
  done
  fetch_go
}

# --- processes -------------------------------------------------------------------------------

pid_of() { cat "$cluster_dir/$1.pid" 2>/dev/null || true; }

# True when the process recorded in NAME.pid runs and is one of our NAME binaries (not a reused
# pid).
alive() {
  local pid exe
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${exe##*/} == "$1"-* ]]
}

# Starts NAME in its own session (it outlives the calling script and the test process) with the
# argv saved in NAME.args (one argument per line; the first is the binary).
launch() {
  local name=$1 args=()
  mapfile -t args <"$cluster_dir/$name.args"
  printf '\n==== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$cluster_dir/$name.log"
  # Without the lock descriptors: a daemon holding them would block every later start/stop.
  setsid nohup "${args[@]}" >>"$cluster_dir/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$! i
  echo "$pid" >"$cluster_dir/$name.pid"
  # The pid runs bash, setsid and nohup before it runs NAME: wait (up to 10 s) for the exec,
  # so `alive` does not take a process still on its way for one that has exited.
  for i in $(seq 1 200); do
    alive "$name" && return 0
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
}

# Stops NAME with SIGNAL (default TERM), then SIGKILL after 30 s. Does nothing when it is not
# running.
halt() {
  local name=$1 signal=${2:-TERM} pid
  if alive "$name"; then
    pid=$(pid_of "$name")
    log "stopping $name (pid $pid, SIG$signal)"
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$cluster_dir/$name.pid"
}

# --- health ----------------------------------------------------------------------------------

load_ports() {
  # shellcheck disable=SC1091
  [ -f "$cluster_dir/ports.env" ] && source "$cluster_dir/ports.env"
  [ -n "${APISERVER_PORT:-}" ] && [ -n "${ETCD_CLIENT_PORT:-}" ] && [ -n "${ETCD_PEER_PORT:-}" ]
}

etcd_healthy() {
  local resp
  # The port is the inner shell's $1, not expanded here.
  # shellcheck disable=SC2016
  resp=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' _ "$ETCD_CLIENT_PORT" 2>/dev/null) ||
    return 1
  [[ $resp == *'"health":"true"'* ]]
}

apiserver_ready() {
  [ -x "$cluster_dir/bin/kubectl" ] && [ -f "$kubeconfig" ] || return 1
  [ "$("$cluster_dir/bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz 2>/dev/null)" = ok ]
}

# Waits until CHECK succeeds while NAME runs; on failure shows the end of NAME's log.
wait_for() {
  local name=$1 check=$2 timeout=$3 start_s=$SECONDS
  until "$check"; do
    if ! alive "$name"; then
      tail -n 30 "$cluster_dir/$name.log" >&2 || true
      die "$name exited during startup; log: $cluster_dir/$name.log"
    fi
    if ((SECONDS - start_s > timeout)); then
      tail -n 30 "$cluster_dir/$name.log" >&2 || true
      die "$name not ready after ${timeout}s; log: $cluster_dir/$name.log"
    fi
    sleep 0.5
  done
}

start_apiserver() {
  launch kube-apiserver
  wait_for kube-apiserver apiserver_ready "${PORTCULLIS_APISERVER_TIMEOUT:-180}"
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"
}

# Takes the lock that serialises start/stop/restart of the cluster in this directory.
lock_cluster() {
  mkdir -p "$cluster_dir"
  exec 8>"$cluster_dir/.lock"
  flock 8
}
