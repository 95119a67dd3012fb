//! Attacks on the data plane, each test named after the attack it proves is stopped. Requests
//! are written byte by byte on a raw TCP connection, so that nothing between the test and the
//! proxy (an HTTP client's own URL clean-up, say) can normalise them first.

mod support;

use std::time::Duration;

use support::{Proxy, Upstream};
use tokio::io::AsyncWriteExt;

/// The answer to one raw HTTP/1.1 request: status, and the body's JSON when it is JSON.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The upstream that answered, or the status when Portcullis answered itself.
    fn who(&self) -> String {
        match self.json()["upstream"].as_str() {
            Some(name) if self.status == 200 => name.to_string(),
            _ => self.status.to_string(),
        }
    }
}

/// Send `head` (request line and headers, without the final empty line) and read the answer.
async fn raw(port: u16, head: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let text = support::read_to_close(&mut stream).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Answer { status, body }
}

async fn get(port: u16, host: &str, target: &str) -> Answer {
    raw(port, &format!("GET {target} HTTP/1.1\r\nHost: {host}")).await
}

/// A host with a public route on `/` and an admin-only prefix `/admin`, plus a deny rule on
/// `/secret` for the public route.
async fn two_routes() -> (Proxy, Upstream, Upstream) {
    let public = Upstream::start("public").await;
    let admin = Upstream::start("admin").await;
    let config = format!(
        "routes:
  - from: http://app.test
    prefix: /admin
    to: {admin}
    policy:
      allow:
        and:
          - email:
              is: admin@example.com
  - from: http://app.test
    to: {public}
    policy:
      allow:
        and:
          - accept: true
      deny:
        or:
          - http_path:
              starts_with: /secret
",
        admin = admin.url(),
        public = public.url(),
    );
    let proxy = Proxy::start(&config, true).await;
    (proxy, public, admin)
}

#[tokio::test]
async fn path_rule_bypass_by_encoding_dots_and_slashes_is_routed_to_the_protected_route() {
    let (proxy, _public, _admin) = two_routes().await;
    // Each spelling of /admin/x reaches the admin route, whose policy refuses an anonymous
    // client; none of them is served by the public route.
    for target in [
        "/admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/x/../admin/x",
        "/./admin/x",
        "/%2e/admin/x",
        "/%2E%2E/admin/x",
        "/x/%2e%2e/admin/x",
        "/x/.%2e/admin/x",
    ] {
        let a = get(proxy.port, "app.test", target).await;
        assert!(
            a.status == 401 || a.status == 403,
            "{target}: {} {}",
            a.status,
            a.body
        );
    }
    // Encoded slashes and backslashes are refused outright.
    each_answers(
        &proxy,
        &["/admin%2Fx", "/admin%2fx", "/admin%5Cx", "/admin\\x"],
        400,
    )
    .await;
}

/// Asserts that each of `targets` on app.test gets `status`.
async fn each_answers(proxy: &Proxy, targets: &[&str], status: u16) {
    for target in targets {
        let a = get(proxy.port, "app.test", target).await;
        assert_eq!(a.status, status, "{target}: {}", a.body);
    }
}

#[tokio::test]
async fn deny_rule_bypass_by_path_tricks_is_denied() {
    let (proxy, _public, _admin) = two_routes().await;
    assert_eq!(get(proxy.port, "app.test", "/open").await.who(), "public");
    each_answers(
        &proxy,
        &[
            "/secret/x",
            "/%73ecret/x",
            "//secret/x",
            "/a/../secret/x",
            "/./secret",
        ],
        403,
    )
    .await;
}

#[tokio::test]
async fn the_upstream_sees_the_path_that_was_routed_and_evaluated() {
    let (proxy, _public, _admin) = two_routes().await;
    let a = get(proxy.port, "app.test", "/a/./b/../%63//d?q=%2e%2e").await;
    assert_eq!(a.who(), "public");
    assert_eq!(a.json()["uri"], "/a/c/d?q=%2e%2e", "{}", a.body);
}

