//! Table-driven tests of the translation, with plain values.

use serde_json::{Value as Json, json};

use super::*;
use crate::routes::RouteTable;

fn from<T: serde::de::DeserializeOwned>(v: Json) -> T {
    serde_json::from_value(v).unwrap()
}

/// An Ingress of class `portcullis` created `age` seconds after 2026-01-01.
fn ingress(ns: &str, name: &str, age: u32, annotations: Json, spec: Json) -> Arc<Ingress> {
    let mut spec = spec;
    if spec.get("ingressClassName").is_none() {
        spec["ingressClassName"] = json!("portcullis");
    }
    from(json!({
        "metadata": {
            "namespace": ns, "name": name, "annotations": annotations,
            "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", age / 60, age % 60),
        },
        "spec": spec,
    }))
}

fn service(ns: &str, name: &str, ports: Json) -> Arc<Service> {
    from(json!({"metadata": {"namespace": ns, "name": name}, "spec": {"ports": ports}}))
}

fn slice(ns: &str, svc: &str, ports: Json, endpoints: Json) -> Arc<EndpointSlice> {
    from(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-abc"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
    }))
}

fn backend(svc: &str, port: u16) -> Json {
    json!({"service": {"name": svc, "port": {"number": port}}})
}

fn rule(host: Option<&str>, paths: Json) -> Json {
    let mut r = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        r["host"] = json!(h);
    }
    r
}

fn path(p: &str, ty: &str, svc: &str) -> Json {
    json!({"path": p, "pathType": ty, "backend": backend(svc, 80)})
}

/// A snapshot with Service `web` (port 80 → 8080, one ready endpoint 10.0.0.1) in `ns`.
fn b64(s: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s)
}

/// A Secret of type `ty` holding `data` (values base64 already).
fn secret(ns: &str, name: &str, ty: &str, data: Json) -> Arc<Secret> {
    from(json!({"metadata": {"namespace": ns, "name": name}, "type": ty, "data": data}))
}

/// An Ingress `ns/NAME` with these annotations, serving `NAME.test` from the Service `web`.
fn annotated(name: &str, annotations: Json) -> Arc<Ingress> {
    ingress(
        "ns",
        name,
        0,
        annotations,
        json!({"rules": [rule(Some(&format!("{name}.test")), json!([path("/", "Prefix", "web")]))]}),
    )
}

/// The translation's route for `host`.
fn route_on_host<'a>(t: &'a Translation, host: &str) -> &'a Route {
    let host = HostPattern::parse(host).unwrap();
    t.routes.iter().find(|r| r.host == host).unwrap()
}

/// Each diagnostic as (object name, reason).
fn reasons_by_object(t: &Translation) -> Vec<(&str, &str)> {
    t.diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.reason))
        .collect()
}

fn base() -> Snapshot {
    Snapshot {
        services: vec![service(
            "ns",
            "web",
            json!([{"name": "http", "port": 80, "targetPort": 8080}]),
        )],
        slices: vec![slice(
            "ns",
            "web",
            json!([{"name": "http", "port": 8080}]),
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]),
        )],
        ..Snapshot::default()
    }
}

fn table(t: &Translation) -> RouteTable {
    RouteTable::compile(t.routes.clone(), &|h, p| {
        h.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, p))
    })
}

fn served_by(t: &RouteTable, host: &str, p: &str) -> Option<String> {
    t.lookup(host, 80, p).map(|r| r.route.name.clone())
}

fn reasons(t: &Translation) -> Vec<&'static str> {
    t.diagnostics.iter().map(|d| d.reason).collect()
}

