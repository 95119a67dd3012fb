//! The Gateway API translation, checked as tables and from whole snapshots, with the
//! specification's rules: hostnames intersect, `sectionName` picks a listener, `allowedRoutes`
//! admits namespaces and kinds, cross-namespace references need a ReferenceGrant.

use serde_json::{Value as Json, json};

use super::*;
use crate::controller::translate::{Snapshot, translate as translate_all};
use crate::ppl::{Decision, Request};

fn from<T: serde::de::DeserializeOwned>(v: Json) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn hosts(h: Option<Vec<HostPattern>>) -> Vec<String> {
    h.map(|v| v.iter().map(|p| p.to_string()).collect())
        .unwrap_or_else(|| vec!["(none)".into()])
}

#[test]
fn route_hostnames_are_intersected_with_the_listener_hostname() {
    let s = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let cases: &[(Option<&str>, &[&str], &[&str])] = &[
        (None, &[], &["*"]),
        (Some("a.test"), &[], &["a.test"]),
        (None, &["a.test", "b.test"], &["a.test", "b.test"]),
        (Some("a.test"), &["a.test", "b.test"], &["a.test"]),
        (Some("*.test"), &["a.test", "b.other"], &["a.test"]),
        (Some("a.test"), &["*.test"], &["a.test"]),
        (Some("*.test"), &["*.a.test"], &["*.a.test"]),
        (Some("a.test"), &["b.test"], &["(none)"]),
        // A wildcard does not match the bare suffix.
        (Some("*.test"), &["test"], &["(none)"]),
        // Names that do not parse match nothing, never every host.
        (None, &["a*b.test"], &["(none)"]),
        (Some("*.test"), &["a*b.test", "*."], &["(none)"]),
        (None, &["a*b.test", "a.test"], &["a.test"]),
    ];
    for (listener, route, want) in cases {
        let got = hosts(intersect(*listener, &s(route)));
        let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
        assert_eq!(got, want, "listener {listener:?} route {route:?}");
    }
}

#[test]
fn http_matches_become_path_matches_and_conditions_and_bad_fields_are_named() {
    let m = |v: Json| http_match(&from(v), "spec.rules[0].matches[0]");
    let path = |v: Json| m(v).map(|(p, _)| p);
    assert!(matches!(path(json!({})), Ok(PathMatch::Any)));
    assert!(
        matches!(path(json!({"path": {"type": "Exact", "value": "/a"}})), Ok(PathMatch::Exact(p)) if p == "/a")
    );
    assert!(
        matches!(path(json!({"path": {"value": "/a/"}})), Ok(PathMatch::Prefix(p)) if p == "/a")
    );
    let re = path(json!({"path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"}}));
    assert!(
        matches!(&re, Ok(p) if p.matches("/v2/x") && !p.matches("/x/v2/")),
        "{re:?}"
    );
    // Conditions: header names lower case, the first of two entries with one name kept.
    let (_, c) = m(json!({"method": "POST",
                          "headers": [{"name": "X-Env", "value": "canary"},
                                      {"name": "x-env", "value": "ignored"},
                                      {"type": "RegularExpression", "name": "x-v", "value": "[0-9]+"}],
                          "queryParams": [{"name": "Debug", "value": "1"}]}))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.method.as_deref(), Some("POST"));
    let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["x-env", "x-v"]);
    assert_eq!(
        c.headers[0].1,
        crate::config::ValueMatch::Exact("canary".into())
    );
    assert_eq!(
        c.query[0].0, "Debug",
        "query parameter names keep their case"
    );
    for (bad, field) in [
        (
            json!({"headers": [{"name": "a b", "value": "b"}]}),
            "matches[0].headers[0].name",
        ),
        (
            json!({"headers": [{"type": "RegularExpression", "name": "a", "value": "("}]}),
            "matches[0].headers[0].value",
        ),
        (
            json!({"queryParams": [{"type": "Fuzzy", "name": "a", "value": "b"}]}),
            "matches[0].queryParams[0].type",
        ),
        (
            json!({"path": {"type": "Exact", "value": "a"}}),
            "matches[0].path.value",
        ),
        (
            json!({"path": {"type": "RegularExpression", "value": "("}}),
            "matches[0].path.value",
        ),
    ] {
        let e = m(bad.clone()).err().unwrap_or_default();
        assert!(e.contains(field), "{bad}: {e}");
    }
}

