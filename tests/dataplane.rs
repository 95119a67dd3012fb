//! End-to-end tests of `portcullis serve`: a real process, real sockets, real upstreams.

mod support;

use std::time::{Duration, Instant};

use support::{Proxy, TestCa, Upstream, WsEcho, cert_entry};

async fn json(resp: reqwest::Response) -> serde_json::Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
}

/// Which upstream answered a request (or the status when Portcullis answered itself).
async fn who(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status();
    if status != 200 {
        return status.as_u16().to_string();
    }
    json(resp).await["upstream"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// How many of `n` requests each upstream answered.
async fn tally(
    client: &reqwest::Client,
    url: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(who(client, url).await).or_insert(0) += 1;
    }
    seen
}

fn counts(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn hosts_and_paths_follow_ingress_precedence() {
    let (exact, prefix, longer, any, wild) = (
        Upstream::start("exact").await,
        Upstream::start("prefix").await,
        Upstream::start("longer").await,
        Upstream::start("any").await,
        Upstream::start("wild").await,
    );
    let config = format!(
        "routes:
  - from: http://app.test
    to: {any}
    allow_public_unauthenticated_access: true
  - from: http://app.test
    prefix: /foo
    to: {prefix}
    allow_public_unauthenticated_access: true
  - from: http://app.test
    prefix: /foo/bar/
    to: {longer}
    allow_public_unauthenticated_access: true
  - from: http://app.test
    path: /foo/bar
    to: {exact}
    allow_public_unauthenticated_access: true
  - from: http://*.wild.test
    to: {wild}
    allow_public_unauthenticated_access: true
",
        any = any.url(),
        prefix = prefix.url(),
        longer = longer.url(),
        exact = exact.url(),
        wild = wild.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &[
            "app.test",
            "a.wild.test",
            "a.b.wild.test",
            "wild.test",
            "nope.test",
        ],
        reqwest::Client::builder(),
    );
    let cases = [
        ("app.test", "/foo/bar", "exact"),
        ("app.test", "/foo/bar/", "longer"),
        ("app.test", "/foo/bar/baz", "longer"),
        ("app.test", "/foo", "prefix"),
        ("app.test", "/foo/", "prefix"),
        ("app.test", "/foo/x", "prefix"),
        ("app.test", "/foobar", "any"),
        ("app.test", "/FOO", "any"),
        ("app.test", "/", "any"),
        ("a.wild.test", "/x", "wild"),
        ("a.b.wild.test", "/x", "404"),
        ("wild.test", "/x", "404"),
        ("nope.test", "/", "404"),
    ];
    for (host, path, expected) in cases {
        assert_eq!(
            who(&c, &proxy.http(host, path)).await,
            expected,
            "{host}{path}"
        );
    }
    // Host names are case-insensitive.
    let resp = c
        .get(proxy.http("app.test", "/foo"))
        .header("host", format!("APP.TEST:{}", proxy.port))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["upstream"], "prefix");
}

#[tokio::test]
async fn tls_by_sni_with_wildcard_and_default_certificates() {
    let up = Upstream::start("up").await;
    let ca = TestCa::new();
    let (a_cert, a_key) = ca.issue(&["a.example.test"]);
    let (w_cert, w_key) = ca.issue(&["*.wild.example.test"]);
    let config = format!(
        "certificates:\n{}{}routes:
  - from: https://a.example.test
    to: {u}
    allow_public_unauthenticated_access: true
  - from: https://*.wild.example.test
    to: {u}
    allow_public_unauthenticated_access: true
  - from: https://nocert.example.test
    to: {u}
    allow_public_unauthenticated_access: true
",
        cert_entry(&a_cert, &a_key),
        cert_entry(&w_cert, &w_key),
        u = up.url()
    );
    let proxy = Proxy::start(&config, false).await;
    let ca_cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let trusting = proxy.client_for(
        &[
            "a.example.test",
            "x.wild.example.test",
            "nocert.example.test",
        ],
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca_cert),
    );
    // Verified by a real TLS client against our test CA: the right certificate per name.
    let r = trusting
        .get(proxy.https("a.example.test", "/"))
        .send()
        .await
        .expect("a.example.test verifies");
    assert_eq!(r.status(), 200);
    let r = trusting
        .get(proxy.https("x.wild.example.test", "/"))
        .send()
        .await
        .expect("wildcard certificate verifies");
    assert_eq!(r.status(), 200);
    // No configured certificate covers this name: the generated self-signed one is served,
    // which a verifying client rejects.
    let err = trusting
        .get(proxy.https("nocert.example.test", "/"))
        .send()
        .await;
    assert!(
        err.is_err(),
        "the default certificate must not verify against the test CA"
    );
    let lax = proxy.client_for(
        &["nocert.example.test"],
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .tls_info(true),
    );
    let r = lax
        .get(proxy.https("nocert.example.test", "/"))
        .send()
        .await
        .unwrap();
    let info = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    let der = info.peer_certificate().expect("peer certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("portcullis.invalid")),
        "{names:?}"
    );
}

/// An HTTPS proxy with `settings` and one public route `https://h2.test` to an echoing
/// upstream, and a client for it.
async fn h2_proxy(settings: &str) -> (Upstream, Proxy, reqwest::Client) {
    let up = Upstream::start("up").await;
    let config = format!(
        "{settings}routes:
  - from: https://h2.test
    to: {}
    allow_public_unauthenticated_access: true
",
        up.url()
    );
    let proxy = Proxy::start(&config, false).await;
    let c = proxy.client_for(
        &["h2.test"],
        reqwest::Client::builder().danger_accept_invalid_certs(true),
    );
    (up, proxy, c)
}

#[tokio::test]
async fn http2_and_forwarding_headers() {
    let (up, proxy, c) = h2_proxy("").await;
    let r = c
        .get(proxy.https("h2.test", "/x?q=1"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "ALPN must negotiate HTTP/2"
    );
    let v = json(r).await;
    assert_eq!(v["uri"], "/x?q=1");
    let h = &v["headers"];
    assert_eq!(h["host"], up.addr.to_string());
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], format!("h2.test:{}", proxy.port));
    // The client's own X-Forwarded-For is not trusted (no xff_num_trusted_hops): only the
    // address we saw goes upstream.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-request-id"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_kept_and_appended_to() {
    let (_up, proxy, c) = h2_proxy("xff_num_trusted_hops: 1\n").await;
    let r = c
        .get(proxy.https("h2.test", "/x"))
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
    assert_eq!(
        h["x-forwarded-proto"], "https",
        "the scheme is always ours to say"
    );
}

