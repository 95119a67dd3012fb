//! The Gateway API against a real API server (tests/cluster) with the project's published
//! standard-channel CRDs installed (tests/cluster/gateway-api-crds): `portcullis controller`
//! runs as a process with exactly the Helm chart's RBAC, as in tests/controller.rs, and serves
//! Gateways of a GatewayClass naming `portcullis.dev/gateway-controller`. Upstreams listen on
//! this machine's non-loopback address (EndpointSlices may not name loopback).

mod support;

use std::time::{Duration, Instant};

use support::controller::{
    APISERVER, Cluster, Env, cluster, gateway_api, ingress_yaml, service_yaml, slice_yaml,
    tls_secret_yaml, upstream_of,
};
use support::idp::{Browser, Idp, idp_config, sign_in_yaml};
use support::{TestCa, Upstream, free_port, grpc_call, grpc_upstream_on};

/// Cluster-scoped or extra objects a test made, deleted when it ends (even on failure).
struct Cleanup {
    cluster: &'static Cluster,
    objects: Vec<Vec<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.objects {
            let mut all: Vec<&str> = vec!["delete", "--wait=false", "--ignore-not-found"];
            all.extend(args.iter().map(String::as_str));
            let _ = self.cluster.kubectl(&all);
        }
    }
}

/// The CRDs installed, a GatewayClass of ours with a unique name, and its cleanup.
fn class() -> (String, Cleanup) {
    let c = cluster();
    gateway_api(c);
    let name = format!("portcullis-{:08x}", rand::random::<u32>());
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {name}}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
"
        )),
    )
    .expect("GatewayClass");
    let cleanup = Cleanup {
        cluster: c,
        objects: vec![vec!["gatewayclass".into(), name.clone()]],
    };
    (name, cleanup)
}

/// Gateway `gw` of `class` with these listeners (YAML list items).
fn gateway_with(class: &str, listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: {class}
  listeners:
{listeners}"
    )
}

/// Gateway `gw`: listener `web` (HTTP, `*.gw.test`, routes from every namespace) and `admin`
/// (HTTP, `admin.gw.test`, routes from the Gateway's namespace).
fn gateway_yaml(class: &str) -> String {
    gateway_with(
        class,
        "  - {name: web, port: 80, protocol: HTTP, hostname: '*.gw.test', allowedRoutes: {namespaces: {from: All}}}
  - {name: admin, port: 8080, protocol: HTTP, hostname: admin.gw.test}
",
    )
}

const OPEN_POLICY: &str = "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: open}
spec: {allow: {or: [{accept: true}]}}
";

/// The ExtensionRef filter that attaches Policy `name` to a rule.
fn policy_filter(name: &str) -> String {
    format!(
        "{{type: ExtensionRef, extensionRef: {{group: portcullis.dev, kind: Policy, name: {name}}}}}"
    )
}

fn route_yaml(kind: &str, name: &str, host: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw, sectionName: web}}]
  hostnames: [{host}]
  rules:
{rules}"
    )
}

/// A Service `name` with one ready endpoint: `port` on the host address.
fn backend(env: &Env, name: &str, port: u16) {
    let ip = env.cluster.host_ip.clone();
    env.must_apply(&service_yaml(name));
    env.must_apply(&slice_yaml(name, port, &[(&ip, true)]));
}

/// An echo upstream tagged `name` behind a Service `name`.
async fn upstream(env: &Env, name: &str) -> Upstream {
    let up = Upstream::start_on(&env.cluster.host_ip, name).await;
    backend(env, name, up.addr.port());
    up
}