#[test]
fn grpc_methods_become_paths() {
    let m = |v: Json| grpc_match(&from(v), "m");
    let check = |v: Json, yes: &[&str], no: &[&str]| {
        let (p, _) = m(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        for y in yes {
            assert!(p.matches(y), "{v} should match {y}");
        }
        for n in no {
            assert!(!p.matches(n), "{v} should not match {n}");
        }
    };
    check(
        json!({"method": {"service": "echo.Echo", "method": "Say"}}),
        &["/echo.Echo/Say"],
        &["/echo.Echo/Other"],
    );
    check(
        json!({"method": {"service": "echo.Echo"}}),
        &["/echo.Echo/Say", "/echo.Echo/X"],
        &["/other.S/Say"],
    );
    check(
        json!({"method": {"method": "Say"}}),
        &["/a.B/Say"],
        &["/a.B/Sayy"],
    );
    check(
        json!({"method": {"type": "RegularExpression", "service": "echo\\..*"}}),
        &["/echo.E/X"],
        &["/other/X"],
    );
    assert!(m(json!({"method": {"service": "a/b", "method": "x"}})).is_err());
    let (_, c) =
        m(json!({"headers": [{"name": "A", "value": "b"}]})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.headers[0].0, "a");
}

#[test]
fn weights_give_each_backend_its_share_whatever_its_endpoint_count() {
    let up = |s: &str| Upstream::new(url::Url::parse(s).unwrap_or_else(|e| panic!("{e}")));
    let out = weighted(vec![
        (1, vec![up("http://10.0.0.1:80"), up("http://10.0.0.2:80")]),
        (3, vec![up("http://10.0.0.3:80")]),
    ]);
    let w: Vec<u32> = out.iter().map(|u| u.weight).collect();
    // Backend A: 2 endpoints × 1 = 2 of 8; backend B: 6 of 8, i.e. 1 : 3.
    assert_eq!(w, vec![1, 1, 6]);
    // Endpoint counts whose least common multiple does not fit in 64 bits (the primes up to
    // 53): weights are scaled instead, and each backend still gets about its share.
    let primes = [
        2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53,
    ];
    let groups = primes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ups = (0..*n)
                .map(|j| up(&format!("http://10.{i}.0.{j}:80")))
                .collect();
            (1, ups)
        })
        .collect();
    let out = weighted(groups);
    let mut start = 0;
    let shares: Vec<u64> = primes
        .iter()
        .map(|n| {
            let n = *n as usize;
            let share = out[start..start + n]
                .iter()
                .map(|u| u64::from(u.weight))
                .sum();
            start += n;
            share
        })
        .collect();
    let (lo, hi) = (shares.iter().min(), shares.iter().max());
    assert!(
        lo.zip(hi).is_some_and(|(lo, hi)| hi - lo <= hi / 1000),
        "{shares:?}"
    );
}

// --- whole snapshots ---------------------------------------------------------------------

fn meta(ns: &str, name: &str, age: u32) -> Json {
    json!({"namespace": ns, "name": name, "generation": 1,
           "creationTimestamp": format!("2026-01-01T00:00:{age:02}Z")})
}

fn class() -> Arc<GatewayClass> {
    from(json!({"metadata": {"name": "portcullis"},
                "spec": {"controllerName": CONTROLLER_NAME}}))
}

/// Gateway `gw` in `infra`: listener `web` (HTTP, *.test, routes from all namespaces) and
/// `admin` (HTTP, admin.test, routes from its own namespace only).
fn gateway() -> Arc<Gateway> {
    from(json!({
        "metadata": meta("infra", "gw", 0),
        "spec": {"gatewayClassName": "portcullis", "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.test",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "admin", "port": 80, "protocol": "HTTP", "hostname": "admin.test"},
        ]}
    }))
}

fn http_route(ns: &str, name: &str, age: u32, spec: Json) -> Arc<HTTPRoute> {
    from(json!({"metadata": meta(ns, name, age), "spec": spec}))
}

fn service_and_slice(snap: &mut Snapshot, ns: &str, name: &str, ip: &str) {
    snap.services
        .push(from(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})));
    snap.slices.push(from(json!({
        "metadata": {"namespace": ns, "name": format!("{name}-x"),
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [ip]}],
    })));
}

fn snapshot(routes: Vec<Arc<HTTPRoute>>) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.gateway.classes = vec![class()];
    snap.gateway.gateways = vec![gateway()];
    snap.gateway.http_routes = routes;
    service_and_slice(&mut snap, "apps", "web", "10.0.0.1");
    service_and_slice(&mut snap, "other", "db", "10.0.0.9");
    snap
}

fn parent_conditions(t: &Translation, name: &str) -> Vec<String> {
    let r = t
        .gateway
        .routes
        .iter()
        .find(|r| r.object.name == name)
        .unwrap_or_else(|| panic!("no report for {name}: {:?}", t.gateway.routes));
    r.parents
        .iter()
        .flat_map(|p| p.conditions.iter())
        .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
        .collect()
}

fn web_route(extra_rule: Json) -> Json {
    let mut rule = json!({"backendRefs": [{"name": "web", "port": 80}]});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra_rule.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "web"}],
           "hostnames": ["app.test"], "rules": [rule]})
}

