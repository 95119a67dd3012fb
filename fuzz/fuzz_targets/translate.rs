#![no_main]
//! Cluster objects → routes. The input is JSON: either a whole snapshot
//! (`{"ingresses": [...], "services": [...], "slices": [...], "secrets": [...],
//! "classes": [...], "policies": [...]}`, every list optional) or one bare Ingress, which is
//! translated next to a fixed Service `web` (port 80 → 8080 with a ready endpoint) and a fixed
//! Policy `p` in its namespace. The routes are then compiled into a route table and looked up.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use libfuzzer_sys::fuzz_target;
use portcullis::config::{HostPattern, PathMatch};
use portcullis::controller::crd::Policy as PolicyObject;
use portcullis::controller::translate::{Options, Snapshot, translate};
use portcullis::routes::RouteTable;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Objects {
    ingresses: Vec<Ingress>,
    classes: Vec<IngressClass>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    secrets: Vec<Secret>,
    policies: Vec<PolicyObject>,
}

fn around(ingress: Ingress) -> Objects {
    let ns = ingress.metadata.namespace.clone().unwrap_or_default();
    let service = json!({"metadata": {"namespace": ns, "name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let slice = json!({"metadata": {"namespace": ns, "name": "web-abc",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]});
    let policy = json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Policy",
        "metadata": {"namespace": ns, "name": "p"},
        "spec": {"allow": {"or": [{"domain": {"is": "example.com"}}]}}});
    Objects {
        ingresses: vec![ingress],
        services: vec![serde_json::from_value(service).unwrap()],
        slices: vec![serde_json::from_value(slice).unwrap()],
        policies: vec![serde_json::from_value(policy).unwrap()],
        ..Objects::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let objects = if value.get("ingresses").is_some() || value.get("policies").is_some() {
        match serde_json::from_value::<Objects>(value) {
            Ok(o) => o,
            Err(_) => return,
        }
    } else {
        match serde_json::from_value::<Ingress>(value) {
            Ok(i) => around(i),
            Err(_) => return,
        }
    };
    // The controller hands the translation the reflector stores' objects, shared.
    fn shared<T>(objects: Vec<T>) -> Vec<std::sync::Arc<T>> {
        objects.into_iter().map(std::sync::Arc::new).collect()
    }
    let snap = Snapshot {
        ingresses: shared(objects.ingresses),
        classes: shared(objects.classes),
        services: shared(objects.services),
        slices: shared(objects.slices),
        secrets: shared(objects.secrets),
        policies: shared(objects.policies),
        gateway: Default::default(),
        options: Options::default(),
    };
    let out = translate(&snap);
    // Translating is a function of the snapshot.
    assert_eq!(out.routes.len(), translate(&snap).routes.len());
    let routes = out.routes.clone();
    let table = RouteTable::compile(out.routes, &|h, p| {
        h.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, p))
    });
    for route in &routes {
        let host = match &route.host {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(s) => format!("x.{s}"),
            HostPattern::Any => "any.example".to_string(),
        };
        let path = match &route.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
            _ => "/".to_string(),
        };
        // Some route (this one or an earlier claim) serves every exact host and path produced.
        let found = table.lookup(&host, route.port.unwrap_or(443), &path);
        if matches!(route.path, PathMatch::Exact(_)) && route.port.is_none() {
            assert!(found.is_some(), "no route for {host}{path}");
        }
    }
});
