#!/usr/bin/env bash
# Controller scale benchmark: N Ingresses (one host and one Prefix path each, all to one
# Service, or with SERVICES=each each to a Service and EndpointSlice of its own) in a fresh namespace of the shared test control plane (tests/cluster), then a
# release build of `portcullis controller` watching that namespace. Measures how long the
# objects take to create, start → /readyz and → the last host served, how long an Ingress change
# takes to serve (a new Ingress; an annotation edit), the controller's memory, and — without an
# API server — the per-pass CPU work (snapshot copy, translate, RouteTable::compile, publish).
# Prints a table. Not part of the test suite.
#
#   bench/controller-scale.sh [N]        (default 10000; REPEAT=5 changes of each kind;
#                                         SERVICES=one (default) or each;
#                                         NAMESPACE=name to keep the objects for a later run;
#                                         BIN_DIR=directory of another portcullis build)
#
# Without NAMESPACE, leaves a fresh namespace behind (Terminating: nothing reconciles in the
# test cluster) after deleting its Ingresses. With NAMESPACE, a namespace of that name made by
# an earlier run (same N and SERVICES) is used as it is: only the Ingresses this run adds are
# deleted again.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
REPEAT=${REPEAT:-5}
CHUNK=${CHUNK:-500}
export SERVICES=${SERVICES:-one}
case "$SERVICES" in one | each) ;; *) echo "SERVICES is one or each, not $SERVICES" >&2; exit 2 ;; esac

# BIN_DIR: another build of portcullis to measure, as it is (the per-pass timings without an API
# server always come from this checkout's scale_translate).
[ -n "${BIN_DIR:-}" ] || cargo build --release --quiet
cargo build --release --quiet --example scale_translate
BIN=${BIN_DIR:-target/release}/portcullis
[ -x "$BIN" ] || { echo "no portcullis binary at $BIN" >&2; exit 1; }

KUBECONFIG_PATH=$(tests/cluster/start | tail -n1)
HOST_IP=$(tests/cluster/host-ip)
KUBECTL=${PORTCULLIS_CACHE_DIR:-$HOME/.cache/portcullis}/bin/kubectl-v1.37.2
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
NS=${NAMESPACE:-scale-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')}
REUSE=false
if [ -n "${NAMESPACE:-}" ] && k get namespace "$NS" >/dev/null 2>&1; then REUSE=true; fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${NAMESPACE:-}" ] || k -n "$NS" delete ingress --all --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
UP=$(port "$HOST_IP")
# A kept namespace's EndpointSlices name the upstream port of the run that made them.
if $REUSE; then UP=$(k -n "$NS" get endpointslice web-1 -o jsonpath='{.ports[0].port}'); fi
PC=$(port 127.0.0.1); MET=$(port 127.0.0.1)

# The Policy CRD (the controller is not ready without it) and our IngressClass, not default.
k apply -f crds/policies.portcullis.dev.yaml >/dev/null
k get ingressclass portcullis >/dev/null 2>&1 || k apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.dev/ingress-controller}
YAML
$REUSE || k create namespace "$NS" >/dev/null
echo "namespace $NS, $N Ingresses, Services: $SERVICES, upstream $HOST_IP:$UP" >&2

# The upstream: a static directory over HTTP on the host address (the API server refuses
# loopback addresses in EndpointSlices).
mkdir -p "$work/www" && echo ok >"$work/www/index.html"
python3 -m http.server --bind "$HOST_IP" --directory "$work/www" "$UP" >/dev/null 2>&1 &
pids+=($!)
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80, targetPort: $UP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: $UP}]
endpoints:
- addresses: ["$HOST_IP"]
  conditions: {ready: true}
YAML

# The Ingresses, as multi-document files of CHUNK objects, applied two chunks at a time.
python3 - "$N" "$CHUNK" "$work" "$SERVICES" "$UP" "$HOST_IP" <<'PY'
import sys
n, chunk, work, services, up, host_ip = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
# SERVICES=each: Ingress i goes to Service web-{i}, whose EndpointSlice points at the upstream.
own = """apiVersion: v1
kind: Service
metadata: {{name: web-{i}}}
spec:
  ports: [{{name: http, port: 80, targetPort: UP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-{i}-1
  labels: {{kubernetes.io/service-name: web-{i}}}
addressType: IPv4
ports: [{{name: http, port: UP}}]
endpoints:
- addresses: ["HOST"]
  conditions: {{ready: true}}
---
""".replace("UP", up).replace("HOST", host_ip)
doc = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing-{i}
  annotations: {{portcullis.dev/allow_public_unauthenticated_access: "true"}}