#[test]
fn an_accepted_route_serves_on_its_listener_and_statuses_say_so() {
    let t = translate_all(&snapshot(vec![http_route(
        "apps",
        "app",
        1,
        web_route(json!({})),
    )]));
    assert_eq!(t.gateway.classes.len(), 1);
    assert!(t.gateway.classes[0].conditions[0].status);
    let gw = &t.gateway.gateways[0];
    assert!(gw.conditions.iter().all(|c| c.status), "{gw:?}");
    let attached: Vec<(String, i32)> = gw
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.attached_routes))
        .collect();
    assert_eq!(attached, vec![("web".into(), 1), ("admin".into(), 0)]);
    assert_eq!(
        parent_conditions(&t, "app"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );
    assert_eq!(t.routes.len(), 1);
    let r = &t.routes[0];
    assert_eq!(
        (r.host.to_string(), r.path.to_string()),
        ("app.test".into(), PathMatch::Any.to_string())
    );
    assert_eq!(r.to[0].url.as_str(), "http://10.0.0.1:8080/");
    // No Policy: denied, exactly as an Ingress without one.
    let req = Request::new(chrono::Utc::now());
    assert_eq!(r.policy.evaluate(&req).decision, Decision::Deny);
}

#[test]
fn listeners_refuse_routes_they_do_not_admit() {
    // `admin` admits only its own namespace; `web` has no host in common with other.example.
    let t = translate_all(&snapshot(vec![
        http_route(
            "apps",
            "ns",
            1,
            json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "admin"}],
                                             "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ),
        http_route(
            "apps",
            "host",
            2,
            json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "web"}],
                                               "hostnames": ["other.example"],
                                               "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ),
        http_route(
            "apps",
            "section",
            3,
            json!({"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "nope"}],
                                                  "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ),
    ]));
    assert!(t.routes.is_empty(), "{:?}", t.routes);
    assert_eq!(
        parent_conditions(&t, "ns")[0],
        "Accepted=false NotAllowedByListeners"
    );
    assert_eq!(
        parent_conditions(&t, "host")[0],
        "Accepted=false NoMatchingListenerHostname"
    );
    assert_eq!(
        parent_conditions(&t, "section")[0],
        "Accepted=false NoMatchingParent"
    );
}

#[test]
fn a_backend_in_another_namespace_needs_a_reference_grant() {
    let spec = json!({"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["db.test"],
                      "rules": [{"backendRefs": [{"name": "db", "namespace": "other", "port": 80}]}]});
    let mut snap = snapshot(vec![http_route("apps", "cross", 1, spec)]);
    let t = translate_all(&snap);
    assert_eq!(
        parent_conditions(&t, "cross"),
        vec![
            "Accepted=true Accepted",
            "ResolvedRefs=false RefNotPermitted"
        ]
    );
    assert!(t.routes.iter().all(|r| r.to.is_empty()), "{:?}", t.routes);
    assert!(
        matches!(
            t.routes[0].options.direct,
            Some(Direct::Respond { status: 500, .. })
        ),
        "requests get a 500"
    );
    snap.gateway.grants.push(from(json!({
        "metadata": {"namespace": "other", "name": "let-apps"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
                 "to": [{"group": "", "kind": "Service"}]}
    })));
    let t = translate_all(&snap);
    assert_eq!(
        parent_conditions(&t, "cross")[1],
        "ResolvedRefs=true ResolvedRefs"
    );
    assert_eq!(t.routes[0].to[0].url.as_str(), "http://10.0.0.9:8080/");
    assert!(t.routes[0].options.direct.is_none());
}

#[test]
fn filters_map_onto_route_options_and_a_policy_filter_sets_the_rule_policy() {
    let mut snap = snapshot(vec![http_route(
        "apps",
        "f",
        1,
        web_route(json!({"filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}], "add": [{"name": "X-Add", "value": "3"}], "remove": ["X-B"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "X-C", "value": "2"}], "remove": ["Server"]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "in.test", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
            {"type": "ExtensionRef", "extensionRef": {"group": "portcullis.dev", "kind": "Policy", "name": "open"}},
        ]})),
    )]);
    snap.policies.push(from(
        json!({"metadata": {"namespace": "apps", "name": "open"},
                                   "spec": {"allow": {"or": [{"accept": true}]}}}),
    ));
    let t = translate_all(&snap);
    assert_eq!(parent_conditions(&t, "f")[0], "Accepted=true Accepted");
    let o = &t.routes[0].options;
    assert_eq!(
        o.set_request_headers.get("x-a").map(String::as_str),
        Some("1")
    );
    assert_eq!(o.remove_request_headers, vec!["x-b".to_string()]);
    assert_eq!(
        o.set_response_headers.get("x-c").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        o.add_request_headers,
        vec![("x-add".to_string(), "3".to_string())]
    );
    assert_eq!(o.remove_response_headers, vec!["server".to_string()]);
    assert_eq!(o.host_rewrite.as_deref(), Some("in.test"));
    assert_eq!(o.prefix_rewrite.as_deref(), Some("/v2"));
    let req = Request::new(chrono::Utc::now());
    assert_eq!(t.routes[0].policy.evaluate(&req).decision, Decision::Allow);

    // A missing Policy: the rule denies everything and ResolvedRefs says why.
    snap.policies.clear();
    let t = translate_all(&snap);
    assert_eq!(
        parent_conditions(&t, "f")[1],
        "ResolvedRefs=false PolicyNotFound"
    );
    assert_eq!(t.routes[0].policy.evaluate(&req).decision, Decision::Deny);
}