#[tokio::test]
async fn route_header_options() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:
  - from: http://opts.test
    prefix: /api
    prefix_rewrite: /v2/
    to: {u}
    allow_public_unauthenticated_access: true
    set_request_headers: {{X-Added: yes, X-Replaced: new}}
    remove_request_headers: [X-Secret]
    set_response_headers: {{X-Frame-Options: DENY}}
  - from: http://opts.test
    regex: /old/.*
    regex_rewrite_pattern: ^/old/(.*)$
    regex_rewrite_substitution: /new/$1
    host_rewrite: rewritten.internal
    to: {u}
    allow_public_unauthenticated_access: true
  - from: http://opts.test
    prefix: /keep
    preserve_host_header: true
    to: {u}
    allow_public_unauthenticated_access: true
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["opts.test"], reqwest::Client::builder());
    let r = c
        .get(proxy.http("opts.test", "/api/users?id=1"))
        .header("x-secret", "s3cr3t")
        .header("x-replaced", "old")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let v = json(r).await;
    assert_eq!(v["uri"], "/v2/users?id=1");
    assert_eq!(v["headers"]["x-added"], "yes");
    assert_eq!(v["headers"]["x-replaced"], "new");
    assert!(v["headers"].get("x-secret").is_none(), "{v}");

    let v = json(
        c.get(proxy.http("opts.test", "/old/a/b"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["path"], "/new/a/b");
    assert_eq!(v["headers"]["host"], "rewritten.internal");
    // The client's `Host` goes on as X-Forwarded-Host whatever the upstream gets as `Host`.
    let client_host = format!("opts.test:{}", proxy.port);
    assert_eq!(v["headers"]["x-forwarded-host"], client_host.as_str());

    let v = json(
        c.get(proxy.http("opts.test", "/keep"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["headers"]["host"], client_host.as_str());
    assert_eq!(v["headers"]["x-forwarded-host"], client_host.as_str());
}

#[tokio::test]
async fn forged_identity_headers_are_stripped() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:\n  - from: http://id.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["id.test"], reqwest::Client::builder());
    let v = json(
        c.get(proxy.http("id.test", "/"))
            .header("X-Pomerium-Jwt-Assertion", "forged")
            .header("X-Pomerium-Claim-Email", "admin@example.com")
            .header("X-Other", "kept")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let headers = v["headers"].as_object().unwrap();
    assert!(
        !headers.keys().any(|k| k.starts_with("x-pomerium-")),
        "forged identity reached the upstream: {headers:?}"
    );
    assert_eq!(headers["x-other"], "kept");
}

#[tokio::test]
async fn policies_deny_by_default_and_pages_carry_request_ids() {
    let up = Upstream::start("up").await;
    let config = format!(
        "product_name: Acme Gate
primary_color: '#0a5'
routes:
  - from: http://nopolicy.test
    to: {u}
  - from: http://login.test
    to: {u}
    allow_any_authenticated_user: true
  - from: http://get-only.test
    to: {u}
    policy:
      allow:
        and:
          - http_method: {{in: [GET, HEAD]}}
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &[
            "nopolicy.test",
            "login.test",
            "get-only.test",
            "unknown.test",
        ],
        reqwest::Client::builder(),
    );

    let r = c
        .get(proxy.http("nopolicy.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a route without policy denies");
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(body.contains(&rid), "the page shows the request id");
    // In plain words, branded with the configured name and colour.
    for expected in [
        "The route&#39;s policy allows nobody: it has no allow rule.",
        "<dt>Route</dt><dd>routes[0]</dd>",
        "Acme Gate",
        "#0a5",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    let r = c.get(proxy.http("login.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("sign-in is not set up on this proxy")
            && body.contains("You need to be signed in: any signed-in user."),
        "{body}"
    );

    let r = c
        .get(proxy.http("login.test", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no session and a user is needed: login");
    let v = json(r).await;
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "user-unauthenticated"),
        "{v}"
    );

    assert_eq!(
        c.get(proxy.http("get-only.test", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = c
        .delete(proxy.http("get-only.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = c
        .get(proxy.http("unknown.test", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(json(r).await["request_id"], rid);
    // The access log carries the same id.
    assert!(
        proxy.log_with(&rid).await.contains(&rid),
        "request id in the access log"
    );
}

#[tokio::test]
async fn upstream_failures_give_502_and_504() {
    let up = Upstream::start("up").await;
    let dead = support::free_port();
    let config = format!(
        "routes:
  - from: http://dead.test
    to: http://127.0.0.1:{dead}
    allow_public_unauthenticated_access: true
  - from: http://slow.test
    to: {u}
    timeout: 300ms
    allow_public_unauthenticated_access: true
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["dead.test", "slow.test"], reqwest::Client::builder());
    let r = c.get(proxy.http("dead.test", "/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("x-request-id"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<dt>Route</dt><dd>routes[0]</dd>")
            && body.contains(&format!(
                "href=\"{}\">Try again",
                proxy.http("dead.test", "/x")
            )),
        "{body}"
    );
    let r = c
        .get(proxy.http("slow.test", "/delay/3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let r = c
        .get(proxy.http("slow.test", "/delay/10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = proxy.metrics().await;
    assert!(
        m.contains("portcullis_upstream_errors_total{kind=\"connect\",route=\"routes[0]\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_upstream_errors_total{kind=\"timeout\",route=\"routes[1]\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn websockets_only_where_allowed() {
    use futures::{SinkExt, StreamExt};
    let ws = WsEcho::start().await;
    let config = format!(
        "routes:
  - from: http://ws.test
    to: http://{a}
    allow_websockets: true
    allow_public_unauthenticated_access: true
  - from: http://nows.test
    to: http://{a}
    allow_public_unauthenticated_access: true
",
        a = ws.addr
    );
    let proxy = Proxy::start(&config, true).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (mut socket, resp) =
        tokio_tungstenite::client_async(format!("ws://ws.test:{}/echo", proxy.port), stream)
            .await
            .expect("websocket through the proxy");
    assert_eq!(resp.status(), 101);
    socket.send("hello".into()).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "hello");

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let refused =
        tokio_tungstenite::client_async(format!("ws://nows.test:{}/echo", proxy.port), stream)
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected a refused upgrade, got {other:?}"),
    }
    // allow_websockets is for WebSocket only: another protocol needs allow_spdy or
    // allow_upgrades.
    let spdy = proxy
        .client_for(&["ws.test"], reqwest::Client::builder())
        .get(proxy.http("ws.test", "/echo"))
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .send()
        .await
        .unwrap();
    assert_eq!(spdy.status(), 400);
}

#[tokio::test]
async fn http_redirects_to_https() {
    let up = Upstream::start("up").await;
    let redirect_port = support::free_port();
    let config = format!(
        "http_redirect_addr: 127.0.0.1:{redirect_port}\nroutes:\n  - from: https://r.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let proxy = Proxy::start(&config, false).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(format!("http://127.0.0.1:{redirect_port}/a/b?c=d"))
        .header("host", "r.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://r.test:{}/a/b?c=d", proxy.port)
    );
    let r = c
        .post(format!("http://127.0.0.1:{redirect_port}/form"))
        .header("host", "r.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308, "methods other than GET keep their method");
    let r = c
        .get(format!(
            "http://127.0.0.1:{redirect_port}/.well-known/acme-challenge/token"
        ))
        .header("host", "r.test")
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.status(),
        301,
        "ACME HTTP-01 challenges are not redirected"
    );
}

fn versioned_config(up: &Upstream, version: u32) -> String {
    format!(
        "routes:\n  - from: http://reload.test\n    to: {}\n    allow_public_unauthenticated_access: true\n    set_response_headers: {{X-Version: \"{version}\"}}\n",
        up.url()
    )
}

#[tokio::test]
async fn reload_under_load_loses_no_request() {
    let up = Upstream::start("up").await;
    let proxy = Proxy::start(&versioned_config(&up, 0), true).await;
    let c = proxy.client_for(&["reload.test"], reqwest::Client::builder());
    let url = proxy.http("reload.test", "/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut count = 0u32;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let r = c
                    .get(&url)
                    .send()
                    .await
                    .expect("no connection error during reload");
                assert_eq!(r.status(), 200, "no failed request during reload");
                seen.insert(r.headers()["x-version"].to_str().unwrap().to_string());
                count += 1;
            }
            (count, seen)
        }));
    }
    for version in 1..=5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.rewrite(&versioned_config(&up, version), true);
    }
    // Wait until the last version serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get(&url).send().await.unwrap();
        if r.headers()["x-version"] == "5" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last configuration never served:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    let mut total = 0;
    for h in clients {
        let (count, seen) = h.await.unwrap();
        total += count;
        versions.extend(seen);
    }
    assert!(total > 20, "the clients made requests throughout ({total})");
    assert!(
        versions.len() >= 2,
        "several configurations served during the run: {versions:?}"
    );
    let m = proxy.metrics().await;
    assert!(
        !m.contains("portcullis_config_reloads_total{result=\"error\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn an_invalid_reload_keeps_the_last_good_table() {
    let up = Upstream::start("up").await;
    let proxy = Proxy::start(&versioned_config(&up, 1), true).await;
    let c = proxy.client_for(&["reload.test"], reqwest::Client::builder());
    proxy.rewrite(
        "routes:\n  - from: http://reload.test\n    to: not a url\n    tiemout: 5s\n",
        true,
    );
    // At least one refused read (a watcher may see the write as two events).
    let refused = |m: &str| {
        m.lines()
            .filter_map(|l| l.strip_prefix("portcullis_config_reloads_total{result=\"error\"} "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n >= 1))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused(&proxy.metrics().await) {
        assert!(
            Instant::now() < deadline,
            "the invalid file was never read:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.get(proxy.http("reload.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-version"], "1");
    let logs = proxy.log_with("tiemout").await;
    assert!(logs.contains("tiemout"), "the error names the key: {logs}");
    assert!(logs.contains(":7:"), "the error names the line: {logs}");

    // SIGHUP also reloads.
    std::fs::write(
        &proxy.config,
        format!(
            "{}{}",
            support::base_config(proxy.port, proxy.metrics_port, true),
            versioned_config(&up, 2)
        ),
    )
    .unwrap();
    let pid = proxy.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get(proxy.http("reload.test", "/")).send().await.unwrap();
        if r.headers()["x-version"] == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reload did not happen:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:\n  - name: counted\n    from: http://m.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["m.test"], reqwest::Client::builder());
    for _ in 0..3 {
        assert_eq!(
            c.get(proxy.http("m.test", "/"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        c.get(proxy.http("m.test", "/status/404"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Requests are counted in the logging phase, after the response went out: wait for the
    // last one to be counted.
    let mut m = proxy.metrics().await;
    for _ in 0..200 {
        if m.contains("portcullis_policy_decisions_total{decision=\"allow\",route=\"counted\"} 4")
            && m.contains("portcullis_http_request_duration_seconds_count{route=\"counted\"} 4")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = proxy.metrics().await;
    }
    assert!(
        m.contains("portcullis_http_requests_total{route=\"counted\",status=\"200\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_http_requests_total{route=\"counted\",status=\"404\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_http_request_duration_seconds_count{route=\"counted\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_policy_decisions_total{decision=\"allow\",route=\"counted\"} 4"),
        "{m}"
    );
    // The access log is written by a non-blocking writer; nothing was dropped at this pace.
    assert!(m.contains("portcullis_log_lines_dropped_total 0"), "{m}");
    let health = reqwest::get(format!("http://127.0.0.1:{}/healthz", proxy.metrics_port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn sigterm_drains_and_exits_within_seconds() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:\n  - from: http://t.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let mut proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["t.test"], reqwest::Client::builder());
    // A request in flight when SIGTERM arrives still completes.
    let inflight = tokio::spawn({
        let (c, url) = (c.clone(), proxy.http("t.test", "/delay/500"));
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = proxy.child.id().to_string();
    let start = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        inflight
            .await
            .unwrap()
            .expect("in-flight request completes"),
        200
    );
    loop {
        if proxy.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn https_upstreams_verify_with_custom_ca_server_name_or_skip() {
    let up = Upstream::start("behind-tls").await;
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["inner.test"]);
    // The HTTPS upstream is a second Portcullis terminating TLS with a certificate of our CA.
    let inner = Proxy::start(
        &format!(
            "certificates:\n{}routes:\n  - from: https://inner.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
            cert_entry(&cert, &key),
            up.url()
        ),
        false,
    )
    .await;
    let ca_pem: String = ca.pem().lines().map(|l| format!("      {l}\n")).collect();
    let outer = Proxy::start(
        &format!(
            "routes:
  - from: http://custom-ca.test
    to: https://127.0.0.1:{p}
    tls_server_name: inner.test
    host_rewrite: inner.test
    tls_custom_ca: |
{ca_pem}    allow_public_unauthenticated_access: true
  - from: http://untrusted.test
    to: https://127.0.0.1:{p}
    tls_server_name: inner.test
    host_rewrite: inner.test
    allow_public_unauthenticated_access: true
  - from: http://skip.test
    to: https://127.0.0.1:{p}
    host_rewrite: inner.test
    tls_skip_verify: true
    allow_public_unauthenticated_access: true
",
            p = inner.port
        ),
        true,
    )
    .await;
    let c = outer.client_for(
        &["custom-ca.test", "untrusted.test", "skip.test"],
        reqwest::Client::builder(),
    );
    assert_eq!(
        who(&c, &outer.http("custom-ca.test", "/")).await,
        "behind-tls"
    );
    assert_eq!(
        who(&c, &outer.http("untrusted.test", "/")).await,
        "502",
        "an unknown CA is refused"
    );
    assert_eq!(who(&c, &outer.http("skip.test", "/")).await, "behind-tls");
}

/// Upstream mutual TLS: the route presents its client certificate (inline or from files); a
/// route without one is refused by the upstream, also right after a route with one has used
/// the same upstream (`client_certificate_connections_are_not_shared_between_routes`).
#[tokio::test]
async fn upstream_mtls_presents_the_route_client_certificate() {
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    let (server_cert, server_key) = server_ca.issue(&["mtls.internal"]);
    let (client_cert, client_key) = client_ca.issue(&["portcullis.client"]);
    let (other_cert, other_key) = TestCa::new().issue(&["stranger.client"]);
    let up = support::mtls_upstream(&server_cert, &server_key, &client_ca.pem()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let block = |pem: &str| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
    let route = |host: &str, extra: &str| {
        format!(
            "  - from: http://{host}
    to: https://{addr}
    tls_server_name: mtls.internal
    tls_custom_ca_file: {ca}
    allow_public_unauthenticated_access: true
{extra}",
            addr = up.addr,
            ca = file("server-ca.pem", &server_ca.pem()),
        )
    };
    let config = format!(
        "routes:\n{}{}{}{}",
        route(
            "inline.test",
            &format!(
                "    tls_client_cert: |\n{}    tls_client_key: |\n{}",
                block(&client_cert),
                block(&client_key)
            )
        ),
        route(
            "files.test",
            &format!(
                "    tls_client_cert_file: {}\n    tls_client_key_file: {}\n",
                file("client.pem", &client_cert),
                file("client.key", &client_key)
            )
        ),
        route("none.test", ""),
        route(
            "stranger.test",
            &format!(
                "    tls_client_cert: |\n{}    tls_client_key: |\n{}",
                block(&other_cert),
                block(&other_key)
            )
        ),
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &["inline.test", "files.test", "none.test", "stranger.test"],
        reqwest::Client::builder(),
    );
    let client_of = |host: &'static str| {
        let (c, url) = (c.clone(), proxy.http(host, "/"));
        async move {
            let r = c.get(url).send().await.expect("request");
            match r.status().as_u16() {
                200 => json(r).await["client"].as_str().unwrap_or("?").to_string(),
                s => s.to_string(),
            }
        }
    };
    for _ in 0..3 {
        assert_eq!(client_of("inline.test").await, "portcullis.client");
        assert_eq!(
            client_of("none.test").await,
            "502",
            "no certificate, no entry"
        );
        assert_eq!(client_of("files.test").await, "portcullis.client");
        assert_eq!(
            client_of("stranger.test").await,
            "502",
            "a certificate of another CA is refused by the upstream"
        );
    }
}

/// `to: ["URL,WEIGHT", …]`: over a bounded number of requests each upstream gets its share.
#[tokio::test]
async fn weighted_upstreams_get_their_share() {
    let a = Upstream::start("light").await;
    let b = Upstream::start("heavy").await;
    let config = format!(
        "routes:\n  - from: http://w.test\n    to: [\"{},1\", \"{},3\"]\n    allow_public_unauthenticated_access: true\n",
        a.url(),
        b.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["w.test"], reqwest::Client::builder());
    assert_eq!(
        tally(&c, &proxy.http("w.test", "/"), 40).await,
        counts(&[("heavy", 30), ("light", 10)])
    );
}

/// `host_rewrite_header` takes the upstream's Host from a request header;
/// `rewrite_response_headers` rewrites the prefix of a response header (here `Location`).
#[tokio::test]
async fn host_from_a_header_and_rewritten_locations() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:
  - from: http://rw.test
    to: {}
    allow_public_unauthenticated_access: true
    host_rewrite_header: X-Target-Host
    rewrite_response_headers:
      - header: Location
        prefix: http://internal.example/
        value: http://rw.test/app/
",
        up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &["rw.test"],
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
    );
    let r = c
        .get(proxy.http("rw.test", "/"))
        .header("X-Target-Host", "backend.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["headers"]["host"], "backend.internal");
    let r = c.get(proxy.http("rw.test", "/")).send().await.unwrap();
    assert_ne!(
        json(r).await["headers"]["host"],
        "backend.internal",
        "without the header the usual Host is sent"
    );
    let r = c
        .get(proxy.http("rw.test", "/redirect/next"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://rw.test/app/next");
}

/// `redirect` and `response` routes answer allowed requests themselves; their policy still
/// decides first.
#[tokio::test]
async fn redirect_and_response_routes_answer_after_the_policy() {
    let config = "routes:
  - from: http://old.test
    prefix: /docs/
    redirect: {host_redirect: new.test, prefix_rewrite: /manual/, response_code: FOUND}
    allow_public_unauthenticated_access: true
  - from: http://teapot.test
    response: {status: 418, body: short and stout}
    allow_public_unauthenticated_access: true
  - from: http://guarded.test
    response: {status: 200, body: secret}
    policy: {allow: {and: [{source_ip: 203.0.113.0/24}]}}
";
    let proxy = Proxy::start(config, true).await;
    let c = proxy.client_for(
        &["old.test", "teapot.test", "guarded.test"],
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
    );
    let r = c
        .get(proxy.http("old.test", "/docs/intro?lang=en"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("http://new.test:{}/manual/intro?lang=en", proxy.port)
    );
    let r = c.get(proxy.http("teapot.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "short and stout");
    let r = c.get(proxy.http("guarded.test", "/")).send().await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "the policy decides before the fixed answer"
    );
    assert!(!r.text().await.unwrap().contains("secret"));
}

/// Global `set_response_headers` (Pomerium's defaults when unset) on proxied responses; a
/// route's own map adds to it, and `disable` in a route's map turns them off for that route.
#[tokio::test]
async fn response_headers_global_route_and_disable() {
    let up = Upstream::start("up").await;
    let config = format!(
        "set_response_headers: {{X-Frame-Options: DENY, X-Global: g}}
routes:
  - from: http://plain.test
    to: {u}
    allow_public_unauthenticated_access: true
  - from: http://own.test
    to: {u}
    allow_public_unauthenticated_access: true
    set_response_headers: {{X-Frame-Options: SAMEORIGIN, X-Route: r}}
  - from: http://off.test
    to: {u}
    allow_public_unauthenticated_access: true
    set_response_headers: {{disable: \"true\"}}
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &["plain.test", "own.test", "off.test"],
        reqwest::Client::builder(),
    );
    let headers = |host: &'static str| {
        let (c, url) = (c.clone(), proxy.http(host, "/"));
        async move { c.get(url).send().await.expect("request").headers().clone() }
    };
    let h = headers("plain.test").await;
    assert_eq!(
        (&h["x-frame-options"], &h["x-global"]),
        (&"DENY".parse().unwrap(), &"g".parse().unwrap())
    );
    let h = headers("own.test").await;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["x-global"], "g");
    assert_eq!(h["x-route"], "r");
    let h = headers("off.test").await;
    assert!(
        !h.contains_key("x-frame-options")
            && !h.contains_key("x-global")
            && !h.contains_key("disable"),
        "{h:?}"
    );
    assert!(h.contains_key("x-request-id"));
}

/// Substitutions written as Pomerium's documentation writes them (`\2/instance/\1`), and the
/// Host taken from the path by `host_path_regex_rewrite_*`.
#[tokio::test]
async fn pomerium_style_regex_substitutions() {
    let up = Upstream::start("up").await;
    let config = format!(
        r#"routes:
  - from: http://svc.test
    prefix: /service/
    regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'
    regex_rewrite_substitution: '\2/instance/\1'
    to: {u}
    allow_public_unauthenticated_access: true
  - from: http://hosts.test
    host_path_regex_rewrite_pattern: '^/([^/]+)/.*$'
    host_path_regex_rewrite_substitution: '\1.internal'
    to: {u}
    allow_public_unauthenticated_access: true
"#,
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["svc.test", "hosts.test"], reqwest::Client::builder());
    let v = json(
        c.get(proxy.http("svc.test", "/service/foo/v1/api"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["path"], "/v1/api/instance/foo");
    let v = json(
        c.get(proxy.http("hosts.test", "/tenant-a/page"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["headers"]["host"], "tenant-a.internal");
    assert_eq!(v["path"], "/tenant-a/page", "the path itself is unchanged");
}

/// Pomerium's `log_level` sets the level when `RUST_LOG` does not: at `warn`, no access log.
#[tokio::test]
async fn log_level_from_the_configuration() {
    let up = Upstream::start("up").await;
    let config = format!(
        "log_level: warn\nroutes:\n  - from: http://l.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let proxy = Proxy::start_with_env(&config, true, &[("RUST_LOG", "")]).await;
    proxy.log_with("log level from the configuration").await;
    let c = proxy.client_for(&["l.test"], reqwest::Client::builder());
    assert_eq!(who(&c, &proxy.http("l.test", "/")).await, "up");
    // The access-log line would be written right after the response; give it time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = proxy.logs();
    assert!(
        !logs.contains("request_id="),
        "no access log at warn:\n{logs}"
    );
}

/// With `PORTCULLIS_LOG_FORMAT=json` the access log is JSON lines like every other log line,
/// each request's fields under `fields`.
#[tokio::test]
async fn access_log_lines_are_json_in_the_json_format() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:\n  - from: http://j.test\n    to: {}\n    allow_public_unauthenticated_access: true\n",
        up.url()
    );
    let proxy = Proxy::start_with_env(&config, true, &[("PORTCULLIS_LOG_FORMAT", "json")]).await;
    let c = proxy.client_for(&["j.test"], reqwest::Client::builder());
    let r = c
        .get(proxy.http("j.test", "/a%22b?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let line = proxy.access_line(&rid).await;
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "access", "{line}");
    assert_eq!(v["level"], "INFO");
    let f = &v["fields"];
    assert_eq!(f["request_id"], rid.as_str());
    assert_eq!(f["method"], "GET");
    assert_eq!(f["host"], "j.test");
    assert_eq!(f["path"], "/a%22b");
    assert_eq!(f["status"], 200);
    assert!(
        f["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );
    // The other log lines are JSON too, so the file is JSON lines throughout.
    for l in proxy.logs().lines().filter(|l| l.starts_with('{')) {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "{l}");
    }
}

/// A gRPC-shaped service behind an `h2c://` upstream, called over h2c: a unary call and a
/// streaming one, with trailers passed through and frames not held back until the end.
#[tokio::test]
async fn grpc_over_h2c_with_trailers_and_streaming() {
    let up = support::grpc_upstream().await;
    let config = format!(
        "routes:\n  - from: http://grpc.test\n    to: h2c://{}\n    allow_public_unauthenticated_access: true\n",
        up.addr
    );
    let proxy = Proxy::start(&config, true).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port));
    let authority = format!("grpc.test:{}", proxy.port);
    let unary = support::grpc_call(addr, &authority, "/pkg.Svc/Unary", b"\0\0\0\0\x02hi").await;
    assert_eq!(unary.status, 200);
    assert_eq!(unary.headers["x-upstream-version"], "HTTP/2.0");
    // The headers the proxy adds outside Pingora's header map reach an HTTP/2 upstream, once
    // each, and so do those of the HTTP/2 response.
    let saw = |name: &str| unary.headers[format!("x-upstream-saw-{name}").as_str()].clone();
    assert_eq!(saw("x-forwarded-for"), "127.0.0.1");
    assert_eq!(saw("x-forwarded-proto"), "http");
    assert_eq!(saw("x-forwarded-host"), authority.as_str());
    let rid = saw("x-request-id");
    assert_eq!(rid.len(), 16, "{rid:?}");
    let sent: Vec<_> = unary.headers.get_all("x-request-id").iter().collect();
    assert_eq!(
        sent,
        [&rid],
        "the client gets the id the upstream got, once"
    );
    assert_eq!(unary.headers.get_all("x-frame-options").iter().count(), 1);
    let body: Vec<u8> = unary.frames.iter().flat_map(|(d, _)| d.to_vec()).collect();
    assert_eq!(body, b"\0\0\0\0\x02hi");
    let trailers = unary.trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");

    let stream = support::grpc_call(addr, &authority, "/pkg.Svc/Stream", b"").await;
    let body: Vec<u8> = stream.frames.iter().flat_map(|(d, _)| d.to_vec()).collect();
    assert_eq!(body, b"012");
    let (first, last) = (stream.frames[0].1, stream.frames[stream.frames.len() - 1].1);
    assert!(
        last.duration_since(first) >= Duration::from_millis(200),
        "frames arrive as they are sent, not all at the end"
    );
    assert_eq!(stream.trailers.expect("trailers")["grpc-status"], "0");
}

/// Downstream mutual TLS: a route with `tls_downstream_client_ca` lets through only clients
/// whose certificate its CA issued (495 otherwise), and its policy's `client_certificate` then
/// decides among them; a route without it on the same listener needs no certificate
/// (`client_certificate_of_another_ca_is_refused`, `a_route_without_client_ca_asks_nothing`).
#[tokio::test]
async fn downstream_mtls_checks_the_route_ca_then_the_policy() {
    let up = Upstream::start("up").await;
    let server_ca = TestCa::new();
    let (server_cert, server_key) = server_ca.issue(&["mtls.test", "open.test"]);
    let client_ca = TestCa::new();
    let (good_cert, good_key) = client_ca.issue(&["good.client"]);
    let (other_cert, other_key) = client_ca.issue(&["other.client"]);
    let (stranger_cert, stranger_key) = TestCa::new().issue(&["good.client"]);
    let ca_block: String = client_ca
        .pem()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let config = format!(
        "certificates:\n{}routes:
  - from: https://mtls.test
    to: {u}
    tls_downstream_client_ca: |
{ca_block}    policy:
      allow:
        and:
          - client_certificate:
              san_dns: {{is: good.client}}
  - from: https://open.test
    to: {u}
    allow_public_unauthenticated_access: true
",
        cert_entry(&server_cert, &server_key),
        u = up.url()
    );
    let proxy = Proxy::start(&config, false).await;
    let client = |identity: Option<(&str, &str)>| {
        proxy.tls_client(&["mtls.test", "open.test"], &server_ca, identity)
    };
    let status = |c: reqwest::Client, host: &'static str| {
        let url = proxy.https(host, "/");
        async move {
            c.get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(
        status(client(Some((&good_cert, &good_key))), "mtls.test").await,
        200
    );
    assert_eq!(
        status(client(Some((&other_cert, &other_key))), "mtls.test").await,
        403,
        "trusted, but the policy wants another name"
    );
    assert_eq!(
        status(client(Some((&stranger_cert, &stranger_key))), "mtls.test").await,
        495
    );
    assert_eq!(status(client(None), "mtls.test").await, 495);
    assert_eq!(status(client(None), "open.test").await, 200);
    assert_eq!(
        status(client(Some((&stranger_cert, &stranger_key))), "open.test").await,
        200
    );
}

/// The metrics listener's `/routes`: each route with host, path, upstreams (and where they
/// resolved), policy in PPL, origin (file and line) and diagnostics; the same as HTML
/// (escaped) and as a terminal table from `portcullis routes --from`.
#[tokio::test]
async fn the_route_table_shows_routes_with_origin_policy_and_diagnostics() {
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:
  - from: http://app.test
    to: {u}
    prefix: /api
    policy:
      allow:
        and:
          - http_path: {{starts_with: \"/api/<b>\"}}
  - from: http://gone.test
    name: gone
    to: http://no-such-host.invalid:8080
    allow_public_unauthenticated_access: true
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let ops = format!("http://127.0.0.1:{}", proxy.metrics_port);
    let v: serde_json::Value = reqwest::get(format!("{ops}/routes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ready"], true, "{v}");
    let app = &v["routes"][0];
    assert_eq!(app["host"], "app.test");
    assert_eq!(app["path"], "/api/*");
    assert_eq!(app["upstreams"][0]["url"], format!("{}/", up.url()));
    assert!(app["upstreams"][0]["address"].is_string(), "{app}");
    assert_eq!(
        app["policy"],
        serde_json::json!([{"allow": {"and": [{"http_path": {"starts_with": "/api/<b>"}}]}}])
    );
    let origin = app["origin"].as_str().unwrap();
    assert!(origin.ends_with(".yaml:5:5"), "{origin}");
    assert_eq!(app["diagnostics"], serde_json::json!([]));
    let gone = &v["routes"][1];
    assert_eq!(gone["name"], "gone");
    assert!(
        gone["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("no-such-host.invalid:8080/ did not resolve"),
        "{gone}"
    );
    // The HTML view escapes what the policy says.
    let html = reqwest::Client::new()
        .get(format!("{ops}/routes"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<th scope=\"col\">Policy (PPL)</th>") && html.contains("/api/&lt;b&gt;"),
        "{html}"
    );
    assert!(!html.contains("/api/<b>"), "{html}");
    // The terminal table.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["routes", "--from", &ops])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME ") && lines[0].contains("DIAGNOSTICS"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("routes[0]") && lines[1].contains("app.test"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("gone") && lines[2].contains("did not resolve"),
        "{text}"
    );
}

/// `outlier_detection`: a backend that answers 5xx three times in a row is left out for the
/// ejection time, then used again; once it answers well it stays in.
#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_returns() {
    let good = support::Switchable::start("good", 200).await;
    let bad = support::Switchable::start("bad", 500).await;
    let config = format!(
        "routes:
  - from: http://eject.test
    to: [\"{}\", \"{}\"]
    outlier_detection: {{consecutive_5xx: 3, baseEjectionTime: 1500ms}}
    allow_public_unauthenticated_access: true
",
        good.url(),
        bad.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["eject.test"], reqwest::Client::builder());
    let url = proxy.http("eject.test", "/");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(c.get(&url).send().await.unwrap().status().as_u16());
    }
    // Round robin sends every other request to the bad backend until its third 500.
    assert_eq!(bad.hits(), 3, "statuses: {statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 3);
    assert!(statuses[6..].iter().all(|&s| s == 200), "{statuses:?}");
    let log = proxy
        .log_with("upstream ejected after consecutive failures")
        .await;
    assert!(log.contains("consecutive_failures=3"), "{log}");
    // After the ejection time it is tried again; now healthy, it keeps its share.
    bad.set(200);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        tally(&c, &url, 20).await,
        counts(&[("bad", 10), ("good", 10)])
    );
}

/// `LEAST_REQUEST`: while one backend holds a slow request, quick requests go to the other
/// (round robin would send every other one to the busy backend).
#[tokio::test]
async fn least_request_avoids_the_busy_backend() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let config = format!(
        "routes:
  - from: http://lr.test
    to: [\"{}\", \"{}\"]
    load_balancing_policy: LEAST_REQUEST
    allow_public_unauthenticated_access: true
",
        a.url(),
        b.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["lr.test"], reqwest::Client::builder());
    let slow_client = c.clone();
    let slow_url = proxy.http("lr.test", "/delay/1500");
    let slow = tokio::spawn(async move { who(&slow_client, &slow_url).await });
    // Wait until the slow request is in flight at one backend.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut quick = Vec::new();
    for _ in 0..8 {
        quick.push(who(&c, &proxy.http("lr.test", "/")).await);
    }
    let busy = slow.await.unwrap();
    assert!(busy == "a" || busy == "b", "{busy}");
    assert!(
        quick.iter().all(|w| w != &busy && (w == "a" || w == "b")),
        "busy {busy}, quick {quick:?}"
    );
}

/// `RING_HASH` without a session keys on the client address: one client stays on one
/// backend (round robin would visit all three).
#[tokio::test]
async fn ring_hash_keeps_a_client_on_one_backend() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let config = format!(
        "routes:
  - from: http://sticky.test
    to: [\"{}\", \"{}\", \"{}\"]
    load_balancing_policy: RING_HASH
    allow_public_unauthenticated_access: true
",
        ups[0].url(),
        ups[1].url(),
        ups[2].url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["sticky.test"], reqwest::Client::builder());
    let seen = tally(&c, &proxy.http("sticky.test", "/"), 12).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen.keys().all(|k| ["a", "b", "c"].contains(&k.as_str())));
}

/// `health_checks`: a backend whose probe fails is left out until its probe passes again.
#[tokio::test]
async fn health_checks_take_a_backend_out_and_back() {
    let good = support::Switchable::start("good", 200).await;
    let sick = support::Switchable::start("sick", 503).await;
    let config = format!(
        "routes:
  - from: http://hc.test
    to: [\"{}\", \"{}\"]
    health_checks:
      - timeout: 1s
        interval: 200ms
        unhealthy_threshold: 2
        healthy_threshold: 2
        http_health_check: {{path: /healthz, expected_statuses: [{{start: 200, end: 300}}]}}
    allow_public_unauthenticated_access: true
",
        good.url(),
        sick.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(&["hc.test"], reqwest::Client::builder());
    let url = proxy.http("hc.test", "/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sick.probes() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sick.probes() >= 2, "the backend was never probed");
    let before = sick.hits();
    for _ in 0..10 {
        assert_eq!(who(&c, &url).await, "good");
    }
    assert_eq!(
        sick.hits(),
        before,
        "no request reached the unhealthy backend"
    );
    let log = proxy
        .log_with("health check fails: upstream left out")
        .await;
    assert!(
        log.contains("health check fails: upstream left out"),
        "{log}"
    );
    sick.set(200);
    let log = proxy.log_with("health check passes again").await;
    assert!(log.contains("health check passes again"), "{log}");
    let seen = tally(&c, &url, 10).await;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["good", "sick"],
        "{seen:?}"
    );
}

/// `timeout` bounds the whole response, not each read; `idle_timeout` bounds the wait for each
/// piece of it.
#[tokio::test]
async fn route_timeout_is_a_deadline_and_idle_timeout_a_gap() {
    // Ten one-byte chunks 250 ms apart: about 2.5 s in all.
    let trickle = support::trickle_upstream(10, Duration::from_millis(250)).await;
    let config = format!(
        "routes:
  - from: http://deadline.test
    to: http://{a}
    timeout: 1s
    allow_public_unauthenticated_access: true
  - from: http://gap.test
    to: http://{a}
    timeout: 10s
    idle_timeout: 100ms
    allow_public_unauthenticated_access: true
  - from: http://patient.test
    to: http://{a}
    timeout: 10s
    allow_public_unauthenticated_access: true
",
        a = trickle.addr
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &["deadline.test", "gap.test", "patient.test"],
        reqwest::Client::builder(),
    );
    // Bytes received and how long it took; an error (cut connection) ends the count.
    let fetch = |host: &'static str| {
        let c = c.clone();
        let url = proxy.http(host, "/");
        async move {
            let start = Instant::now();
            let mut resp = c.get(url).send().await.expect("headers");
            let mut got = 0;
            while let Ok(Some(chunk)) = resp.chunk().await {
                got += chunk.len();
            }
            (got, start.elapsed())
        }
    };
    let (got, took) = fetch("deadline.test").await;
    assert!(got < 10, "the deadline cut the response: {got} bytes");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
        "cut at about 1 s: {took:?}"
    );
    let (got, took) = fetch("gap.test").await;
    assert!(
        got < 10,
        "a 250 ms gap exceeds idle_timeout 100ms: {got} bytes"
    );
    assert!(took < Duration::from_millis(1000), "{took:?}");
    let (got, _) = fetch("patient.test").await;
    assert_eq!(got, 10, "within both limits the whole response arrives");
}

/// Each request on one kept-alive connection waits for its upstream as long as its own route's
/// `timeout` allows, whatever the requests before it on the connection were allowed: a read that
/// outlasts the time the previous request's read had left, and a shorter limit after a longer one.
#[tokio::test]
async fn each_request_on_a_connection_waits_its_own_timeout_for_the_upstream() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start("up").await;
    let config = format!(
        "routes:
  - from: http://t.test
    prefix: /delay/1000
    to: {u}
    timeout: 150ms
    allow_public_unauthenticated_access: true
  - from: http://t.test
    to: {u}
    timeout: 2s
    allow_public_unauthenticated_access: true
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    let mut ask = async |path: &str| {
        let started = Instant::now();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: t.test\r\n\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let got = support::read_answer(&mut tcp, path).await;
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    };
    // The upstream answers after 10 ms: the read waits, with 2 s allowed.
    let (answer, _) = ask("/delay/10").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // One second later, a read of 1.5 s goes past the end of that first read's 2 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (answer, took) = ask("/delay/1500").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{took:?}: {answer}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    // A route with a shorter timeout than the one before gets its 504 at its own 150 ms: not
    // when the previous request's 2 s would have run out (about 500 ms from now), nor later.
    let (answer, took) = ask("/delay/1000").await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{took:?}: {answer}");
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_millis(450),
        "the 504 comes at the route's 150 ms: {took:?}"
    );
}

/// A proxy with `timeout_idle: 1s` and a public route for `idle.test`, and a connection to it.
async fn idle_connection() -> (Upstream, Proxy, tokio::net::TcpStream) {
    let up = Upstream::start("up").await;
    let config = format!(
        "timeout_idle: 1s
routes:
  - from: http://idle.test
    to: {}
    allow_public_unauthenticated_access: true
",
        up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    (up, proxy, tcp)
}

/// Reads `tcp` (what is left of an answer) until the proxy closes it, which must be about the
/// 1 s `timeout_idle` after `since`, within 5 s at most.
async fn assert_closed_a_second_after(tcp: &mut tokio::net::TcpStream, since: Instant) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the idle connection was not closed within 5 s"
    );
    let took = since.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "closed {took:?} after the last request"
    );
}

/// `timeout_idle`: a kept-alive client connection is closed when no next request comes.
#[tokio::test]
async fn timeout_idle_closes_a_quiet_keep_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_up, _proxy, mut tcp) = idle_connection().await;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_closed_a_second_after(&mut tcp, Instant::now()).await;
}

/// `timeout_idle` counts from the last request on a connection, not the first: the connection
/// stays open through requests spaced closer than the limit, for longer than the limit in all,
/// and is closed a limit after the last.
#[tokio::test]
async fn timeout_idle_counts_from_the_last_request_on_a_connection() {
    use tokio::io::AsyncWriteExt;
    let (_up, _proxy, mut tcp) = idle_connection().await;
    let first = Instant::now();
    for n in 0..4 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        let what = format!("request {n}, sent {:?} after the first", first.elapsed());
        let got = support::read_answer(&mut tcp, &what).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "request {n}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // Four requests 0.6 s apart: well past the 1 s limit since the first.
    assert!(first.elapsed() >= Duration::from_millis(1800));
    assert_closed_a_second_after(&mut tcp, Instant::now()).await;
}

/// The global `downstream_mtls` in its three enforcement modes: the default refuses requests
/// without a trusted certificate (495) on every route without its own CA; `policy` leaves it to
/// the policy's `client_certificate`; `reject_connection` refuses certificate-less handshakes.
#[tokio::test]
async fn global_downstream_mtls_in_each_enforcement_mode() {
    let up = Upstream::start("up").await;
    let server_ca = TestCa::new();
    let (server_cert, server_key) = server_ca.issue(&["app.test", "picky.test"]);
    let client_ca = TestCa::new();
    let (good_cert, good_key) = client_ca.issue(&["good.client"]);
    let (stranger_cert, stranger_key) = TestCa::new().issue(&["good.client"]);
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), client_ca.pem()).unwrap();
    let config = |enforcement: &str| {
        format!(
            "certificates:\n{}downstream_mtls:
  ca_file: {}
  enforcement: {enforcement}
routes:
  - from: https://app.test
    to: {u}
    allow_public_unauthenticated_access: true
  - from: https://picky.test
    to: {u}
    policy:
      allow:
        and:
          - client_certificate:
              san_dns: {{is: good.client}}
",
            cert_entry(&server_cert, &server_key),
            ca_file.path().display(),
            u = up.url()
        )
    };
    let good = Some((good_cert.as_str(), good_key.as_str()));
    let stranger = Some((stranger_cert.as_str(), stranger_key.as_str()));
    // Status for each (host, identity); 0 when the connection failed.
    async fn statuses(
        proxy: &Proxy,
        server_ca: &TestCa,
        cases: &[(&str, Option<(&str, &str)>)],
    ) -> Vec<u16> {
        let mut out = Vec::new();
        for (host, identity) in cases {
            let c = proxy.tls_client(&["app.test", "picky.test"], server_ca, *identity);
            out.push(
                c.get(proxy.https(host, "/"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0),
            );
        }
        out
    }
    let cases = [
        ("app.test", good),
        ("app.test", None),
        ("app.test", stranger),
        ("picky.test", good),
        ("picky.test", None),
        ("picky.test", stranger),
    ];
    let proxy = Proxy::start(&config("policy_with_default_deny"), false).await;
    assert_eq!(
        statuses(&proxy, &server_ca, &cases).await,
        vec![200, 495, 495, 200, 495, 495],
        "default: a trusted certificate or 495, before any policy"
    );
    drop(proxy);
    let proxy = Proxy::start(&config("policy"), false).await;
    assert_eq!(
        statuses(&proxy, &server_ca, &cases).await,
        vec![200, 200, 200, 200, 403, 403],
        "policy: public routes stay public; the criterion sees only trusted certificates"
    );
    drop(proxy);
    let proxy = Proxy::start(&config("reject_connection"), false).await;
    assert_eq!(
        statuses(&proxy, &server_ca, &cases).await,
        vec![200, 0, 495, 200, 0, 495],
        "reject_connection: no certificate, no connection"
    );
}

/// The process opts out of transparent huge pages: mimalloc asks for them on the memory it
/// reserves, and then every 2 MiB region it touches is resident whole (27 MiB of a controller
/// at 10,000 Ingresses). Linux shows the opt-out as `THP_enabled: 0`.
#[tokio::test]
async fn the_process_opts_out_of_transparent_huge_pages() {
    let proxy = Proxy::start("", true).await;
    let path = format!("/proc/{}/status", proxy.child.id());
    let status = std::fs::read_to_string(&path).expect("the process's status under /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("Linux 5.0 or newer shows THP_enabled in /proc/PID/status");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

/// Header names keep the spelling they arrived in, to the upstream and back to the client, as
/// Pomerium does (it sets Envoy to preserve case, for applications that read headers
/// case-sensitively). Checked on the bytes: the upstream here is a raw socket that records the
/// request head it reads, and the client reads the answer's bytes.
#[tokio::test]
async fn header_names_keep_their_spelling_both_ways() {
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let head = support::read_head(&mut stream)
            .await
            .expect("the proxy sent a whole request head");
        let head = String::from_utf8_lossy(&head).into_owned();
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nX-Upstream-MiXed: up\r\nCONTENT-TYPE: text/plain\r\n\
                  Content-Length: 2\r\nConnection: close\r\n\r\nok",
            )
            .await
            .expect("answer");
        head
    });
    let config = format!(
        "routes:
  - from: http://case.test
    to: http://{upstream}
    allow_public_unauthenticated_access: true
"
    );
    let proxy = Proxy::start(&config, true).await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    client
        .write_all(
            b"GET / HTTP/1.1\r\nHost: case.test\r\nX-Client-MiXed: down\r\n\
              user-AGENT: raw\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let answer = support::read_to_close(&mut client).await;
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the upstream saw the request in time")
        .expect("the upstream task did not fail");

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    for line in ["\r\nX-Client-MiXed: down\r\n", "\r\nuser-AGENT: raw\r\n"] {
        assert!(
            seen.contains(line),
            "upstream request lacks {line:?}:\n{seen}"
        );
    }
    for line in [
        "\r\nX-Upstream-MiXed: up\r\n",
        "\r\nCONTENT-TYPE: text/plain\r\n",
    ] {
        assert!(answer.contains(line), "answer lacks {line:?}:\n{answer}");
    }
}