spec:
  ingressClassName: portcullis
  rules:
  - host: h{i}.scale.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: SERVICE, port: {{name: http}}}}}}
"""
if services == "each":
    doc = own + doc.replace("SERVICE", "web-{i}")
else:
    doc = doc.replace("SERVICE", "web")
for c, start in enumerate(range(0, n, chunk)):
    with open(f"{work}/ingresses-{c:04d}.yaml", "w") as f:
        f.write("---\n".join(doc.format(i=i) for i in range(start, min(n, start + chunk))))
PY
t0=$(date +%s.%N)
if ! $REUSE; then
  find "$work" -name 'ingresses-*.yaml' -print0 | sort -z | xargs -0 -P2 -I{} "$KUBECTL" \
    --kubeconfig "$KUBECONFIG_PATH" -n "$NS" apply --server-side --field-manager=bench -f {} >/dev/null
fi
CREATE_S=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
echo "created $N Ingresses in ${CREATE_S}s" >&2

# Pure CPU work per pass, no API server.
CPU=$(target/release/examples/scale_translate "$N")

cat >"$work/portcullis.yaml" <<YAML
address: 127.0.0.1:$PC
metrics_address: 127.0.0.1:$MET
insecure_server: true
YAML

python3 - "$BIN" "$work" "$KUBECTL" "$KUBECONFIG_PATH" "$NS" "$N" "$PC" "$MET" "$REPEAT" "$CREATE_S" "$CPU" <<'PY'
import http.client, json, os, re, statistics, subprocess, sys, time

bin_, work, kubectl_bin, kubeconfig, ns, n, pc, met, repeat, create_s, cpu = sys.argv[1:]
n, pc, met, repeat = int(n), int(pc), int(met), int(repeat)

def get(host, port=pc, path="/"):
    """(status, headers) or (None, {}) when nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    except OSError:
        return None, {}

def wait_for(pred, timeout=120.0, every=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return time.monotonic()
        time.sleep(every)
    raise SystemExit("timed out; controller log:\n" + open(f"{work}/controller.log").read()[-4000:])

def kubectl(*args, stdin=None):
    subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, "-n", ns, *args], input=stdin,
                   text=True, check=True, stdout=subprocess.DEVNULL)

def memory(pid):
    status = open(f"/proc/{pid}/status").read()
    val = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return val("VmRSS"), val("VmHWM")

log = open(f"{work}/controller.log", "w")
start = time.monotonic()
proc = subprocess.Popen(
    [bin_, "controller", "--config", f"{work}/portcullis.yaml", "--kubeconfig", kubeconfig,
     "--namespace", ns, "--lease-namespace", ns],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    env={**os.environ, "RUST_LOG": "info"})
# Names and values of this run's own, so that a kept namespace (NAMESPACE) changes again.
run = os.urandom(3).hex()
try:
    ready = wait_for(lambda: get("x", met, "/readyz")[0] == 200) - start
    served = wait_for(lambda: get(f"h{n - 1}.scale.test")[0] == 200) - start
    rss_first, _ = memory(proc.pid)

    def change(make, check):
        t0 = time.monotonic()
        make()
        applied = time.monotonic() - t0
        return wait_for(check) - t0, applied

    new, edit = [], []
    for k in range(repeat):
        host = f"new{k}-{run}.scale.test"
        doc = next(d for d in open(f"{work}/ingresses-0000.yaml").read().split("---\n")
                   if "kind: Ingress" in d)
        doc = doc.replace("name: ing-0", f"name: ing-new-{k}-{run}").replace("h0.scale.test", host)
        new.append(change(lambda: kubectl("apply", "-f", "-", stdin=doc),
                          lambda: get(host)[0] == 200))
        j = (k + 1) * n // (repeat + 1)
        edit.append(change(
            lambda: kubectl("annotate", "--overwrite", f"ingress/ing-{j}",
                            f'portcullis.dev/set_response_headers={{"X-Rev": "{run}-{k}"}}'),
            lambda: get(f"h{j}.scale.test")[1].get("x-rev") == f"{run}-{k}"))
    # The leader's first writes (an Event per Ingress) run beside serving; wait for them to
    # finish so the end figures include them. The controller logs a pass of writes only when it
    # took over 500 ms, which a small N never does: the wait is bounded by N (300 s at 10,000).
    limit = min(300, max(10, n * 0.03))
    try:
        wait_for(lambda: "wrote Events and status" in open(f"{work}/controller.log").read(),
                 timeout=limit, every=0.5)
    except SystemExit:
        print(f"no pass of the leader's writes was logged within {limit:.0f} s (only passes over "
              "500 ms are)", file=sys.stderr)
    rss_end, hwm_end = memory(proc.pid)