#[test]
fn an_unsupported_field_stops_the_route_and_names_the_field_while_others_serve() {
    let mirror = json!({"type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "web", "port": 80}}});
    let t = translate_all(&snapshot(vec![
        http_route("apps", "bad", 1, web_route(json!({"filters": [mirror]}))),
        http_route(
            "apps",
            "good",
            2,
            json!({"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["good.test"],
                                               "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ),
    ]));
    let bad = &t
        .gateway
        .routes
        .iter()
        .find(|r| r.object.name == "bad")
        .map(|r| r.parents[0].conditions[0].clone());
    let bad = bad.clone().unwrap_or_else(|| panic!("no report"));
    assert_eq!((bad.status, bad.reason), (false, "UnsupportedValue"));
    assert!(
        bad.message.contains("spec.rules[0].filters[0].type"),
        "{}",
        bad.message
    );
    let hosts: Vec<String> = t.routes.iter().map(|r| r.host.to_string()).collect();
    assert_eq!(hosts, vec!["good.test".to_string()]);
}

/// A rewritten host that cannot be a `Host` value stops the route with the field named, instead
/// of failing each of its requests.
#[test]
fn a_rewritten_host_that_is_no_host_value_stops_the_route() {
    let rewrite = json!({"type": "URLRewrite", "urlRewrite": {"hostname": "in.test\r\nx: y"}});
    let t = translate_all(&snapshot(vec![http_route(
        "apps",
        "bad",
        1,
        web_route(json!({"filters": [rewrite]})),
    )]));
    let bad = t
        .gateway
        .routes
        .iter()
        .find(|r| r.object.name == "bad")
        .map(|r| r.parents[0].conditions[0].clone())
        .unwrap_or_else(|| panic!("no report"));
    assert!(!bad.status, "{}", bad.message);
    assert!(
        bad.message.contains("urlRewrite.hostname")
            && bad.message.contains("not a valid header value"),
        "{}",
        bad.message
    );
    assert!(t.routes.is_empty());
}

#[test]
fn a_route_that_claims_an_ingress_host_and_path_is_a_conflict() {
    let mut snap = snapshot(vec![http_route("apps", "late", 9, web_route(json!({})))]);
    snap.ingresses.push(from(json!({
        "metadata": {"namespace": "apps", "name": "first", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "portcullis", "rules": [{"host": "app.test", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    })));
    let t = translate_all(&snap);
    assert_eq!(t.routes.len(), 1);
    assert!(
        t.routes[0].name.starts_with("apps/first/"),
        "{}",
        t.routes[0].name
    );
    let conflict = t.diagnostics.iter().find(|d| d.reason == "Conflict");
    assert!(
        conflict.is_some_and(
            |d| d.object.kind == "HTTPRoute" && d.message.contains("Ingress apps/first")
        ),
        "{:?}",
        t.diagnostics
    );
}

#[test]
fn grpc_routes_reach_their_backends_over_h2c() {
    let mut snap = snapshot(Vec::new());
    snap.gateway.grpc_routes.push(from(json!({
        "metadata": meta("apps", "rpc", 1),
        "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["rpc.test"],
                 "rules": [{"matches": [{"method": {"service": "echo.Echo", "method": "Say"}}],
                            "backendRefs": [{"name": "web", "port": 80}]}]}
    })));
    let t = translate_all(&snap);
    assert_eq!(parent_conditions(&t, "rpc")[0], "Accepted=true Accepted");
    assert_eq!(
        t.routes[0].path.to_string(),
        PathMatch::Exact("/echo.Echo/Say".into()).to_string()
    );
    assert_eq!(t.routes[0].to[0].url.as_str(), "h2c://10.0.0.1:8080");
}

#[test]
fn https_listeners_load_their_certificate_and_report_a_missing_one() {
    let mut snap = snapshot(Vec::new());
    snap.gateway.gateways = vec![from(json!({
        "metadata": meta("infra", "gw", 0),
        "spec": {"gatewayClassName": "portcullis", "listeners": [
            {"name": "tls", "port": 443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "missing"}]}},
            {"name": "tcp", "port": 9000, "protocol": "TCP"},
        ]}
    }))];
    let t = translate_all(&snap);
    let l = &t.gateway.gateways[0].listeners;
    let summary: Vec<Vec<String>> = l
        .iter()
        .map(|l| {
            l.conditions
                .iter()
                .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                .collect()
        })
        .collect();
    assert_eq!(summary[0][2], "ResolvedRefs=false InvalidCertificateRef");
    assert_eq!(summary[1][0], "Accepted=false UnsupportedProtocol");
}

#[test]
fn unknown_fields_are_ignored_when_objects_are_read() {
    let r: HTTPRoute = from(json!({
        "metadata": meta("apps", "x", 0),
        "spec": {"parentRefs": [{"name": "gw", "futureField": 1}], "somethingNew": {"a": 1},
                 "rules": [{"timeouts": {"request": "5s"}, "backendRefs": [{"name": "web", "port": 80}]}]}
    }));
    assert_eq!(r.spec.parent_refs[0].name, "gw");
}

#[test]
fn a_certificate_in_another_namespace_needs_a_reference_grant() {
    let ck = rcgen::generate_simple_self_signed(vec!["secure.test".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let b64 = |s: String| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let mut snap = snapshot(Vec::new());
    snap.secrets.push(from(json!({
        "metadata": {"namespace": "certs", "name": "tls"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(ck.cert.pem()), "tls.key": b64(ck.signing_key.serialize_pem())}
    })));
    snap.gateway.gateways = vec![from(json!({
        "metadata": meta("infra", "gw", 0),
        "spec": {"gatewayClassName": "portcullis", "listeners": [
            {"name": "tls", "port": 443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "tls", "namespace": "certs"}]}},
        ]}
    }))];
    let resolved = |t: &Translation| {
        let c = &t.gateway.gateways[0].listeners[0].conditions[2];
        format!("{}={} {}", c.type_, c.status, c.reason)
    };
    let t = translate_all(&snap);
    assert_eq!(resolved(&t), "ResolvedRefs=false RefNotPermitted");
    assert!(t.certs.is_empty());
    snap.gateway.grants.push(from(json!({
        "metadata": {"namespace": "certs", "name": "let-gateways"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "Secret", "name": "tls"}]}
    })));
    let t = translate_all(&snap);
    assert_eq!(resolved(&t), "ResolvedRefs=true ResolvedRefs");
    let origins: Vec<&str> = t.certs.iter().map(|c| c.origin.as_str()).collect();
    assert_eq!(origins, vec!["certs/tls"]);
}

#[test]
fn objects_missing_fields_still_parse_so_one_cannot_stop_a_watch() {
    // Another controller's Gateway: an address without `type`, a listener status without
    // `supportedKinds`; a route whose backendRef lacks its name.
    let gw: Gateway = from(json!({
        "metadata": meta("infra", "theirs", 0),
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "l", "protocol": "HTTP"}]},
        "status": {"addresses": [{"value": "10.0.0.1"}], "listeners": [{"name": "l"}]}
    }));
    assert_eq!(gw.spec.listeners[0].port, 0);
    let mut snap = snapshot(vec![http_route(
        "apps",
        "nameless",
        1,
        json!({"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["n.test"],
               "rules": [{"backendRefs": [{"port": 80}]}]}),
    )]);
    snap.gateway.gateways.push(Arc::new(gw));
    let t = translate_all(&snap);
    assert_eq!(
        parent_conditions(&t, "nameless")[1],
        "ResolvedRefs=false BackendNotFound"
    );
}