/// The test's controller with Policy `open` (everyone may pass) in its namespace.
fn with_open_policy(env: Env) -> Env {
    env.must_apply(OPEN_POLICY);
    env
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_two_listeners_serves_each_match_type_and_filter_and_reports_status() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gw", true, &[]).await);
    let (_a, _b) = (upstream(&env, "a").await, upstream(&env, "b").await);
    env.must_apply(&gateway_yaml(&class));
    let open = policy_filter("open");
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "paths",
        "paths.gw.test",
        &format!(
            "  - matches: [{{path: {{type: Exact, value: /exact}}}}]
    filters:
    - {open}
    - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Gw, value: exact}}], add: [{{name: X-Add, value: more}}], remove: [X-Drop]}}}}
    backendRefs: [{{name: a, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /prefix}}}}]
    filters:
    - {open}
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}}}}
    - {{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Resp, value: prefix}}], add: [{{name: X-Resp-Add, value: two}}], remove: [Content-Type]}}}}
    backendRefs: [{{name: b, port: 80}}]
  - matches: [{{path: {{type: RegularExpression, value: '/re/[0-9]+'}}}}]
    filters: [{open}]
    backendRefs: [{{name: a, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /redirect}}}}]
    filters:
    - {open}
    - {{type: RequestRedirect, requestRedirect: {{hostname: moved.gw.test, statusCode: 301}}}}
  - matches: [{{path: {{type: PathPrefix, value: /closed}}}}]
    backendRefs: [{{name: a, port: 80}}]
