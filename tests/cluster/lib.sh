# Shared by the scripts in tests/cluster; sourced, not run.
# shellcheck shell=bash

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
  local name=$1 signal=${2:-TERM} pid i
  if alive "$name"; then
    pid=$(pid_of "$name")
    log "stopping $name (pid $pid, SIG$signal)"
    kill "-$signal" "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
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