#[test]
fn a_rule_without_backends_is_served_with_none() {
    let t = translate_all(&snapshot(vec![http_route(
        "apps",
        "empty",
        1,
        json!({"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["e.test"],
               "rules": [{"matches": [{"path": {"value": "/x"}}]}]}),
    )]));
    assert_eq!(
        parent_conditions(&t, "empty"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );
    assert_eq!(t.routes.len(), 1);
    assert!(t.routes[0].to.is_empty(), "no upstream: 503");
}

#[test]
fn rule_timeouts_become_the_route_deadline_and_bad_ones_are_named() {
    let timeout_of = |timeouts: Json| {
        let t = translate_all(&snapshot(vec![http_route(
            "apps",
            "app",
            1,
            web_route(json!({"timeouts": timeouts})),
        )]));
        match t.routes.first() {
            Some(r) => Ok(r.options.timeout),
            None => Err(parent_conditions(&t, "app").join(" | ")
                + &t.gateway.routes[0].parents[0].conditions[0].message),
        }
    };
    let secs = |s| Ok(Some(Duration::from_secs(s)));
    assert_eq!(timeout_of(json!({"request": "1m30s"})), secs(90));
    assert_eq!(
        timeout_of(json!({"backendRequest": "500ms"})),
        Ok(Some(Duration::from_millis(500)))
    );
    assert_eq!(
        timeout_of(json!({"request": "20s", "backendRequest": "5s"})),
        secs(5)
    );
    // 0s is "no timeout": the other one, or none at all.
    assert_eq!(
        timeout_of(json!({"request": "0s", "backendRequest": "5s"})),
        secs(5)
    );
    assert_eq!(timeout_of(json!({"request": "0s"})), secs(0));
    assert_eq!(timeout_of(json!({})), Ok(None));
    for bad in [
        json!({"request": "1.5s"}),
        json!({"request": "10"}),
        json!({"request": "123456s"}),
        json!({"request": "1h1m1s1ms1h"}),
        json!({"request": "5s", "backendRequest": "10s"}),
    ] {
        let e = timeout_of(bad.clone()).expect_err(&bad.to_string());
        assert!(
            e.contains("Accepted=false UnsupportedValue") && e.contains("spec.rules[0].timeouts"),
            "{bad}: {e}"
        );
    }
}

fn tls_policy(name: &str, age: u32, spec: Json) -> Arc<types::BackendTLSPolicy> {
    from(json!({"metadata": meta("apps", name, age), "spec": spec}))
}

fn ca_config_map(name: &str, pem: &str) -> Arc<k8s_openapi::api::core::v1::ConfigMap> {
    from(json!({"metadata": {"namespace": "apps", "name": name}, "data": {"ca.crt": pem}}))
}

/// `web-tls`: the Service `web` over TLS to `hostname`, verified with the ConfigMap `web-ca`.
fn web_ca_policy(hostname: &str) -> Arc<types::BackendTLSPolicy> {
    tls_policy(
        "web-tls",
        1,
        json!({"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
               "validation": {"hostname": hostname,
                              "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "web-ca"}]}}),
    )
}

fn test_ca() -> String {
    match rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]) {
        Ok(c) => c.cert.pem(),
        Err(e) => panic!("{e}"),
    }
}

/// `(type=status reason)` of the one ancestor of the first policy report.
fn policy_conditions(t: &Translation, name: &str) -> Vec<String> {
    let r = t
        .gateway
        .backend_tls
        .iter()
        .find(|r| r.object.name == name)
        .unwrap_or_else(|| panic!("no report for {name}: {:?}", t.gateway.backend_tls));
    assert_eq!(r.ancestors.len(), 1, "{r:?}");
    assert_eq!(
        (
            r.ancestors[0].0.kind.as_deref(),
            r.ancestors[0].0.namespace.as_deref(),
            r.ancestors[0].0.name.as_str()
        ),
        (Some("Gateway"), Some("infra"), "gw")
    );
    r.ancestors[0]
        .1
        .iter()
        .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
        .collect()
}

#[test]
fn a_backend_tls_policy_sends_tls_with_its_hostname_and_ca() {
    let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(json!({})))]);
    let pem = test_ca();
    snap.gateway.config_maps = vec![ca_config_map("web-ca", &pem)];
    snap.gateway.backend_tls = vec![web_ca_policy("Web.Apps.Test")];
    let t = translate_all(&snap);
    assert_eq!(
        parent_conditions(&t, "app"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );
    let to = &t.routes[0].to;
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].url.as_str(), "https://10.0.0.1:8080/");
    let tls = to[0]
        .backend_tls
        .as_deref()
        .expect("TLS settings of its own");
    assert_eq!(tls.server_name, "web.apps.test");
    let want = crate::tls::parse_cert_chain(&pem).expect("test CA parses");
    assert_eq!(tls.ca.as_ref(), Some(&want));
    assert_eq!(
        policy_conditions(&t, "web-tls"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );

    // The system's roots.
    snap.gateway.backend_tls = vec![tls_policy(
        "web-tls",
        1,
        json!({"targetRefs": [{"group": "", "kind": "Service", "name": "web", "sectionName": "http"}],
               "validation": {"hostname": "web.apps.test", "wellKnownCACertificates": "System"}}),
    )];
    let t = translate_all(&snap);
    let tls = t.routes[0].to[0].backend_tls.as_deref().expect("TLS");
    assert_eq!(tls.ca, None);

    // A policy for another Service, or another port, changes nothing.
    for target in [
        json!({"group": "", "kind": "Service", "name": "other"}),
        json!({"group": "", "kind": "Service", "name": "web", "sectionName": "metrics"}),
    ] {
        snap.gateway.backend_tls = vec![tls_policy(
            "web-tls",
            1,
            json!({"targetRefs": [target],
                   "validation": {"hostname": "web.apps.test", "wellKnownCACertificates": "System"}}),
        )];
        let t = translate_all(&snap);
        assert_eq!(t.routes[0].to[0].url.as_str(), "http://10.0.0.1:8080/");
        assert!(t.routes[0].to[0].backend_tls.is_none());
        assert!(
            t.gateway.backend_tls.iter().all(|r| r.ancestors.is_empty()),
            "{:?}",
            t.gateway.backend_tls
        );
    }
}