#[tokio::test]
async fn identity_headers_in_another_spelling_do_not_reach_the_upstream() {
    let (proxy, _public, _admin) = two_routes().await;
    let a = raw(
        proxy.port,
        "GET /open HTTP/1.1\r\nHost: app.test\r\nX_Pomerium_Jwt_Assertion: forged\r\nx-pomerium-JWT-assertion: forged\r\nX-POMERIUM-CLAIM-EMAIL: forged\r\nX-Kept: yes",
    )
    .await;
    assert_eq!(a.who(), "public", "{}", a.body);
    let headers = a.json()["headers"].clone();
    let names: Vec<String> = headers
        .as_object()
        .expect("headers")
        .keys()
        .map(|k| k.to_ascii_lowercase().replace('_', "-"))
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("x-pomerium-")),
        "{names:?}"
    );
    assert_eq!(headers["x-kept"], "yes");
}

#[tokio::test]
async fn forged_forwarding_headers_from_a_client_are_dropped() {
    let (proxy, _public, _admin) = two_routes().await;
    let a = raw(
        proxy.port,
        "GET /open HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 10.1.2.3\r\nForwarded: for=10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Port: 1\r\nX_Forwarded_Host: evil.test",
    )
    .await;
    let headers = a.json()["headers"].clone();
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["x-forwarded-host"], "app.test");
    for dropped in [
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x_forwarded_host",
    ] {
        assert!(headers.get(dropped).is_none(), "{dropped}: {headers}");
    }
}

#[tokio::test]
async fn malformed_or_oversized_hosts_are_refused_before_routing() {
    let (proxy, _public, _admin) = two_routes().await;
    let long = format!("{}.test", "a".repeat(500 * 1024 / 2));
    for host in [
        "app.test@evil.test".to_string(),
        "app test".to_string(),
        "app.test:99999".to_string(),
        format!("{}.app.test", "a".repeat(64)),
        long,
    ] {
        let a = get(proxy.port, &host, "/open").await;
        assert!(
            a.status == 400 || a.status == 431,
            "{} chars: {} {}",
            host.len(),
            a.status,
            a.body
        );
    }
    assert_eq!(get(proxy.port, "App.Test.", "/open").await.who(), "public");
}

#[tokio::test]
async fn a_cookie_header_of_many_chunks_costs_no_quadratic_work() {
    let (proxy, _public, _admin) = two_routes().await;
    // Thousands of `_pomerium_N` pairs: refused by the limits at once, not joined chunk by
    // chunk; the worker stays responsive.
    let pairs: Vec<String> = (0..3000).map(|i| format!("_pomerium_{i}=x")).collect();
    let started = std::time::Instant::now();
    let a = raw(
        proxy.port,
        &format!(
            "GET /admin/x HTTP/1.1\r\nHost: app.test\r\nCookie: _pomerium=v1.x; {}",
            pairs.join("; ")
        ),
    )
    .await;
    assert!(
        a.status == 401 || a.status == 403 || a.status == 431,
        "{}",
        a.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(proxy.port, "app.test", "/open").await.who(), "public");
}

/// A client names a protocol the route allows in one `Upgrade` header and one it refuses in
/// another, hoping only the first is checked while the upstream reads the second: every
/// `Upgrade` header must name an allowed protocol, in either order.
#[tokio::test]
async fn a_second_upgrade_header_cannot_smuggle_a_protocol_the_route_refuses() {
    let up = Upstream::start("ws").await;
    let config = format!(
        "routes:
  - from: http://ws.test
    to: {}
    allow_websockets: true
    allow_public_unauthenticated_access: true
",
        up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    for upgrades in [
        "Upgrade: websocket\r\nUpgrade: SPDY/3.1",
        "Upgrade: SPDY/3.1\r\nUpgrade: websocket",
        "Upgrade: websocket\r\nupgrade: h2c",
    ] {
        let a = raw(
            proxy.port,
            &format!("GET / HTTP/1.1\r\nHost: ws.test\r\n{upgrades}"),
        )
        .await;
        assert_eq!(a.status, 400, "{upgrades:?}: {}", a.body);
    }
    // The allowed protocol alone goes on to the upstream.
    let a = raw(
        proxy.port,
        "GET / HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket",
    )
    .await;
    assert_eq!(a.who(), "ws", "{}", a.body);
}