"
        ),
    ));
    let host = "paths.gw.test";
    env.until(host, "/exact", "the Exact match serves", |s, b| {
        s == 200 && upstream_of(b) == "a"
    })
    .await;
    let client = env.client(&[host]);
    let url = |path: &str| format!("http://{host}:{}{path}", env.port);
    let exact = client
        .get(url("/exact"))
        .header("x-drop", "1")
        .header("x-add", "one")
        .send()
        .await
        .expect("GET /exact");
    let echo = json(&exact.text().await.unwrap_or_default());
    assert_eq!(echo["headers"]["x-gw"], "exact", "{echo}");
    assert!(echo["headers"].get("x-drop").is_none(), "removed: {echo}");
    assert_eq!(echo["headers"]["x-add"], "one,more", "appended: {echo}");
    assert_eq!(env.get(host, "/exact/more").await.0, 404, "Exact is exact");

    let prefixed = client
        .get(url("/prefix/x"))
        .send()
        .await
        .expect("GET /prefix/x");
    assert_eq!(prefixed.headers()["x-resp"], "prefix");
    assert_eq!(prefixed.headers()["x-resp-add"], "two");
    assert!(
        prefixed.headers().get("content-type").is_none(),
        "removed from the response"
    );
    let echo = json(&prefixed.text().await.unwrap_or_default());
    assert_eq!(
        (echo["upstream"].as_str(), echo["path"].as_str()),
        (Some("b"), Some("/rewritten/x")),
        "{echo}"
    );
    assert_eq!(
        env.get(host, "/prefixed").await.0,
        404,
        "PathPrefix is by path element"
    );

    let (status, body) = env.get(host, "/re/42").await;
    assert_eq!((status, upstream_of(&body).as_str()), (200, "a"));
    assert_eq!(env.get(host, "/re/abc").await.0, 404);

    let moved = client
        .get(url("/redirect/p?q=1"))
        .send()
        .await
        .expect("GET /redirect");
    assert_eq!(moved.status(), 301);
    let location = moved.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with("http://moved.gw.test") && location.ends_with("/redirect/p?q=1"),
        "{location}"
    );
    // A rule without a Policy denies, as an Ingress without one does.
    assert_eq!(env.get(host, "/closed").await.0, 403);

    // Status as the specification's conformance tests read it.
    let jp = |kind: &str, name: &str, path: &str| {
        vec![
            "get".to_string(),
            kind.to_string(),
            name.to_string(),
            "-o".to_string(),
            format!("jsonpath={path}"),
        ]
    };
    let until = |args: Vec<String>, want: &'static str| {
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.until_kubectl(&args, want, |o| o == want).await;
        }
    };
    until(
        jp(
            "httproute",
            "paths",
            "{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}",
        ),
        "True",
    )
    .await;
    until(
        jp(
            "httproute",
            "paths",
            "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}",
        ),
        "True",
    )
    .await;
    until(
        jp("httproute", "paths", "{.status.parents[0].controllerName}"),
        "portcullis.dev/gateway-controller",
    )
    .await;
    until(
        jp(
            "gateway",
            "gw",
            "{.status.conditions[?(@.type==\"Accepted\")].status}",
        ),
        "True",
    )
    .await;
    until(
        jp(
            "gateway",
            "gw",
            "{.status.conditions[?(@.type==\"Programmed\")].status}",
        ),
        "True",
    )
    .await;
    until(
        jp("gateway", "gw", "{.status.listeners[0].attachedRoutes}"),
        "1",
    )
    .await;
    until(
        jp("gateway", "gw", "{.status.listeners[1].attachedRoutes}"),
        "0",
    )
    .await;
    let class_status = cluster()
        .kubectl(&[
            "get",
            "gatewayclass",
            &class,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
        ])
        .unwrap_or_else(|e| e);
    assert_eq!(class_status, "True");

    // Header, query parameter and method matches on one path: the most specific match that
    // holds wins (method, then headers, then query parameters), else the plain rule.
    let open = policy_filter("open");
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "conditions",
        "cond.gw.test",
        &format!(
            "  - filters: [{open}]
    backendRefs: [{{name: a, port: 80}}]
  - matches: [{{headers: [{{name: X-Env, value: canary}}]}}]
    filters: [{open}]
    backendRefs: [{{name: b, port: 80}}]
  - matches: [{{queryParams: [{{type: RegularExpression, name: v, value: '[0-9]+'}}]}}]
    filters: [{open}]
    backendRefs: [{{name: b, port: 80}}]
  - matches: [{{method: DELETE}}]
    filters:
    - {open}
    - {{type: RequestRedirect, requestRedirect: {{hostname: deleted.gw.test}}}}
"
        ),
    ));
    let cond = "cond.gw.test";
    env.until(cond, "/", "the conditions route serves", |s, b| {
        s == 200 && upstream_of(b) == "a"
    })
    .await;
    let client = env.client(&[cond]);
    // (method, path, X-Env, what answers: an upstream's name or a status)
    let cases = [
        ("GET", "/", Some("canary"), "b", "the header match"),
        (
            "GET",
            "/",
            Some("stable"),
            "a",
            "a header value that does not match",
        ),
        ("GET", "/any?v=42", None, "b", "the query parameter match"),
        (
            "GET",
            "/any?v=x",
            None,
            "a",
            "a query value that does not match",
        ),
        (
            "DELETE",
            "/thing",
            Some("canary"),
            "302",
            "the method match before the header match",
        ),
    ];
    for (method, path, env_header, want, what) in cases {
        let url = format!("http://{cond}:{}{path}", env.port);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method, url);
        if let Some(v) = env_header {
            req = req.header("x-env", v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let got = match status {
            200 => upstream_of(&resp.text().await.unwrap_or_default()),
            other => other.to_string(),
        };
        assert_eq!(got, want, "{what}");
    }

    // A filter the route table cannot serve: the route is refused, naming the field; the
    // others keep serving.
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "mirror",
        "mirror.gw.test",
        "  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: b, port: 80}}}]\n    backendRefs: [{name: a, port: 80}]\n",
    ));
    let message = env
        .until_kubectl(
            &["get", "httproute", "mirror", "-o", "jsonpath={.status.parents[0].conditions[?(@.type==\"Accepted\")].reason} {.status.parents[0].conditions[?(@.type==\"Accepted\")].message}"],
            "the mirror filter is refused",
            |o| o.starts_with("UnsupportedValue "),
        )
        .await;
    assert!(
        message.contains("spec.rules[0].filters[0].type"),
        "{message}"
    );
    assert_eq!(
        env.get("mirror.gw.test", "/").await.0,
        404,
        "a refused route is not served"
    );
    assert_eq!(env.get(host, "/exact").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_a_cross_namespace_backend_needs_a_reference_grant() {
    let _shared = APISERVER.read().await;
    let (class, mut cleanup) = class();
    let other = format!("gw-other-{:06x}", rand::random::<u32>() & 0xffffff);
    cleanup
        .cluster
        .kubectl(&["create", "namespace", &other])
        .expect("namespace");
    cleanup
        .objects
        .push(vec!["namespace".into(), other.clone()]);
    let env = Env::start("split", true, &["--namespace", &other]).await;
    let ip = env.cluster.host_ip.clone();
    let (_a, _b) = (upstream(&env, "a").await, upstream(&env, "b").await);
    let c = Upstream::start_on(&ip, "c").await;
    for yaml in [
        service_yaml("c"),
        slice_yaml("c", c.addr.port(), &[(&ip, true)]),
    ] {
        cleanup
            .cluster
            .kubectl_in(&["-n", &other, "apply", "-f", "-"], Some(&yaml))
            .expect("backend in the other namespace");
    }
    env.must_apply(OPEN_POLICY);
    env.must_apply(&gateway_yaml(&class));
    let open = policy_filter("open");
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "split",
        "split.gw.test",
        &format!("  - filters: [{open}]\n    backendRefs: [{{name: a, port: 80, weight: 1}}, {{name: b, port: 80, weight: 3}}]\n"),
    ));
    env.until("split.gw.test", "/", "the split route serves", |s, _| {
        s == 200
    })
    .await;
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..80 {
        let (status, body) = env.get("split.gw.test", "/").await;
        assert_eq!(status, 200, "{body}");
        *counts.entry(upstream_of(&body)).or_insert(0) += 1;
    }
    let (to_a, to_b) = (
        counts.get("a").copied().unwrap_or(0),
        counts.get("b").copied().unwrap_or(0),
    );
    // Weighted round robin is deterministic: 1 : 3 of 80 is 20 : 60.
    assert!(
        (18..=22).contains(&to_a) && to_a + to_b == 80,
        "weights 1:3 gave {counts:?}"
    );

    env.must_apply(&route_yaml(
        "HTTPRoute",
        "cross",
        "cross.gw.test",
        &format!(
            "  - filters: [{open}]\n    backendRefs: [{{name: c, namespace: {other}, port: 80}}]\n"
        ),
    ));
    env.until_kubectl(
        &[
            "get",
            "httproute",
            "cross",
            "-o",
            "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        ],
        "refused without a ReferenceGrant",
        |o| o == "RefNotPermitted",
    )
    .await;
    let (status, body) = env.get("cross.gw.test", "/").await;
    assert_eq!(status, 500, "no backend may be reached: {body}");
    cleanup
        .cluster
        .kubectl_in(
            &["-n", &other, "apply", "-f", "-"],
            Some(&format!(
                "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: let-routes-in}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {}}}]
  to: [{{group: '', kind: Service}}]
",
                env.ns
            )),
        )
        .expect("ReferenceGrant");
    env.until(
        "cross.gw.test",
        "/",
        "granted: the other namespace's Service serves",
        |s, b| s == 200 && upstream_of(b) == "c",
    )
    .await;
    env.until_kubectl(
        &[
            "get",
            "httproute",
            "cross",
            "-o",
            "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}",
        ],
        "ResolvedRefs once granted",
        |o| o == "True",
    )
    .await;
}