/// A policy is judged once per translation: every backend it covers shares its TLS settings
/// (one parsed CA, one connection pool in the route table), however many refer to it.
#[test]
fn backends_under_one_backend_tls_policy_share_its_settings() {
    let two = json!({"backendRefs": [{"name": "web", "port": 80}, {"name": "web", "port": 80}]});
    let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(two))]);
    snap.gateway.config_maps = vec![ca_config_map("web-ca", &test_ca())];
    snap.gateway.backend_tls = vec![web_ca_policy("web.apps.test")];
    let t = translate_all(&snap);
    let to = &t.routes[0].to;
    assert_eq!(to.len(), 2, "{to:?}");
    let (Some(a), Some(b)) = (&to[0].backend_tls, &to[1].backend_tls) else {
        panic!("both backends use TLS: {to:?}");
    };
    assert!(Arc::ptr_eq(a, b), "one policy, one set of TLS settings");
    assert_eq!(
        policy_conditions(&t, "web-tls"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );
}

#[test]
fn a_backend_tls_policy_that_cannot_be_honoured_refuses_the_backend() {
    let good_ca = test_ca();
    let cases: &[(Json, &[&str])] = &[
        (
            json!({"hostname": "web.apps.test",
                   "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "missing"}]}),
            &[
                "Accepted=false NoValidCACertificate",
                "ResolvedRefs=false InvalidCACertificateRef",
            ],
        ),
        (
            json!({"hostname": "web.apps.test",
                   "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "not-pem"}]}),
            &[
                "Accepted=false NoValidCACertificate",
                "ResolvedRefs=false InvalidCACertificateRef",
            ],
        ),
        (
            json!({"hostname": "web.apps.test",
                   "caCertificateRefs": [{"group": "", "kind": "Secret", "name": "web-ca"}]}),
            &[
                "Accepted=false NoValidCACertificate",
                "ResolvedRefs=false InvalidKind",
            ],
        ),
        // One good reference and one bad: connections through the bad one must fail, so the
        // backend is not used at all.
        (
            json!({"hostname": "web.apps.test",
                   "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "web-ca"},
                                         {"group": "", "kind": "ConfigMap", "name": "missing"}]}),
            &[
                "Accepted=true Accepted",
                "ResolvedRefs=false InvalidCACertificateRef",
            ],
        ),
        (
            json!({"hostname": "web.apps.test", "wellKnownCACertificates": "System",
                   "subjectAltNames": [{"type": "Hostname", "hostname": "other.test"}]}),
            &["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"],
        ),
        (
            json!({"hostname": "10.0.0.1", "wellKnownCACertificates": "System"}),
            &["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"],
        ),
        (
            json!({"hostname": " web.apps.test", "wellKnownCACertificates": "System"}),
            &["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"],
        ),
        (
            json!({"hostname": "web.apps.test.", "wellKnownCACertificates": "System"}),
            &["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"],
        ),
        (
            json!({"hostname": "web.apps.test", "wellKnownCACertificates": "Mozilla"}),
            &["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"],
        ),
    ];
    for (validation, want) in cases {
        let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(json!({})))]);
        snap.gateway.config_maps = vec![
            ca_config_map("web-ca", &good_ca),
            ca_config_map("not-pem", "hello"),
        ];
        snap.gateway.backend_tls = vec![tls_policy(
            "web-tls",
            1,
            json!({"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                   "validation": validation}),
        )];
        let t = translate_all(&snap);
        assert_eq!(policy_conditions(&t, "web-tls"), *want, "{validation}");
        assert_eq!(
            parent_conditions(&t, "app"),
            vec![
                "Accepted=true Accepted",
                "ResolvedRefs=false InvalidBackendTLSPolicy"
            ],
            "{validation}"
        );
        let message = &t.gateway.routes[0].parents[0].conditions[1].message;
        assert!(
            message.contains("BackendTLSPolicy apps/web-tls"),
            "{message}"
        );
        // Its only backend refused: allowed requests get a 500, nothing goes to the Service,
        // in plain text or otherwise.
        assert!(
            t.routes[0].to.is_empty(),
            "{validation}: {:?}",
            t.routes[0].to
        );
        assert!(
            matches!(
                t.routes[0].options.direct,
                Some(crate::config::Direct::Respond { status: 500, .. })
            ),
            "{:?}",
            t.routes[0].options.direct
        );
    }
    // Options Portcullis does not know are not ignored.
    let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(json!({})))]);
    snap.gateway.backend_tls = vec![tls_policy(
        "web-tls",
        1,
        json!({"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
               "validation": {"hostname": "web.apps.test", "wellKnownCACertificates": "System"},
               "options": {"example.com/min-version": "1.3"}}),
    )];
    let t = translate_all(&snap);
    assert_eq!(
        policy_conditions(&t, "web-tls"),
        vec!["Accepted=false Invalid", "ResolvedRefs=true ResolvedRefs"]
    );
    assert!(t.routes[0].to.is_empty());
}

