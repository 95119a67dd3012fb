//! The controller's per-pass CPU work for N Ingresses, without an API server: copy the snapshot
//! (what reading the reflector stores costs), `translate`, and publishing the routes
//! (`RouteSink::publish` of the cluster layer: comparison with the last, name resolution,
//! `RouteTable::compile`, swap),
//! plus `RouteTable::compile` alone. Used by `bench/controller-scale.sh`; not a test.
//!
//!   cargo run --release --example scale_translate -- [N] [ROUNDS]
//!
//! Prints one `name median_ms max_ms` line per step (ROUNDS rounds each, default 7).

use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portcullis::config::Settings;
use portcullis::controller::translate::{Options, Snapshot, translate};
use portcullis::metrics::Metrics;
use portcullis::routes::RouteTable;
use portcullis::routes::{Global, Layer, RouteSink};
use std::sync::Arc;

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

/// N Ingresses shaped like the ones `bench/controller-scale.sh` creates (one host each, one
/// Prefix path, a public-access annotation), but each with a Service and an EndpointSlice of
/// its own, as clusters have them: a lookup that scanned every Service would show here.
fn snapshot(n: usize) -> Snapshot {
    let ns = "scale";
    let ingresses = (0..n)
        .map(|i| {
            from_json::<Arc<Ingress>>(serde_json::json!({
                "metadata": {
                    "name": format!("ing-{i}"),
                    "namespace": ns,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "annotations": {"portcullis.dev/allow_public_unauthenticated_access": "true"},
                },
                "spec": {
                    "ingressClassName": "portcullis",
                    "rules": [{
                        "host": format!("h{i}.scale.test"),
                        "http": {"paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": format!("web-{i}"), "port": {"name": "http"}}},
                        }]},
                    }],
                },
            }))
        })
        .collect();
    Snapshot {
        ingresses,
        classes: vec![from_json::<Arc<IngressClass>>(serde_json::json!({
            "metadata": {"name": "portcullis"},
            "spec": {"controller": "portcullis.dev/ingress-controller"},
        }))],
        services: (0..n).map(|i| service(ns, &format!("web-{i}"))).collect(),
        slices: (0..n).map(|i| slice(ns, &format!("web-{i}"), i)).collect(),
        secrets: Vec::new(),
        policies: Vec::new(),
        gateway: Default::default(),
        options: Options::default(),
    }
}

/// The Service `name` with one named port.
fn service(ns: &str, name: &str) -> Arc<Service> {
    from_json(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
}

/// An EndpointSlice of the Service `name` with one ready endpoint (the `i`th address).
fn slice(ns: &str, name: &str, i: usize) -> Arc<EndpointSlice> {
    from_json(serde_json::json!({
        "metadata": {
            "name": format!("{name}-1"),
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{
            "addresses": [format!("10.1.{}.{}", i / 250, i % 250 + 1)],
            "conditions": {"ready": true},
        }],
    }))
}

/// Median and max of `rounds` runs of `f`, in milliseconds.
fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("N"));
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("ROUNDS"));
    let snap = snapshot(n);
    let routes = translate(&snap).routes;
    assert_eq!(routes.len(), n, "every Ingress becomes one route");

    let report = |name: &str, (median, max): (f64, f64)| {
        println!("{name} {median:.2} {max:.2}");
    };
    report("snapshot_clone", time(rounds, || snap.clone()));
    report("translate", time(rounds, || translate(&snap)));
    report(
        "compile",
        time(rounds, || RouteTable::compile(routes.clone(), &|_, _| None)),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base =
        Settings::parse("insecure_server: true\n", "bench.yaml", |_| None).expect("settings");
    let sink = RouteSink::new(Arc::new(Metrics::new().expect("metrics"))).expect("route sink");
    rt.block_on(sink.publish(Layer::File(Global::from_settings(&base)), vec![], vec![]));
    // Alternate two tables that differ in one route, so every round really publishes.
    let mut changed = routes.clone();
    Arc::make_mut(&mut changed[n / 2].options)
        .set_response_headers
        .insert("X-Rev".into(), "2".into());
    let mut flip = false;
    report(
        "publish_cluster",
        time(rounds, || {
            flip = !flip;
            let r = if flip {
                routes.clone()
            } else {
                changed.clone()
            };
            let published = rt.block_on(sink.publish(Layer::Cluster, r, Vec::new()));
            assert!(published.changed);
        }),
    );
    report(
        "publish_cluster_unchanged",
        time(rounds, || {
            let r = if flip {
                routes.clone()
            } else {
                changed.clone()
            };
            rt.block_on(sink.publish(Layer::Cluster, r, Vec::new()))
        }),
    );
}