/// A Policy attached to one rule of an HTTPRoute: that rule asks for sign-in at the identity
/// provider and lets in only Alice; the route's other rule is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_attached_to_one_rule_is_enforced_with_sign_in() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let port = free_port();
    let idp = Idp::start(&idp_config(&format!("http://authenticate.test:{port}")));
    let sign_in = sign_in_yaml(port, "auth0", &idp.issuer);
    let env = Env::start_on("gwsignin", true, &[], port, &sign_in).await;
    let env = with_open_policy(env);
    let _up = upstream(&env, "app").await;
    env.must_apply(
        "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: alice}
spec: {allow: {and: [{email: {is: alice@example.com}}]}}
",
    );
    env.must_apply(&gateway_yaml(&class));
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "app",
        "app.gw.test",
        &format!(
            "  - matches: [{{path: {{value: /private}}}}]
    filters: [{}]
    backendRefs: [{{name: app, port: 80}}]
  - matches: [{{path: {{value: /public}}}}]
    filters: [{}]
    backendRefs: [{{name: app, port: 80}}]
",
            policy_filter("alice"),
            policy_filter("open")
        ),
    ));
    env.until(
        "app.gw.test",
        "/public",
        "the public rule serves",
        |s, _| s == 200,
    )
    .await;
    let hosts = ["app.gw.test", "authenticate.test"];
    let url = format!("http://app.gw.test:{port}/private");
    // Not signed in: an API client is told to sign in.
    assert_eq!(env.get("app.gw.test", "/private").await.0, 401);
    let alice = Browser::new(port, &hosts);
    let page = alice.visit_as(&url, "auth0|alice").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, env.logs());
    assert_eq!(upstream_of(&page.body), "app");
    let bob = Browser::new(port, &hosts);
    let page = bob.visit_as(&url, "auth0|bob").await;
    assert_eq!(page.status, 403, "{:#?}", page.hops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_carries_a_unary_and_a_streaming_call_over_h2c() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("grpc", true, &[]).await);
    let up = grpc_upstream_on(&env.cluster.host_ip).await;
    backend(&env, "rpc", up.addr.port());
    env.must_apply(&gateway_yaml(&class));
    env.must_apply(&route_yaml(
        "GRPCRoute",
        "rpc",
        "rpc.gw.test",
        &format!(
            "  - matches: [{{method: {{service: pkg.Svc}}}}]\n    filters: [{}]\n    backendRefs: [{{name: rpc, port: 80}}]\n",
            policy_filter("open")
        ),
    ));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], env.port));
    let authority = format!("rpc.gw.test:{}", env.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let unary = loop {
        let reply = grpc_call(addr, &authority, "/pkg.Svc/Unary", b"\0\0\0\0\x02hi").await;
        if reply.status == 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "the GRPCRoute never served: {}\n{}",
            reply.status,
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(unary.headers["x-upstream-version"], "HTTP/2.0");
    let body: Vec<u8> = unary.frames.iter().flat_map(|(d, _)| d.to_vec()).collect();
    assert_eq!(body, b"\0\0\0\0\x02hi");
    assert_eq!(
        unary.trailers.expect("trailers reach the client")["grpc-status"],
        "0"
    );

    let stream = grpc_call(addr, &authority, "/pkg.Svc/Stream", b"").await;
    let body: Vec<u8> = stream.frames.iter().flat_map(|(d, _)| d.to_vec()).collect();
    assert_eq!(body, b"012");
    let (first, last) = (stream.frames[0].1, stream.frames[stream.frames.len() - 1].1);
    assert!(
        last.duration_since(first) >= Duration::from_millis(200),
        "frames are streamed"
    );
    assert_eq!(stream.trailers.expect("trailers")["grpc-status"], "0");

    // Another service is not this route's.
    let other = grpc_call(addr, &authority, "/other.Svc/Unary", b"").await;
    assert_eq!(other.status, 404);
}

/// An HTTPS listener serves the certificate its `certificateRefs` name, picked by SNI; a
/// listener whose Secret is missing says so in its `ResolvedRefs` condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_serves_its_certificate_by_sni() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gwtls", false, &[]).await);
    let _a = upstream(&env, "a").await;
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["secure.gw.test"]);
    env.must_apply(&tls_secret_yaml("gw-tls", &cert, &key));
    env.must_apply(&gateway_with(
        &class,
        "  - {name: web, port: 443, protocol: HTTPS, hostname: secure.gw.test,
     tls: {certificateRefs: [{name: gw-tls}]}}
  - {name: broken, port: 443, protocol: HTTPS, hostname: broken.gw.test,
     tls: {certificateRefs: [{name: no-such-secret}]}}
",
    ));
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "secure",
        "secure.gw.test",
        &format!(
            "  - filters: [{}]\n    backendRefs: [{{name: a, port: 80}}]\n",
            policy_filter("open")
        ),
    ));
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca pem"))
        .resolve(
            "secure.gw.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], env.port)),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("https://secure.gw.test:{}/", env.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Only a certificate issued by the test CA for secure.gw.test passes this client.
        match client.get(&url).send().await {
            Ok(r) if r.status() == 200 => {
                assert_eq!(upstream_of(&r.text().await.unwrap_or_default()), "a");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "the listener's certificate was never served: {other:?}\n{}",
                env.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.until_kubectl(
        &[
            "get",
            "gateway",
            "gw",
            "-o",
            "jsonpath={.status.listeners[1].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        ],
        "the missing Secret is reported",
        |o| o == "InvalidCertificateRef",
    )
    .await;
    env.until_kubectl(
        &[
            "get",
            "gateway",
            "gw",
            "-o",
            "jsonpath={.status.listeners[0].conditions[?(@.type==\"ResolvedRefs\")].status}",
        ],
        "the served Secret resolves",
        |o| o == "True",
    )
    .await;
}

/// Ingresses and Gateway routes share one route table: an HTTPRoute that claims a host and
/// path an Ingress already serves is not served and gets a Warning naming the Ingress, as a
/// second Ingress would; its other paths serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_claiming_an_ingress_path_is_a_conflict() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gwconflict", true, &[]).await);
    let (_a, _b) = (upstream(&env, "a").await, upstream(&env, "b").await);
    env.must_apply(&ingress_yaml(
        "first",
        "both.gw.test",
        "a",
        &[("portcullis.dev/allow_public_unauthenticated_access", "true")],
    ));
    env.until("both.gw.test", "/", "the Ingress serves", |s, b| {
        s == 200 && upstream_of(b) == "a"
    })
    .await;
    env.must_apply(&gateway_yaml(&class));
    let open = policy_filter("open");
    env.must_apply(&route_yaml(
        "HTTPRoute",
        "second",
        "both.gw.test",
        &format!(
            "  - filters: [{open}]\n    backendRefs: [{{name: b, port: 80}}]\n  - matches: [{{path: {{value: /own}}}}]\n    filters: [{open}]\n    backendRefs: [{{name: b, port: 80}}]\n"
        ),
    ));
    env.until(
        "both.gw.test",
        "/own",
        "the route's own path serves",
        |s, b| s == 200 && upstream_of(b) == "b",
    )
    .await;
    let line = env.until_event("Warning", "Conflict", "Ingress").await;
    assert!(line.contains("second"), "{line}");
    let (status, body) = env.get("both.gw.test", "/").await;
    assert_eq!(
        (status, upstream_of(&body).as_str()),
        (200, "a"),
        "the Ingress keeps its path"
    );
}

/// A BackendTLSPolicy asks for TLS to a Service; Portcullis does not implement it, and a
/// backend it targets must not be reached in plain text instead (a silent downgrade).
/// HTTPRoute `name` for `host` on listener `web`: one rule, open to everyone, to Service
/// `service` port 80.
fn open_route(env: &Env, name: &str, host: &str, service: &str) {
    env.must_apply(&route_yaml(
        "HTTPRoute",
        name,
        host,
        &format!(
            "  - filters: [{}]\n    backendRefs: [{{name: {service}, port: 80}}]\n",
            policy_filter("open")
        ),
    ));
}

/// A ConfigMap `name` holding `pem` as its `ca.crt`.
fn ca_config_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n  ca.crt: |\n{indented}"
    )
}