#[test]
fn the_oldest_backend_tls_policy_wins_and_a_port_beats_the_whole_service() {
    let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(json!({})))]);
    let policy = |name: &str, age: u32, host: &str, section: Option<&str>| {
        let mut target = json!({"group": "", "kind": "Service", "name": "web"});
        if let Some(s) = section {
            target["sectionName"] = json!(s);
        }
        tls_policy(
            name,
            age,
            json!({"targetRefs": [target],
                   "validation": {"hostname": host, "wellKnownCACertificates": "System"}}),
        )
    };
    snap.gateway.backend_tls = vec![
        policy("young", 2, "young.test", None),
        policy("old", 1, "old.test", None),
    ];
    let t = translate_all(&snap);
    let tls = t.routes[0].to[0].backend_tls.as_deref().expect("TLS");
    assert_eq!(tls.server_name, "old.test");
    assert_eq!(
        policy_conditions(&t, "old"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );
    // The one that lost is Conflicted, naming the winner.
    let young = policy_conditions(&t, "young");
    assert_eq!(
        young,
        vec![
            "Accepted=false Conflicted",
            "ResolvedRefs=true ResolvedRefs"
        ]
    );
    let report = t
        .gateway
        .backend_tls
        .iter()
        .find(|r| r.object.name == "young");
    let message = &report.expect("a report").ancestors[0].1[0].message;
    assert!(message.contains("BackendTLSPolicy old"), "{message}");

    // A policy for the port (by its name) takes precedence over one for the whole Service,
    // whatever their ages; the two do not conflict.
    snap.gateway.backend_tls = vec![
        policy("service", 1, "service.test", None),
        policy("port", 3, "port.test", Some("http")),
    ];
    let t = translate_all(&snap);
    let tls = t.routes[0].to[0].backend_tls.as_deref().expect("TLS");
    assert_eq!(tls.server_name, "port.test");
    assert_eq!(
        policy_conditions(&t, "port"),
        vec!["Accepted=true Accepted", "ResolvedRefs=true ResolvedRefs"]
    );

    // A policy for the whole Service is not used for the port another one names: it is not
    // in conflict, and reports no ancestor (an earlier entry of ours is removed).
    let service = t
        .gateway
        .backend_tls
        .iter()
        .find(|r| r.object.name == "service");
    assert_eq!(service.map(|r| r.ancestors.len()), Some(0));

    // A policy that no route of ours uses reports no ancestor.
    snap.gateway.backend_tls = vec![policy("alone", 1, "alone.test", None)];
    snap.gateway.http_routes.clear();
    let t = translate_all(&snap);
    assert_eq!(t.gateway.backend_tls.len(), 1);
    assert!(t.gateway.backend_tls[0].ancestors.is_empty());
}