finally:
    # The Ingresses this run added go again, also when a step failed: a kept namespace
    # (NAMESPACE) holds N for the next run, not N plus every earlier run's.
    subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, "-n", ns, "delete", "ingress",
                    "--ignore-not-found", "--wait=false",
                    *[f"ing-new-{k}-{run}" for k in range(repeat)]],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
log.close()

# The controller's own timings, from its "published routes" log lines (the first is the full
# table).
text = open(f"{work}/controller.log").read()
passes = [{k: float(v) for k, v in re.findall(r"(\w+_ms)=([0-9.]+)", line)}
          for line in text.splitlines() if "published routes from the cluster" in line]
writes = [float(v) for v in re.findall(r"write_ms=([0-9.]+)", text)]
cpu_rows = {l.split()[0]: (float(l.split()[1]), float(l.split()[2])) for l in cpu.splitlines()}

def ms_stats(xs):
    xs = [x * 1000 for x in xs]
    return f"{statistics.median(xs):.0f} ms median, {max(xs):.0f} ms max"

print(f"\nController at scale: N={n} Ingresses, {os.cpu_count()} cores (shared), release build")
print("| measure | result |")
print("|---|---|")
print(f"| create {n} Ingresses{' with a Service and EndpointSlice each' if os.environ.get('SERVICES') == 'each' else ''} (kubectl apply --server-side, 2 at a time) | {create_s} s |")
print(f"| start → /readyz 200 | {ready * 1000:.0f} ms |")
print(f"| start → h{n - 1}.scale.test answered 200 | {served * 1000:.0f} ms |")
print(f"| new Ingress → served (x{repeat}, from kubectl start) | {ms_stats([a for a, _ in new])} |")
print(f"| annotation edit → visible (x{repeat}, from kubectl start) | {ms_stats([a for a, _ in edit])} |")
print(f"| of which kubectl itself | {ms_stats([b for _, b in new + edit])} |")
print(f"| RSS after first table | {rss_first:.0f} MiB |")
print(f"| RSS / peak (VmHWM) at the end | {rss_end:.0f} / {hwm_end:.0f} MiB |")
if passes:
    first = passes[0]
    later = passes[1:] or passes
    fmt = lambda key, ps: f"{statistics.median(p.get(key, 0) for p in ps):.0f}"
    print(f"| controller log, first pass: snapshot / translate / publish | "
          f"{first.get('snapshot_ms', 0):.0f} / {first.get('translate_ms', 0):.0f} / {first.get('publish_ms', 0):.0f} ms |")
    print(f"| controller log, later passes (median of {len(later)}) | "
          f"{fmt('snapshot_ms', later)} / {fmt('translate_ms', later)} / {fmt('publish_ms', later)} ms |")
if writes:
    print(f"| leader's first Events and status (beside serving) | {writes[0] / 1000:.1f} s |")
for name, label in [("snapshot_clone", "snapshot copy"), ("translate", "translate(&Snapshot)"),
                    ("compile", "RouteTable::compile"),
                    ("publish_cluster", "Shared::publish_cluster (fingerprint + compile + swap)"),
                    ("publish_cluster_unchanged", "Shared::publish_cluster, nothing changed")]:
    if name in cpu_rows:
        med, mx = cpu_rows[name]
        print(f"| {label}, {n} routes, no API server | {med:.1f} ms median, {mx:.1f} ms max |")
PY