/// BackendTLSPolicy `name` for Service `service`: `hostname`, and the CA of ConfigMap `ca`.
fn backend_tls_policy(name: &str, service: &str, hostname: &str, ca: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: '', kind: Service, name: {service}}}]
  validation:
    hostname: {hostname}
    caCertificateRefs: [{{group: '', kind: ConfigMap, name: {ca}}}]
"
    )
}

/// GET through the proxy: (status, `x-upstream-sni`, `x-upstream-version`).
async fn get_tls_backend(env: &Env, host: &str) -> (u16, String, String) {
    let url = format!("http://{host}:{}/", env.port);
    match env.client(&[host]).get(&url).send().await {
        Ok(r) => {
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            (
                r.status().as_u16(),
                header("x-upstream-sni"),
                header("x-upstream-version"),
            )
        }
        Err(e) => (0, e.to_string(), String::new()),
    }
}

/// A BackendTLSPolicy makes the gateway reach the Service over TLS, sending its `hostname` as
/// SNI and trusting only the CA of its ConfigMap: HTTP/2 by ALPN for an HTTPRoute, and a
/// GRPCRoute's unary call over the same TLS backend; the policy's status names the Gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_tls_policy_reaches_the_backend_over_tls_with_its_ca_and_hostname() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gwbtls", true, &[]).await);
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["secured.example"]);
    let up = support::tls_upstream_on(&env.cluster.host_ip, &cert, &key).await;
    backend(&env, "secured", up.addr.port());
    env.must_apply(&ca_config_map("secured-ca", &ca.pem()));
    env.must_apply(&backend_tls_policy(
        "secured-tls",
        "secured",
        "secured.example",
        "secured-ca",
    ));
    env.must_apply(&gateway_yaml(&class));
    let open = policy_filter("open");
    open_route(&env, "secured", "secured.gw.test", "secured");
    env.must_apply(&route_yaml(
        "GRPCRoute",
        "rpc",
        "rpc.gw.test",
        &format!(
            "  - matches: [{{method: {{service: pkg.Svc}}}}]\n    filters: [{open}]\n    backendRefs: [{{name: secured, port: 80}}]\n"
        ),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, sni, version) = loop {
        let got = get_tls_backend(&env, "secured.gw.test").await;
        if got.0 == 200 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "{sni}\n{}", env.logs());
    assert_eq!(sni, "secured.example");
    assert_eq!(version, "HTTP/2.0", "HTTP/2 chosen by ALPN");

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], env.port));
    let authority = format!("rpc.gw.test:{}", env.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let unary = loop {
        let reply = grpc_call(addr, &authority, "/pkg.Svc/Unary", b"\0\0\0\0\x02hi").await;
        if reply.status == 200 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(unary.status, 200, "{}", env.logs());
    assert_eq!(unary.headers["x-upstream-sni"], "secured.example");
    let body: Vec<u8> = unary.frames.iter().flat_map(|(d, _)| d.to_vec()).collect();
    assert_eq!(body, b"\0\0\0\0\x02hi");
    assert_eq!(unary.trailers.expect("trailers")["grpc-status"], "0");

    let status = env
        .until_kubectl(
            &["get", "backendtlspolicy", "secured-tls", "-o", "jsonpath={.status.ancestors[0].ancestorRef.kind}/{.status.ancestors[0].ancestorRef.name} {.status.ancestors[0].controllerName} {.status.ancestors[0].conditions[*].type}={.status.ancestors[0].conditions[*].status}"],
            "the policy's status names the Gateway",
            |o| o.starts_with("Gateway/gw "),
        )
        .await;
    assert_eq!(
        status,
        "Gateway/gw portcullis.dev/gateway-controller Accepted ResolvedRefs=True True"
    );

    // The CA's ConfigMap removed: the policy cannot be honoured and the backend is refused
    // (500), and the policy says why.
    env.k(&["delete", "configmap", "secured-ca"])
        .expect("delete ConfigMap");
    env.until("secured.gw.test", "/", "the backend is refused", |s, _| {
        s == 500
    })
    .await;
    env.until_kubectl(
        &[
            "get",
            "backendtlspolicy",
            "secured-tls",
            "-o",
            "jsonpath={.status.ancestors[0].conditions[*].reason}",
        ],
        "the policy says its CA is missing",
        |o| o == "NoValidCACertificate InvalidCACertificateRef",
    )
    .await;
}

/// A backend a BackendTLSPolicy covers is never reached in plain text: a plain-text server
/// behind it gets a failed handshake, and the client a 502, not the server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_downgrade_to_plain_text_is_refused() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gwbtlsplain", true, &[]).await);
    let _up = upstream(&env, "secured").await;
    env.must_apply(&gateway_yaml(&class));
    open_route(&env, "secured", "secured.gw.test", "secured");
    env.until(
        "secured.gw.test",
        "/",
        "served before the policy",
        |s, b| s == 200 && upstream_of(b) == "secured",
    )
    .await;
    env.must_apply(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: secured-tls}
spec:
  targetRefs: [{group: '', kind: Service, name: secured}]
  validation: {hostname: secured.example, wellKnownCACertificates: System}
",
    );
    env.until(
        "secured.gw.test",
        "/",
        "the backend is reached over TLS only",
        |s, _| s == 502,
    )
    .await;
    let (status, body) = env.get("secured.gw.test", "/").await;
    assert_eq!(status, 502);
    assert_ne!(upstream_of(&body), "secured", "{body}");
}