#[test]
fn a_backend_tls_policy_is_not_honoured_while_config_maps_are_unlisted() {
    let mut snap = snapshot(vec![http_route("apps", "app", 1, web_route(json!({})))]);
    snap.gateway.config_maps = vec![ca_config_map("web-ca", &test_ca())];
    snap.gateway.config_maps_pending = true;
    snap.gateway.backend_tls = vec![web_ca_policy("web.apps.test")];
    let t = translate_all(&snap);
    assert!(
        t.routes[0].to.is_empty(),
        "refused, not reached in plain text"
    );
    assert_eq!(
        policy_conditions(&t, "web-tls"),
        vec![
            "Accepted=false NoValidCACertificate",
            "ResolvedRefs=false InvalidCACertificateRef"
        ]
    );
    snap.gateway.config_maps_pending = false;
    let t = translate_all(&snap);
    assert_eq!(t.routes[0].to.len(), 1);
}

#[test]
fn a_header_modifier_that_cannot_be_sent_refuses_the_route() {
    for (modifier, field) in [
        (
            json!({"set": [{"name": "bad name", "value": "1"}]}),
            "requestHeaderModifier.set",
        ),
        (
            json!({"add": [{"name": "X-A", "value": "line\nbreak"}]}),
            "requestHeaderModifier.add",
        ),
        (
            json!({"remove": ["bad:name"]}),
            "requestHeaderModifier.remove",
        ),
    ] {
        let f = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": modifier});
        let t = translate_all(&snapshot(vec![http_route(
            "apps",
            "app",
            1,
            web_route(json!({"filters": [f]})),
        )]));
        let accepted = &t.gateway.routes[0].parents[0].conditions[0];
        assert_eq!(
            (accepted.status, accepted.reason),
            (false, "UnsupportedValue")
        );
        assert!(accepted.message.contains(field), "{}", accepted.message);
        assert!(t.routes.is_empty());
    }
}