#[test]
fn ingress_spec_path_examples() {
    // The examples table of the Ingress documentation ("Examples" under "Path types"), each a
    // separate Ingress with the given paths; the request path and whether it matches.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        Option<usize>,
    );
    let cases: &[Case] = &[
        (&[("/", "Prefix")], "/", Some(0)),
        (&[("/", "Prefix")], "/anything", Some(0)),
        (&[("/foo", "Exact")], "/foo", Some(0)),
        (&[("/foo", "Exact")], "/bar", None),
        (&[("/foo", "Exact")], "/foo/", None),
        (&[("/foo/", "Exact")], "/foo", None),
        (&[("/foo", "Prefix")], "/foo", Some(0)),
        (&[("/foo", "Prefix")], "/foo/", Some(0)),
        (&[("/foo/", "Prefix")], "/foo", Some(0)),
        (&[("/foo/", "Prefix")], "/foo/", Some(0)),
        (&[("/aaa/bb", "Prefix")], "/aaa/bbb", None),
        (&[("/aaa/bbb", "Prefix")], "/aaa/bbb", Some(0)),
        (&[("/aaa/bbb/", "Prefix")], "/aaa/bbb", Some(0)),
        (&[("/aaa/bbb", "Prefix")], "/aaa/bbb/", Some(0)),
        (&[("/aaa/bbb", "Prefix")], "/aaa/bbb/ccc", Some(0)),
        (&[("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", None),
        (&[("/", "Prefix"), ("/aaa", "Prefix")], "/aaa/ccc", Some(1)),
        (&[("/aaa", "Prefix"), ("/", "Prefix")], "/aaa/ccc", Some(0)),
        (&[("/", "Prefix"), ("/aaa", "Prefix")], "/ccc", Some(0)),
        (&[("/aaa", "Prefix")], "/ccc", None),
        (&[("/foo", "Prefix"), ("/foo", "Exact")], "/foo", Some(1)),
        (
            &[("/foo/bar", "Exact"), ("/foo", "Prefix")],
            "/foo/bar",
            Some(0),
        ),
        (&[("/foo", "Prefix")], "/FOO", None),
        (&[("/Foo", "Exact")], "/foo", None),
        (&[("/foo", "ImplementationSpecific")], "/foo/x", Some(0)),
    ];
    for (paths, request, want) in cases {
        let mut snap = base();
        let ps: Vec<Json> = paths.iter().map(|(p, ty)| path(p, ty, "web")).collect();
        snap.ingresses = vec![ingress(
            "ns",
            "ing",
            0,
            json!({}),
            json!({"rules": [rule(Some("a.test"), Json::Array(ps))]}),
        )];
        let t = translate(&snap);
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        let got = served_by(&table(&t), "a.test", request);
        let want = want.map(|i| format!("ns/ing/rules[0].paths[{i}]"));
        assert_eq!(got, want, "paths {paths:?}, request {request}");
    }
}

#[test]
fn regex_paths_with_the_annotation() {
    let mut snap = base();
    snap.ingresses = vec![ingress(
        "ns",
        "ing",
        0,
        json!({"portcullis.dev/path_regex": "true"}),
        json!({"rules": [rule(Some("a.test"), json!([path("/api/v[0-9]+/.*", "ImplementationSpecific", "web")]))]}),
    )];
    let t = translate(&snap);
    let tb = table(&t);
    assert!(served_by(&tb, "a.test", "/api/v2/x").is_some());
    assert!(served_by(&tb, "a.test", "/api/vx/x").is_none());
    assert!(
        served_by(&tb, "a.test", "/x/api/v2/x").is_none(),
        "anchored"
    );
}

#[test]
fn hosts_wildcards_hostless_rules_and_default_backend() {
    let mut snap = base();
    snap.ingresses = vec![ingress(
        "ns",
        "ing",
        0,
        json!({}),
        json!({
            "defaultBackend": backend("web", 80),
            "rules": [
                rule(Some("a.test"), json!([path("/a", "Prefix", "web")])),
                rule(Some("*.w.test"), json!([path("/w", "Prefix", "web")])),
                rule(None, json!([path("/any", "Prefix", "web")])),
            ]
        }),
    )];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let tb = table(&t);
    let cases = [
        ("a.test", "/a/1", "ns/ing/rules[0].paths[0]"),
        ("A.test", "/a", "ns/ing/defaultBackend"), // hosts arrive lower-cased from the proxy
        ("x.w.test", "/w", "ns/ing/rules[1].paths[0]"),
        ("x.y.w.test", "/w", "ns/ing/defaultBackend"), // one label only
        ("w.test", "/w", "ns/ing/defaultBackend"),
        ("other.test", "/any/x", "ns/ing/rules[2].paths[0]"),
        ("a.test", "/any", "ns/ing/rules[2].paths[0]"),
        ("a.test", "/nothing", "ns/ing/defaultBackend"),
        ("other.test", "/", "ns/ing/defaultBackend"),
    ];
    for (host, p, want) in cases {
        assert_eq!(served_by(&tb, host, p).as_deref(), Some(want), "{host}{p}");
    }
}

#[test]
fn class_selection() {
    let default_class: Arc<IngressClass> = from(json!({
        "metadata": {"name": "portcullis", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": "portcullis.dev/ingress-controller"}
    }));
    // Another installation's class: same controller, another name. Never ours.
    let other_install: Arc<IngressClass> = from(json!({
        "metadata": {"name": "pc", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": "portcullis.dev/ingress-controller"}
    }));
    let other_default: Arc<IngressClass> = from(json!({
        "metadata": {"name": "nginx", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": "k8s.io/ingress-nginx"}
    }));
    let opts = Options::default();
    let with = |class: Option<&str>, ann: Option<&str>| {
        let mut ing = ingress("ns", "i", 0, json!({}), json!({}));
        let ing_mut = Arc::make_mut(&mut ing);
        if let Some(spec) = ing_mut.spec.as_mut() {
            spec.ingress_class_name = class.map(String::from);
        }
        if let Some(a) = ann {
            ing_mut.metadata.annotations =
                Some([(CLASS_ANNOTATION.to_string(), a.to_string())].into());
        }
        ing
    };
    let cases: Vec<(Arc<Ingress>, Vec<Arc<IngressClass>>, bool)> = vec![
        (with(Some("portcullis"), None), vec![], true),
        (with(Some("pc"), None), vec![other_install.clone()], false),
        (
            with(Some("nginx"), None),
            vec![default_class.clone()],
            false,
        ),
        (with(None, Some("portcullis")), vec![], true),
        (
            with(None, Some("nginx")),
            vec![default_class.clone()],
            false,
        ),
        (with(None, None), vec![], false),
        (with(None, None), vec![default_class.clone()], true),
        (with(None, None), vec![other_default], false),
        (with(None, None), vec![other_install], false),
    ];
    for (i, (ing, classes, want)) in cases.into_iter().enumerate() {
        assert_eq!(is_ours(&ing, &classes, &opts), want, "case {i}");
    }
}

#[test]
fn annotations_are_route_options_under_both_prefixes() {
    let mut snap = base();
    snap.ingresses = vec![ingress(
        "ns",
        "ing",
        0,
        json!({
            "portcullis.dev/timeout": "5s",
            "ingress.pomerium.io/set_request_headers": "{X-A: b}",
            "portcullis.dev/allow_websockets": "true",
            "ingress.pomerium.io/allowed_domains": "[example.com]",
            "portcullis.dev/regex_rewrite_pattern": "^/old/(.*)",
            "portcullis.dev/regex_rewrite_substitution": "/new/$1",
            "unrelated.io/whatever": "x",
            "ingress.pomerium.io/name": "Wiki",
            "ingress.pomerium.io/description": "The team's notes",
            "portcullis.dev/logo_url": "https://cdn.test/wiki.png",
        }),
        json!({"rules": [rule(Some("a.test"), json!([path("/", "Prefix", "web")]))]}),
    )];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let r = &t.routes[0];
    assert_eq!(r.options.timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(r.options.set_request_headers["x-a"], "b");
    assert!(r.options.allow_websockets);
    assert!(r.options.regex_rewrite.is_some());
    assert!(r.policy.has_allow(), "allowed_domains becomes an allow");
    assert_eq!(r.to[0].url.as_str(), "http://10.0.0.1:8080/");
    // Cosmetic, for the routes portal; the route keeps its stable name.
    assert_eq!(r.options.display_name.as_deref(), Some("Wiki"));
    assert_eq!(r.options.description.as_deref(), Some("The team's notes"));
    assert_eq!(
        r.options.logo_url.as_ref().map(|u| u.as_str()),
        Some("https://cdn.test/wiki.png")
    );
    assert_eq!(r.name, "ns/ing/rules[0].paths[0]");
    assert_eq!(r.origin, "Ingress ns/ing");
}

#[test]
fn unknown_or_invalid_annotations_reject_only_that_ingress() {
    let cases: &[(Json, &str, &str)] = &[
        (
            json!({"portcullis.dev/timeuot": "5s"}),
            "UnknownAnnotation",
            "did you mean \"timeout\"",
        ),
        (
            json!({"ingress.pomerium.io/bogus": "1"}),
            "UnknownAnnotation",
            "ingress.pomerium.io/bogus",
        ),
        (
            json!({"portcullis.dev/timeout": "soon"}),
            "InvalidAnnotation",
            "portcullis.dev/timeout",
        ),
        (
            json!({"ingress.pomerium.io/logo_url": "javascript:alert(1)"}),
            "InvalidAnnotation",
            "ingress.pomerium.io/logo_url",
        ),
        (
            json!({"portcullis.dev/to": "http://x"}),
            "InvalidAnnotation",
            "set by the Ingress",
        ),
        (
            json!({"portcullis.dev/policy": "allow: {or: [{emial: {is: a}}]}"}),
            "InvalidAnnotation",
            "emial",
        ),
        (
            json!({"portcullis.dev/regex_rewrite_pattern": "x"}),
            "InvalidAnnotation",
            "needs regex_rewrite_substitution",
        ),
        (
            json!({"ingress.pomerium.io/identity_provider_secret": "idp"}),
            "UnsupportedAnnotation",
            "ingress.pomerium.io/identity_provider_secret: Pomerium's identity_provider_secret is not supported",
        ),
        (
            json!({"ingress.pomerium.io/bearer_token_format": "jwt"}),
            "InvalidAnnotation",
            "\"jwt\" is not one of default, idp_access_token, idp_identity_token",
        ),
        (
            // A file on the controller's disk is never read because an Ingress says so.
            json!({"ingress.pomerium.io/tls_custom_ca_file": "/etc/shadow"}),
            "UnknownAnnotation",
            "tls_custom_ca_file",
        ),
    ];
    for (annotations, reason, fragment) in cases {
        let mut snap = base();
        snap.ingresses = vec![
            ingress(
                "ns",
                "bad",
                0,
                annotations.clone(),
                json!({"rules": [rule(Some("bad.test"), json!([path("/", "Prefix", "web")]))]}),
            ),
            ingress(
                "ns",
                "good",
                1,
                json!({}),
                json!({"rules": [rule(Some("good.test"), json!([path("/", "Prefix", "web")]))]}),
            ),
        ];
        let t = translate(&snap);
        assert_eq!(reasons(&t), vec![*reason], "{annotations}");
        let d = &t.diagnostics[0];
        assert_eq!(d.object.name, "bad");
        assert!(d.message.contains(fragment), "{}", d.message);
        assert_eq!(t.routes.len(), 1);
        assert_eq!(t.routes[0].name, "ns/good/rules[0].paths[0]");
        assert_eq!(t.owned.len(), 2);
    }
}

fn policy_object(ns: &str, name: &str, spec: Json) -> Arc<PolicyObject> {
    from(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Policy",
        "metadata": {"namespace": ns, "name": name, "generation": 3},
        "spec": spec,
    }))
}

#[test]
fn policies_inline_named_and_legacy_combine() {
    use crate::ppl::{Decision, Identity, Request};
    let mut snap = base();
    snap.policies = vec![
        policy_object(
            "ns",
            "alice",
            json!({"allow": {"or": [{"email": {"is": "alice@x.test"}}]}}),
        ),
        policy_object(
            "ns",
            "broken",
            json!({"allow": {"or": [{"emial": {"is": "a"}}]}}),
        ),
        policy_object(
            "other",
            "bob",
            json!({"allow": {"or": [{"email": {"is": "bob@x.test"}}]}}),
        ),
    ];
    let ing = |name: &str, ann: Json| {
        ingress(
            "ns",
            name,
            0,
            ann,
            json!({"rules": [rule(Some(&format!("{name}.test")), json!([path("/", "Prefix", "web")]))]}),
        )
    };
    snap.ingresses = vec![
        ing("named", json!({"portcullis.dev/policies": "alice"})),
        ing(
            "both",
            json!({
                "portcullis.dev/policies": " alice ,",
                "portcullis.dev/policy": "allow: {or: [{email: {is: carol@x.test}}]}",
                "ingress.pomerium.io/allowed_users": "[dave@x.test]",
            }),
        ),
        ing("missing", json!({"portcullis.dev/policies": "bob"})),
        ing(
            "invalid",
            json!({"portcullis.dev/policies": "alice,broken"}),
        ),
        ing(
            "public",
            json!({"portcullis.dev/allow_public_unauthenticated_access": "true"}),
        ),
        ing("none", json!({})),
    ];
    let t = translate(&snap);
    let mut rs = reasons(&t);
    rs.sort();
    assert_eq!(rs, vec!["PolicyInvalid", "PolicyNotFound"]);
    let decide = |route: &str, email: Option<&str>| {
        let r = t
            .routes
            .iter()
            .find(|r| r.name.starts_with(&format!("ns/{route}/")))
            .unwrap();
        let identity = email.map(|e| Identity {
            user: e.to_string(),
            email: e.to_string(),
            claims: crate::ppl::Claims::new(),
            groups: Vec::new(),
        });
        let req = Request {
            session: identity.as_ref(),
            ..Request::new(chrono::Utc::now())
        };
        r.policy.evaluate(&req).decision
    };
    assert_eq!(decide("named", Some("alice@x.test")), Decision::Allow);
    assert_eq!(decide("named", Some("eve@x.test")), Decision::Deny);
    for who in ["alice@x.test", "carol@x.test", "dave@x.test"] {
        assert_eq!(decide("both", Some(who)), Decision::Allow, "{who}");
    }
    assert_eq!(decide("both", Some("eve@x.test")), Decision::Deny);
    assert_eq!(decide("public", None), Decision::Allow);
    assert_eq!(
        decide("none", Some("alice@x.test")),
        Decision::Deny,
        "no policy denies"
    );

    let broken = t
        .policies
        .iter()
        .find(|p| p.object.name == "broken")
        .unwrap();
    let err = broken.error.as_deref().unwrap();
    assert!(err.contains("spec.allow.or[0].emial"), "{err}");
    assert!(err.contains("line "), "{err}");
    assert_eq!(broken.generation, Some(3));
    assert!(
        t.policies
            .iter()
            .find(|p| p.object.name == "alice")
            .unwrap()
            .error
            .is_none()
    );
}

#[test]
#[allow(clippy::field_reassign_with_default)]
fn backends_from_endpoint_slices() {
    let mut snap = Snapshot::default();
    snap.services = vec![
        service(
            "ns",
            "named",
            json!([{"name": "web", "port": 80, "targetPort": "http"}]),
        ),
        service("ns", "numbered", json!([{"port": 81, "targetPort": 9000}])),
        service("ns", "empty", json!([{"port": 82}])),
        from(json!({"metadata": {"namespace": "ns", "name": "ext"},
                    "spec": {"type": "ExternalName", "externalName": "api.example.com",
                             "ports": [{"name": "https", "port": 443}]}})),
    ];
    snap.slices = vec![
        slice(
            "ns",
            "named",
            json!([{"name": "web", "port": 8080}]),
            json!([
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
            ]),
        ),
        slice(
            "ns",
            "named",
            json!([{"name": "web", "port": 8080}]),
            json!([
                {"addresses": ["fd00::1"], "conditions": {"ready": true}},
            ]),
        ),
        slice(
            "ns",
            "numbered",
            json!([{"port": 9000}]),
            json!([{"addresses": ["10.0.1.1"]}]),
        ),
        slice(
            "other",
            "numbered",
            json!([{"port": 9000}]),
            json!([{"addresses": ["10.9.9.9"]}]),
        ),
    ];
    let p = |svc: &str, port: Json| {
        json!({"path": format!("/{svc}/{port}"), "pathType": "Prefix",
        "backend": {"service": {"name": svc, "port": port}}})
    };
    snap.ingresses = vec![ingress(
        "ns",
        "ing",
        0,
        json!({}),
        json!({"rules": [rule(Some("a.test"), json!([
            p("named", json!({"name": "web"})),
            p("numbered", json!({"number": 81})),
            p("empty", json!({"number": 82})),
            p("ext", json!({"name": "https"})),
            p("missing", json!({"number": 80})),
            p("named", json!({"number": 9999})),
        ]))]}),
    )];
    let t = translate(&snap);
    let to = |i: usize| -> Vec<String> {
        t.routes
            .iter()
            .find(|r| r.name == format!("ns/ing/rules[0].paths[{i}]"))
            .map(|r| r.to.iter().map(|u| u.url.to_string()).collect())
            .unwrap_or_else(|| vec!["<no route>".into()])
    };
    assert_eq!(
        to(0),
        vec![
            "http://10.0.0.1:8080/",
            "http://10.0.0.2:8080/",
            "http://[fd00::1]:8080/"
        ]
    );
    assert_eq!(to(1), vec!["http://10.0.1.1:9000/"]);
    assert!(
        to(2).is_empty(),
        "no endpoints: a route with no upstream (503)"
    );
    assert_eq!(to(3), vec!["http://api.example.com:443/"]);
    assert_eq!(to(4), vec!["<no route>"]);
    assert_eq!(to(5), vec!["<no route>"]);
    assert_eq!(reasons(&t), vec!["ServiceNotFound", "PortNotFound"]);
}

#[test]
fn conflicts_older_wins() {
    let mut snap = base();
    let spec = json!({"rules": [rule(Some("a.test"), json!([path("/x", "Prefix", "web"), path("/y", "Exact", "web")]))]});
    let newer_spec = json!({"rules": [rule(Some("a.test"), json!([path("/x/", "Prefix", "web"), path("/z", "Exact", "web")]))]});
    snap.ingresses = vec![
        ingress("ns", "newer", 30, json!({}), newer_spec),
        ingress("ns", "older", 10, json!({}), spec),
    ];
    let t = translate(&snap);
    assert_eq!(reasons(&t), vec!["Conflict"]);
    assert_eq!(t.diagnostics[0].object.name, "newer");
    assert!(
        t.diagnostics[0].message.contains("ns/older"),
        "{}",
        t.diagnostics[0].message
    );
    let tb = table(&t);
    assert_eq!(
        served_by(&tb, "a.test", "/x").as_deref(),
        Some("ns/older/rules[0].paths[0]")
    );
    assert_eq!(
        served_by(&tb, "a.test", "/z").as_deref(),
        Some("ns/newer/rules[0].paths[1]")
    );
}

#[test]
fn tls_from_secrets() {
    let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let b64 = |s: String| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let secret = |name: &str, ty: &str, key: String| -> Arc<Secret> {
        from(
            json!({"metadata": {"namespace": "ns", "name": name}, "type": ty,
            "data": {"tls.crt": b64(ck.cert.pem()), "tls.key": b64(key)}}),
        )
    };
    let mut snap = base();
    snap.secrets = vec![
        secret("good", "kubernetes.io/tls", ck.signing_key.serialize_pem()),
        secret("opaque", "Opaque", ck.signing_key.serialize_pem()),
        secret("badkey", "kubernetes.io/tls", "nonsense".into()),
    ];
    snap.ingresses = vec![ingress(
        "ns",
        "ing",
        0,
        json!({}),
        json!({
            "tls": [{"hosts": ["a.test"], "secretName": "good"}, {"secretName": "opaque"},
                    {"secretName": "badkey"}, {"secretName": "absent"}],
            "rules": [rule(Some("a.test"), json!([path("/", "Prefix", "web")])),
                      rule(Some("b.test"), json!([path("/", "Prefix", "web")]))]
        }),
    )];
    let t = translate(&snap);
    assert_eq!(t.certs.len(), 1);
    assert_eq!(t.certs[0].origin, "ns/good");
    assert_eq!(
        reasons(&t),
        vec!["SecretInvalid", "SecretInvalid", "SecretNotFound"]
    );
    assert_eq!(
        t.routes.len(),
        2,
        "routes are served with the default certificate meanwhile"
    );
    assert_eq!(t.routes[0].scheme, "https");
    assert_eq!(t.routes[1].scheme, "http");
}

#[test]
fn ingresses_of_other_classes_are_ignored() {
    let mut snap = base();
    snap.ingresses = vec![ingress(
        "ns",
        "nginx",
        0,
        json!({"portcullis.dev/bogus": "x"}),
        json!({"ingressClassName": "nginx", "rules": [rule(Some("a.test"), json!([path("/", "Prefix", "web")]))]}),
    )];
    let t = translate(&snap);
    assert!(t.routes.is_empty() && t.diagnostics.is_empty() && t.owned.is_empty());
}

#[test]
fn policy_errors_name_the_field_and_its_position() {
    let spec: crate::controller::crd::PolicySpec = from(json!({
        "allow": {"or": [{"email": {"is": "a@b.test"}}, {"emial": {"is": "a"}}]},
        "deny": {"and": [{"source_ip": "not-an-ip"}]},
    }));
    let err = compile_policy_spec(&spec).unwrap_err();
    assert!(err.contains("spec.allow.or[1].emial (line "), "{err}");
    assert!(err.contains("spec.deny.and[0].source_ip"), "{err}");
}

#[test]
fn pomerium_annotations_without_effect_are_served_with_a_notice() {
    let mut snap = base();
    snap.ingresses = vec![ingress(
        "ns",
        "app",
        0,
        json!({
            "ingress.pomerium.io/name": "The app",
            "ingress.pomerium.io/description": "What it does",
            "ingress.pomerium.io/logo_url": "https://example.com/logo.svg",
            "ingress.pomerium.io/load_balancing_policy": "LEAST_REQUEST",
            "ingress.pomerium.io/depends_on": "[\"auth.example.com\"]",
            "ingress.pomerium.io/tls_upstream_server_name": "app.internal",
            "ingress.pomerium.io/allow_public_unauthenticated_access": "true",
        }),
        json!({"rules": [rule(Some("app.test"), json!([path("/", "Prefix", "web")]))]}),
    )];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    assert_eq!(t.routes.len(), 1, "served");
    assert_eq!(
        t.routes[0].options.tls_server_name.as_deref(),
        Some("app.internal")
    );
    assert_eq!(t.notices.len(), 1, "one notice per Ingress");
    let message = &t.notices[0].message;
    let mut noticed: Vec<&str> = message
        .match_indices("ingress.pomerium.io/")
        .filter_map(|(at, _)| message[at..].split(':').next())
        .collect();
    noticed.sort();
    assert_eq!(noticed, vec!["ingress.pomerium.io/depends_on"]);
    let o = &t.routes[0].options;
    assert_eq!(
        o.load_balancing_policy,
        crate::config::balancing::LbPolicy::LeastRequest,
        "load_balancing_policy is an option now, not a notice"
    );
    assert_eq!(o.display_name.as_deref(), Some("The app"));
    assert_eq!(o.description.as_deref(), Some("What it does"));
}

#[test]
fn secrets_named_by_annotations_become_headers_and_trust() {
    let ck = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    let mut snap = base();
    snap.secrets = vec![
        secret("ns", "req", "Opaque", json!({"X-Api-Key": b64("k-123")})),
        secret(
            "ns",
            "resp",
            "Opaque",
            json!({"Strict-Transport-Security": b64("max-age=60")}),
        ),
        secret("ns", "ca", "Opaque", json!({"ca.crt": b64(&ck.cert.pem())})),
        secret(
            "other",
            "req2",
            "Opaque",
            json!({"X-Api-Key": b64("elsewhere")}),
        ),
        secret("ns", "badname", "Opaque", json!({"bad header": b64("v")})),
        secret("ns", "tls", "kubernetes.io/tls", json!({"X-A": b64("v")})),
        secret(
            "ns",
            "client",
            "kubernetes.io/tls",
            json!({"tls.crt": b64(&ck.cert.pem()), "tls.key": b64(&ck.signing_key.serialize_pem())}),
        ),
    ];
    let p = "ingress.pomerium.io";
    snap.ingresses = vec![
        annotated(
            "good",
            json!({
                format!("{p}/set_request_headers_secret"): "req",
                format!("{p}/set_response_headers_secret"): "resp",
                format!("{p}/tls_custom_ca_secret"): "ca",
                format!("{p}/tls_client_secret"): "client",
            }),
        ),
        annotated(
            "opaqueclient",
            json!({format!("{p}/tls_client_secret"): "ca"}),
        ),
        // A Secret of another namespace is never read.
        annotated(
            "crossns",
            json!({format!("{p}/set_request_headers_secret"): "req2"}),
        ),
        annotated(
            "badname",
            json!({format!("{p}/set_request_headers_secret"): "badname"}),
        ),
        annotated(
            "wrongtype",
            json!({format!("{p}/set_request_headers_secret"): "tls"}),
        ),
        annotated("noca", json!({format!("{p}/tls_custom_ca_secret"): "req"})),
    ];
    let t = translate(&snap);
    assert_eq!(t.routes.len(), 1, "only the good Ingress is served");
    let o = &t.routes[0].options;
    assert_eq!(o.secret_request_headers["x-api-key"].as_str(), "k-123");
    assert_eq!(
        o.secret_response_headers["strict-transport-security"].as_str(),
        "max-age=60"
    );
    assert_eq!(o.tls_custom_ca.as_ref().map(Vec::len), Some(1));
    assert_eq!(o.tls_client_cert.as_ref().map(|c| c.chain.len()), Some(1));
    assert!(
        !format!("{:?}", t.routes[0]).contains("k-123"),
        "Secret values never print"
    );
    assert_eq!(
        reasons_by_object(&t),
        [
            ("badname", "SecretInvalid"),
            ("crossns", "SecretNotFound"),
            ("noca", "SecretInvalid"),
            ("opaqueclient", "SecretInvalid"),
            ("wrongtype", "SecretInvalid"),
        ]
    );
    for d in &t.diagnostics {
        assert!(
            !d.message.contains("k-123") && !d.message.contains("elsewhere"),
            "{}",
            d.message
        );
        assert!(
            d.message.ends_with("the Ingress is not served"),
            "{}",
            d.message
        );
    }
}

#[test]
fn a_service_account_token_secret_and_bearer_annotations_configure_the_route() {
    let mut snap = base();
    snap.secrets = vec![
        secret(
            "ns",
            "sa",
            "kubernetes.io/service-account-token",
            json!({"token": b64("eyJhbGciOi.sa.token\n"), "ca.crt": b64("x")}),
        ),
        secret(
            "ns",
            "opaque",
            "Opaque",
            json!({"token": b64("opaque-token")}),
        ),
        secret("ns", "notoken", "Opaque", json!({"other": b64("x")})),
        secret("ns", "tls", "kubernetes.io/tls", json!({"token": b64("x")})),
    ];
    let p = "ingress.pomerium.io";
    snap.ingresses = vec![annotated(
        "good",
        json!({
            format!("{p}/kubernetes_service_account_token_secret"): "sa",
            format!("{p}/bearer_token_format"): "idp_access_token",
            format!("{p}/idp_access_token_allowed_audiences"): "[https://api.test, other]",
        }),
    )];
    let sa = "kubernetes_service_account_token";
    for (name, option, value) in [
        ("opaque", format!("{sa}_secret"), "opaque"),
        ("notoken", format!("{sa}_secret"), "notoken"),
        ("wrongtype", format!("{sa}_secret"), "tls"),
        // The token itself is not an annotation (Pomerium's neither): only its Secret is.
        ("inline", sa.to_string(), "t"),
    ] {
        snap.ingresses
            .push(annotated(name, json!({format!("{p}/{option}"): value})));
    }
    let t = translate(&snap);
    let names: Vec<&str> = t.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let good = &t.routes[0].options;
    assert_eq!(
        good.kubernetes_service_account_token
            .as_ref()
            .map(crate::config::Secret::as_str),
        Some("eyJhbGciOi.sa.token")
    );
    assert_eq!(
        good.bearer_token_format,
        Some(crate::config::BearerFormat::IdpAccessToken)
    );
    assert_eq!(
        good.idp_access_token_allowed_audiences.as_deref(),
        Some(&["https://api.test".to_string(), "other".to_string()][..])
    );
    assert_eq!(
        t.routes[1]
            .options
            .kubernetes_service_account_token
            .as_ref()
            .map(crate::config::Secret::as_str),
        Some("opaque-token")
    );
    assert!(!format!("{:?}", t.routes).contains("sa.token"));
    assert_eq!(
        reasons_by_object(&t),
        [
            ("inline", "UnknownAnnotation"),
            ("notoken", "SecretInvalid"),
            ("wrongtype", "SecretInvalid"),
        ]
    );
}

#[test]
fn secure_upstream_verifies_the_service_dns_name() {
    let mut snap = base();
    let spec = || json!({"rules": [rule(Some("s.test"), json!([path("/", "Prefix", "web")]))]});
    snap.ingresses = vec![
        ingress(
            "ns",
            "secure",
            0,
            json!({"ingress.pomerium.io/secure_upstream": "true"}),
            spec(),
        ),
        ingress(
            "ns",
            "named",
            1,
            json!({"ingress.pomerium.io/secure_upstream": "true",
                   "ingress.pomerium.io/tls_server_name": "web.example.com",
                   "ingress.pomerium.io/allow_public_unauthenticated_access": "true"}),
            json!({"rules": [rule(Some("n.test"), json!([path("/", "Prefix", "web")]))]}),
        ),
    ];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let by_host = |h: &str| route_on_host(&t, h);
    let r = by_host("s.test");
    assert_eq!(r.to[0].url.scheme(), "https");
    assert_eq!(
        r.options.tls_server_name.as_deref(),
        Some("web.ns.svc.cluster.local")
    );
    assert_eq!(
        by_host("n.test").options.tls_server_name.as_deref(),
        Some("web.example.com")
    );
}

#[test]
fn h2c_service_ports_become_h2c_upstreams() {
    let mut snap = base();
    let svc: Arc<Service> = from(json!({
        "metadata": {"namespace": "ns", "name": "grpc"},
        "spec": {"ports": [{"name": "grpc", "port": 80, "targetPort": 50051, "appProtocol": "kubernetes.io/h2c"}]}
    }));
    let slice: Arc<EndpointSlice> = from(json!({
        "metadata": {"namespace": "ns", "name": "grpc-1", "labels": {"kubernetes.io/service-name": "grpc"}},
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": 50051}],
        "endpoints": [{"addresses": ["10.0.0.9"]}]
    }));
    snap.services.push(svc);
    snap.slices.push(slice);
    snap.ingresses = vec![ingress(
        "ns",
        "g",
        0,
        json!({}),
        json!({"rules": [rule(Some("g.test"), json!([path("/", "Prefix", "grpc")]))]}),
    )];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let up = &t.routes[0].to[0];
    assert!(up.h2c(), "{}", up.url);
    assert_eq!((up.host(), up.port()), ("10.0.0.9", 50051));
}

#[test]
fn service_proxy_upstream_sends_to_the_cluster_ip() {
    let mut snap = base();
    Arc::make_mut(&mut snap.services[0])
        .spec
        .as_mut()
        .unwrap()
        .cluster_ip = Some("10.96.0.7".into());
    snap.services.push(from(json!({
        "metadata": {"namespace": "ns", "name": "headless"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
    })));
    let proxied = json!({"ingress.pomerium.io/service_proxy_upstream": "true",
                         "ingress.pomerium.io/secure_upstream": "true"});
    snap.ingresses = vec![
        ingress(
            "ns",
            "svc",
            0,
            proxied.clone(),
            json!({"rules": [rule(Some("s.test"), json!([path("/", "Prefix", "web")]))]}),
        ),
        ingress(
            "ns",
            "hl",
            1,
            proxied,
            json!({"rules": [rule(Some("h.test"), json!([path("/", "Prefix", "headless")]))]}),
        ),
    ];
    let t = translate(&snap);
    let r = &t.routes[0];
    // The Service port (80), not the endpoint's target port (8080), at the cluster IP; TLS
    // still verifies the Service's DNS name.
    assert_eq!(r.to.len(), 1);
    assert_eq!(r.to[0].url.as_str(), "https://10.96.0.7:80/");
    assert_eq!(
        r.options.tls_server_name.as_deref(),
        Some("web.ns.svc.cluster.local")
    );
    assert_eq!(
        t.routes.len(),
        1,
        "the headless Service's path is not served"
    );
    assert_eq!(reasons(&t), vec!["UnsupportedBackend"]);
    assert!(
        t.diagnostics[0].message.contains("headless"),
        "{:?}",
        t.diagnostics
    );
}

/// The index a pass looks objects up in finds what a scan would: the object of that namespace
/// and name (the first, were two named alike), and a Service's EndpointSlices by their label.
#[test]
fn the_index_finds_objects_by_namespace_and_name_as_a_scan_would() {
    let svc = |ns: &str, name: &str, port: i32| -> Arc<Service> {
        from(json!({"metadata": {"namespace": ns, "name": name},
                    "spec": {"ports": [{"port": port}]}}))
    };
    let slice = |ns: &str, name: &str, service: &str| -> Arc<EndpointSlice> {
        from(json!({"metadata": {"namespace": ns, "name": name,
                                 "labels": {"kubernetes.io/service-name": service}},
                    "addressType": "IPv4", "endpoints": []}))
    };
    let snap = Snapshot {
        services: vec![svc("a", "web", 1), svc("b", "web", 2), svc("a", "web", 3)],
        slices: vec![
            slice("a", "web-1", "web"),
            slice("b", "web-1", "web"),
            slice("a", "web-2", "web"),
            slice("a", "db-1", "db"),
        ],
        ..Default::default()
    };
    let index = Index::new(&snap);
    let port = |s: Option<&Service>| {
        s.and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first().map(|p| p.port))
    };
    assert_eq!(port(index.service("a", "web")), Some(1));
    assert_eq!(port(index.service("b", "web")), Some(2));
    assert!(index.service("c", "web").is_none());
    let names = |ns: &str, service: &str| -> Vec<String> {
        index
            .slices(ns, service)
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect()
    };
    assert_eq!(names("a", "web"), ["web-1", "web-2"]);
    assert_eq!(names("b", "web"), ["web-1"]);
    assert!(names("b", "db").is_empty());
}

/// Services and EndpointSlices as the API server hands them out (with what a cluster adds:
/// selectors, cluster IPs, status, target references, zones), translated as they are and
/// trimmed as the reflectors store them: the same routes and diagnostics.
#[test]
fn trimmed_services_and_slices_translate_as_the_whole_objects_do() {
    let meta = |name: &str, extra: Json| {
        let mut m = json!({"namespace": "ns", "name": name, "uid": "0b7e4c52-2f1e-4b8e-9d51-3a9d1c2f6e10",
            "resourceVersion": "48213", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": name, "team": "payments"},
            "annotations": {"meta.helm.sh/release-name": "shop"}});
        if let Json::Object(extra) = extra {
            for (k, v) in extra {
                m[k] = v;
            }
        }
        m
    };
    let services: Vec<Arc<Service>> = vec![
        from(json!({"metadata": meta("web", json!({})),
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                          {"name": "grpc", "port": 81, "targetPort": 9000, "protocol": "TCP",
                           "appProtocol": "kubernetes.io/h2c"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}})),
        from(json!({"metadata": meta("ext", json!({})),
            "spec": {"type": "ExternalName", "externalName": "api.example.com",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}})),
    ];
    let endpoint = |ip: &str, ready: bool| {
        json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false},
            "nodeName": "node-a", "zone": "eu-west-1a", "hostname": "web-0",
            "hints": {"forZones": [{"name": "eu-west-1a"}]},
            "targetRef": {"kind": "Pod", "namespace": "ns", "name": "web-0", "uid": "5f0c0d2e-1111-4a4a-9b9b-2c2c2c2c2c2c"}})
    };
    let slices: Vec<Arc<EndpointSlice>> = vec![from(json!({
        "metadata": meta("web-x7k2p", json!({
            "generateName": "web-",
            "labels": {"kubernetes.io/service-name": "web",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                       "app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                 "uid": "0b7e4c52-2f1e-4b8e-9d51-3a9d1c2f6e10"}]})),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "grpc", "port": 9000, "protocol": "TCP", "appProtocol": "grpc"}],
        "endpoints": [endpoint("10.0.0.1", true), endpoint("10.0.0.2", false), endpoint("10.0.0.3", true)],
    }))];
    let p = |svc: &str, port: Json| {
        json!({"path": format!("/{svc}/{}", port.to_string().replace('"', "")), "pathType": "Prefix",
               "backend": {"service": {"name": svc, "port": port}}})
    };
    let ingresses = vec![
        ingress(
            "ns",
            "ing",
            0,
            json!({}),
            json!({"rules": [rule(Some("a.test"), json!([
                p("web", json!({"name": "http"})),
                p("web", json!({"number": 81})),
                p("ext", json!({"name": "https"})),
                p("web", json!({"number": 9999})),
            ]))]}),
        ),
        ingress(
            "ns",
            "proxied",
            0,
            json!({"ingress.pomerium.io/service_proxy_upstream": "true"}),
            json!({"rules": [rule(Some("b.test"), json!([p("web", json!({"name": "http"}))]))]}),
        ),
    ];
    let whole = Snapshot {
        services: services.clone(),
        slices: slices.clone(),
        ingresses: ingresses.clone(),
        ..Snapshot::default()
    };
    fn trimmed<T: Clone>(objects: &[Arc<T>], trim: fn(&mut T)) -> Vec<Arc<T>> {
        objects
            .iter()
            .map(|o| {
                let mut o = (**o).clone();
                trim(&mut o);
                Arc::new(o)
            })
            .collect()
    }
    let trimmed = Snapshot {
        services: trimmed(&services, trim_service),
        slices: trimmed(&slices, trim_slice),
        ingresses,
        ..Snapshot::default()
    };
    let (a, b) = (translate(&whole), translate(&trimmed));
    assert_eq!(a.routes.len(), 4, "{:?}", reasons(&a));
    assert_eq!(format!("{:?}", a.routes), format!("{:?}", b.routes));
    assert_eq!(reasons(&a), reasons(&b));
    assert_eq!(reasons(&a), vec!["PortNotFound"]);
    // What the routes are: the ready endpoints by the slice's port, h2c for the port that says
    // so, the ExternalName, the cluster IP.
    let to: Vec<Vec<String>> = a
        .routes
        .iter()
        .map(|r| r.to.iter().map(|u| u.url.to_string()).collect())
        .collect();
    assert_eq!(
        to,
        vec![
            vec!["http://10.0.0.1:8080/", "http://10.0.0.3:8080/"],
            vec!["h2c://10.0.0.1:9000", "h2c://10.0.0.3:9000"],
            vec!["http://api.example.com:443/"],
            vec!["http://10.96.0.10/"],
        ]
    );
    // And the trimmed objects hold nothing else.
    let (svc, slice) = (&trimmed.services[0], &trimmed.slices[0]);
    assert!(svc.status.is_none() && svc.metadata.uid.is_none() && svc.metadata.labels.is_none());
    let spec = svc
        .spec
        .as_ref()
        .map(|s| (s.selector.is_none(), s.cluster_ips.is_none()));
    assert_eq!(spec, Some((true, true)));
    assert_eq!(
        slice
            .metadata
            .labels
            .as_ref()
            .map(|l| l.keys().map(String::as_str).collect::<Vec<_>>()),
        Some(vec![SERVICE_NAME_LABEL])
    );
    assert!(slice.metadata.owner_references.is_none());
    let endpoints = slice.endpoints.as_deref().unwrap_or_default();
    assert_eq!(endpoints.len(), 3);
    assert!(endpoints.iter().all(|e| e.target_ref.is_none()
        && e.node_name.is_none()
        && e.zone.is_none()
        && e.hints.is_none()
        && e.conditions.as_ref().is_some_and(|c| c.serving.is_none())));
}

#[test]
fn routes_without_options_share_one_copy_of_them() {
    let mut snap = base();
    snap.ingresses = vec![
        annotated("a", json!({})),
        annotated(
            "b",
            json!({"ingress.pomerium.io/allow_public_unauthenticated_access": "true"}),
        ),
        annotated(
            "c",
            json!({"ingress.pomerium.io/preserve_host_header": "true"}),
        ),
        annotated("d", json!({"ingress.pomerium.io/secure_upstream": "true"})),
    ];
    let t = translate(&snap);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let by_host = |h: &str| route_on_host(&t, h);
    let (a, b, c, d) = (
        by_host("a.test"),
        by_host("b.test"),
        by_host("c.test"),
        by_host("d.test"),
    );
    // A policy option is not a route option: `a` and `b` hold the same shared defaults.
    assert!(Arc::ptr_eq(&a.options, &b.options));
    assert_eq!(*a.options, RouteOptions::default());
    // An option of its own gives a route its own copy, and the shared one stays the default.
    assert!(!Arc::ptr_eq(&a.options, &c.options));
    assert!(c.options.preserve_host_header);
    // So does one set after the annotations are read (the upstream's verified name).
    assert!(!Arc::ptr_eq(&a.options, &d.options));
    assert_eq!(
        d.options.tls_server_name.as_deref(),
        Some("web.ns.svc.cluster.local")
    );
    assert_eq!(*a.options, RouteOptions::default());
    assert!(!a.options.preserve_host_header && a.options.tls_server_name.is_none());
}