/// TLS to a backend is checked as the policy says: a certificate from a CA the policy does not
/// name, or for another name than its `hostname`, gets a 502, never the backend's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_impersonation_by_an_untrusted_or_misnamed_certificate_is_refused() {
    let _shared = APISERVER.read().await;
    let (class, _cleanup) = class();
    let env = with_open_policy(Env::start("gwbtlsbad", true, &[]).await);
    let (trusted, rogue) = (TestCa::new(), TestCa::new());
    // Signed by a CA the policy does not trust.
    let (cert, key) = rogue.issue(&["rogue.example"]);
    let rogue_up = support::tls_upstream_on(&env.cluster.host_ip, &cert, &key).await;
    backend(&env, "rogue", rogue_up.addr.port());
    // Trusted, but for another name than the policy's hostname.
    let (cert, key) = trusted.issue(&["other.example"]);
    let misnamed_up = support::tls_upstream_on(&env.cluster.host_ip, &cert, &key).await;
    backend(&env, "misnamed", misnamed_up.addr.port());
    // Trusted and for the right name: the control.
    let (cert, key) = trusted.issue(&["good.example"]);
    let good_up = support::tls_upstream_on(&env.cluster.host_ip, &cert, &key).await;
    backend(&env, "good", good_up.addr.port());
    env.must_apply(&ca_config_map("trusted-ca", &trusted.pem()));
    env.must_apply(&backend_tls_policy(
        "rogue-tls",
        "rogue",
        "rogue.example",
        "trusted-ca",
    ));
    env.must_apply(&backend_tls_policy(
        "misnamed-tls",
        "misnamed",
        "misnamed.example",
        "trusted-ca",
    ));
    env.must_apply(&backend_tls_policy(
        "good-tls",
        "good",
        "good.example",
        "trusted-ca",
    ));
    env.must_apply(&gateway_yaml(&class));
    for name in ["rogue", "misnamed", "good"] {
        open_route(&env, name, &format!("{name}.gw.test"), name);
    }
    env.until("good.gw.test", "/", "the control is served", |s, _| {
        s == 200
    })
    .await;
    for name in ["rogue", "misnamed"] {
        let (status, sni, _) = get_tls_backend(&env, &format!("{name}.gw.test")).await;
        assert_eq!(status, 502, "{name}: {sni}");
        assert!(sni.is_empty(), "{name}: the backend answered");
    }
}
