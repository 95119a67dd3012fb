//! End-to-end sign-in: the Auth0 stand-in (a real oidc-provider), `portcullis serve` as a real
//! process, upstreams that verify the identity assertion with the proxy's JWKS, and a
//! browser-like client that follows every redirect by hand.

mod support;

use std::time::Duration;

use support::Proxy;
use support::idp::{Browser, COOKIE_SECRET, Idp, SHARED_SECRET, VerifyingUpstream};
use support::signin::{HOSTS, Setup, default_setup, hop_paths, hop_to, idp_config_for, proxy_yaml};

#[tokio::test]
async fn sign_in_reaches_an_allowed_route_with_a_verifiable_assertion() {
    let s = default_setup().await;
    let b = s.browser();
    let page = b
        .visit_as(&s.url("app.test", "/hello?x=1"), "auth0|alice")
        .await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, s.proxy.logs());
    assert!(
        s.proxy
            .metrics()
            .await
            .contains("portcullis_sign_ins_total{result=\"completed\"} 1"),
        "a completed sign-in is counted"
    );
    let paths = hop_paths(&page);
    for expected in [
        "302 app.test/hello",
        "302 authenticate.test/.pomerium/sign_in",
        "302 authenticate.test/oauth2/callback",
        "302 app.test/.pomerium/callback/",
        "200 app.test/hello",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:#?}"
        );
    }
    // The authorization request carries state, nonce and PKCE S256.
    let authorize = page
        .hops
        .iter()
        .find(|h| h.url.contains("/authorize?"))
        .expect("authorize hop");
    for param in [
        "state=v1.",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(
            authorize.url.contains(param),
            "{param} in {}",
            authorize.url
        );
    }
    let body = page.json();
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["assertion"]["valid"], true, "{body}");
    assert_eq!(body["assertion"]["claims"]["email"], "alice@example.com");
    assert_eq!(body["assertion"]["claims"]["sub"], "auth0|alice");
    assert_eq!(
        body["headers"]["x-pomerium-claim-email"],
        "alice@example.com"
    );
    // The session cookie never reaches the upstream.
    let cookie = body["headers"]["cookie"].as_str().unwrap_or("");
    assert!(!cookie.contains("_pomerium"), "{cookie}");

    // Forged identity headers are replaced; the real assertion still verifies.
    let resp = b
        .client
        .get(s.url("app.test", "/again"))
        .header("accept", "application/json")
        .header("x-pomerium-jwt-assertion", "forged.token.value")
        .header("x-pomerium-claim-email", "mallory@example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["assertion"]["valid"], true, "{body}");
    assert_eq!(
        body["headers"]["x-pomerium-claim-email"],
        "alice@example.com"
    );

    // Who am I, and the assertion endpoint.
    let me: serde_json::Value = b
        .client
        .get(s.url("app.test", "/.pomerium/"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["signed_in"], true);
    assert_eq!(me["email"], "alice@example.com");
    let html = b.get(&s.url("app.test", "/.pomerium/")).await;
    assert!(html.body.contains("alice@example.com"), "{}", html.body);
    let jwt = b.get_once(&s.url("app.test", "/.pomerium/jwt")).await;
    assert_eq!(jwt.status(), 200);
    let token = jwt.text().await.expect("jwt");
    assert_eq!(token.split('.').count(), 3);
    let jwks: serde_json::Value = b
        .client
        .get(s.url("other.test", "/.well-known/pomerium/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert!(jwks["keys"][0]["kid"].is_string(), "{jwks}");
    let stats = s.idp.stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
}

#[tokio::test]
async fn a_denied_user_gets_403_with_reasons_and_is_not_sent_to_sign_in_again() {
    let s = default_setup().await;
    let b = s.browser();
    let page = b.visit_as(&s.url("app.test", "/"), "auth0|bob").await;
    assert_eq!(page.status, 403, "{:#?}", page.hops);
    // In plain words: the rule, the user's own value, who they are, the route, the actions.
    for expected in [
        "You need: claim https://example.com/roles includes admin. You have: viewer.",
        "You are signed in as <strong>bob@example.com</strong>",
        "<dt>Route</dt><dd>routes[0]</dd>",
        "/.pomerium/sign_out",
        "Sign out, to sign in as someone else",
    ] {
        assert!(page.body.contains(expected), "{expected}: {}", page.body);
    }
    // Reason codes are for machines (JSON, access log), not for people.
    assert!(!page.body.contains("claim-unauthorized"), "{}", page.body);
    // Next time: straight to 403, no redirect.
    let again = b.get(&s.url("app.test", "/")).await;
    assert_eq!(again.status, 403);
    assert_eq!(again.hops.len(), 1, "{:#?}", again.hops);
    let resp = b
        .client
        .get(s.url("app.test", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 403);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["email"], "bob@example.com");
    assert!(v["request_id"].is_string());
    assert_eq!(v["reasons"][0], "claim-unauthorized", "{v}");
    assert_eq!(
        v["explanation"][0],
        "You need: claim https://example.com/roles includes admin. You have: viewer."
    );
}

/// Someone not signed in, refused by a deny rule: the page names the rule, says they are not
/// signed in, and offers no sign-out button.
#[tokio::test]
async fn a_deny_rule_page_names_the_rule_and_offers_no_sign_out_to_nobody() {
    let s = default_setup().await;
    let page = s.browser().get(&s.url("readonly.test", "/admin/x")).await;
    assert_eq!(page.status, 403, "{:#?}", page.hops);
    for expected in [
        "A deny rule matched: the path starts with /admin.",
        "You are not signed in.",
        "Request id",
    ] {
        assert!(page.body.contains(expected), "{expected}: {}", page.body);
    }
    assert!(
        !page.body.contains("Sign out") && !page.body.contains("<form"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("http-path-ok"), "{}", page.body);
    assert_eq!(
        s.browser().get(&s.url("readonly.test", "/")).await.status,
        200
    );
}

/// The routes portal lists the routes the requesting user may open (public ones too) and no
/// others; JSON for API clients; descriptions are escaped.
#[tokio::test]
async fn routes_portal_lists_what_each_user_may_open() {
    let s = default_setup().await;
    let urls = |v: &serde_json::Value| -> Vec<String> {
        v["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .map(|r| r["url"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let portal = async |b: &Browser| -> serde_json::Value {
        b.client
            .get(s.url("app.test", "/.pomerium/routes"))
            .header("accept", "application/json")
            .send()
            .await
            .expect("portal")
            .json()
            .await
            .expect("json")
    };
    let (alice, _) = s.alice_on_app().await;
    let v = portal(&alice).await;
    assert_eq!(v["email"], "alice@example.com");
    let seen = urls(&v);
    for host in ["app.test", "other.test", "public.test", "readonly.test"] {
        let url = s.url(host, "/");
        assert!(seen.contains(&url), "{url} in {seen:?}");
    }
    for host in ["denied.test", "xss.test", "team.test"] {
        assert!(
            !seen.iter().any(|u| u.contains(host)),
            "{host} not in {seen:?}"
        );
    }
    let app = &v["routes"][0];
    assert_eq!(app["description"], "The <b>admin</b> app");
    assert_eq!(app["logo_url"], "https://cdn.test/app.png");
    // Nobody signed in: the public routes only.
    let nobody = s.browser();
    let v = portal(&nobody).await;
    assert_eq!(v["signed_in"], false);
    assert_eq!(
        urls(&v),
        vec![s.url("public.test", "/"), s.url("readonly.test", "/")]
    );
    // The page, as a browser gets it.
    let page = alice.get(&s.url("app.test", "/.pomerium/routes")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("The &lt;b&gt;admin&lt;/b&gt; app")
            && page.body.contains(&format!(
                "<a href=\"{}\">routes[0]</a>",
                s.url("app.test", "/")
            ))
            && page
                .body
                .contains("You are signed in as <strong>alice@example.com</strong>"),
        "{}",
        page.body
    );
}

/// An email no header can carry (a DEL in it, from the identity provider): the policy allows
/// the user, but the request is not sent without the identity header the route promises its
/// upstream; the page says which claim and which header.
#[tokio::test]
async fn a_claim_no_header_can_carry_stops_the_request_with_a_page() {
    let s = Setup::start(
        serde_json::json!({
            "users": [
                { "sub": "auth0|alice", "email": "alice\u{7f}@example.com", "name": "Alice",
                  "roles": ["admin"] }
            ]
        }),
        "",
    )
    .await;
    let page = s
        .browser()
        .visit_as(&s.url("app.test", "/"), "auth0|alice")
        .await;
    assert_eq!(page.status, 500, "{:#?}", page.hops);
    assert!(
        page.body.contains("Your identity cannot be passed on")
            && page.body.contains("x-pomerium-claim-email")
            && page.body.contains("email holds characters"),
        "{}",
        page.body
    );
    // The upstream answers 200 with the request as JSON: this page is the proxy's own.
    assert!(!page.body.contains("\"assertion\""), "{}", page.body);
}

/// A policy value and a claim value that are HTML reach the 403 page as text, and the page
/// shows the requesting user's data only (never another user's).
#[tokio::test]
async fn deny_page_escapes_policy_and_claim_values() {
    let s = Setup::start(
        serde_json::json!({
            "roles": [{ "id": "rol_evil00000000001", "name": "<img src=x onerror=alert(1)>" }],
            "users": [
                { "sub": "auth0|mallory", "email": "mallory@example.com", "name": "M",
                  "roles": ["<img src=x onerror=alert(1)>"] },
                { "sub": "auth0|alice", "email": "alice@example.com", "name": "Alice Example",
                  "roles": [] }
            ]
        }),
        "",
    )
    .await;
    // Alice has been here first: nothing of hers may show on mallory's page.
    let alice = s.browser();
    assert_eq!(
        alice
            .visit_as(&s.url("xss.test", "/"), "auth0|alice")
            .await
            .status,
        403
    );
    let page = s
        .browser()
        .visit_as(&s.url("xss.test", "/"), "auth0|mallory")
        .await;
    assert_eq!(page.status, 403, "{:#?}", page.hops);
    assert!(
        !page.body.contains("<script>alert(2)") && !page.body.contains("<img src=x"),
        "unescaped: {}",
        page.body
    );
    assert!(
        page.body.contains(
            "includes &lt;script&gt;alert(2)&lt;/script&gt;. You have: &lt;img src=x onerror=alert(1)&gt;."
        ),
        "{}",
        page.body
    );
    assert!(!page.body.contains("alice"), "{}", page.body);
}

#[tokio::test]
async fn single_sign_on_across_route_hosts_public_routes_and_api_clients() {
    let s = default_setup().await;
    let b = s.browser();
    // Public: no sign-in at all.
    let public = b.get(&s.url("public.test", "/")).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.hops.len(), 1);
    // API clients get 401 JSON, not a redirect.
    let resp = b
        .client
        .get(s.url("app.test", "/api"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 401);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 401);

    let first = b.visit_as(&s.url("app.test", "/"), "auth0|alice").await;
    assert_eq!(first.status, 200);
    let second = b.get(&s.url("other.test", "/x")).await;
    assert_eq!(second.status, 200, "{:#?}", second.hops);
    assert!(second.login_action().is_none());
    assert!(
        second
            .hops
            .iter()
            .all(|h| !h.url.contains(&format!(":{}", s.idp.port))),
        "no trip to the IdP: {:#?}",
        second.hops
    );
    let stats = s.idp.stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
    assert_eq!(stats["authorize"], 1, "{stats}");
}

/// The value of the cookie `name` the browser `b` holds for `url`.
fn cookie_value(b: &Browser, url: &str, name: &str) -> String {
    b.cookies(url)
        .split("; ")
        .find_map(|c| c.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} cookie for {url}"))
        .to_string()
}

/// A browser can hold a cookie whose value is not ASCII (UTF-8 text another site set). The
/// session cookie next to it still counts, and is still taken out of what the upstream gets, on
/// the authenticated route and on a public one.
#[tokio::test]
async fn a_session_cookie_next_to_a_non_ascii_cookie_counts_and_never_reaches_the_upstream() {
    let s = default_setup().await;
    let (b, _) = s.alice_on_app().await;
    let value = cookie_value(&b, &s.url("app.test", "/"), "_pomerium");
    let fresh = Browser::new(s.port, HOSTS);
    for host in ["app.test", "public.test"] {
        let header = format!("name=zoë; _pomerium={value}; after=1");
        let header = reqwest::header::HeaderValue::from_bytes(header.as_bytes()).expect("value");
        let resp = fresh
            .client
            .get(s.url(host, "/"))
            .header("accept", "application/json")
            .header("cookie", header)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{host}");
        let body: serde_json::Value = resp.json().await.expect("json");
        let sent = body["headers"]["cookie"].as_str().unwrap_or("");
        assert_eq!(sent, "name=zoë; after=1", "{host}: {body}");
        if host == "app.test" {
            assert_eq!(body["assertion"]["valid"], true, "{body}");
        }
    }
}

#[tokio::test]
async fn tampered_truncated_or_foreign_cookies_are_no_session() {
    let s = default_setup().await;
    let (b, _) = s.alice_on_app().await;
    let value = cookie_value(&b, &s.url("app.test", "/"), "_pomerium");
    let auth_value = cookie_value(
        &b,
        &s.url("authenticate.test", "/"),
        "_pomerium_authenticate",
    );
    let mut flipped = value.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let fresh = Browser::new(s.port, HOSTS);
    for bad in [
        flipped,
        value[..value.len() - 5].to_string(),
        auth_value,
        "v1.garbage".to_string(),
    ] {
        let resp = fresh
            .client
            .get(s.url("app.test", "/"))
            .header("accept", "text/html")
            .header("cookie", format!("_pomerium={bad}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 302);
        let location = resp.headers()["location"].to_str().expect("location");
        assert!(location.contains("/.pomerium/sign_in"), "{location}");
    }
    // The real one still works.
    let resp = fresh
        .client
        .get(s.url("app.test", "/"))
        .header("cookie", format!("_pomerium={value}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn forged_state_replayed_codes_idp_errors_and_open_redirects_are_refused() {
    let s = default_setup().await;
    let (b, page) = s.alice_on_app().await;
    let callback = hop_to(&page, "/oauth2/callback");
    // The same code again (same browser, same state): refused with a page, not a 500.
    let replay = b.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("Try again"), "{}", replay.body);
    // Even with the browser's nonce cookie put back, the provider refuses a used code.
    let state_text = url::Url::parse(&callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let key: [u8; 32] = base64_decode(COOKIE_SECRET).try_into().expect("32 bytes");
    let state = portcullis::auth::OAuthState::open(
        &portcullis::auth::SealKey::new(&key),
        &state_text,
        chrono::Utc::now().timestamp(),
    )
    .expect("state opens");
    let resp = Browser::new(s.port, HOSTS)
        .client
        .get(&callback)
        .header("accept", "text/html")
        .header("cookie", format!("_pomerium_csrf={}", state.nonce))
        .send()
        .await
        .expect("replay");
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.expect("body");
    assert!(text.contains("could not be completed"), "{text}");
    let stats = s.idp.stats().await;
    assert_eq!(stats["tokenByGrant"]["authorization_code"], 2, "{stats}");
    // An expired state: a page that says so, with a way back to the application.
    let old = portcullis::auth::OAuthState {
        expires_at: chrono::Utc::now().timestamp() - 1,
        ..state.clone()
    };
    let mut expired =
        url::Url::parse(&s.url("authenticate.test", "/oauth2/callback")).expect("url");
    expired
        .query_pairs_mut()
        .append_pair("code", "abc")
        .append_pair("state", &old.seal(&portcullis::auth::SealKey::new(&key)));
    let expired = b.get(expired.as_str()).await;
    assert_eq!(expired.status, 400);
    assert!(expired.body.contains("took too long"), "{}", expired.body);
    assert!(
        expired
            .body
            .contains(&format!("href=\"http://app.test:{}/\"", s.port)),
        "{}",
        expired.body
    );
    // A forged state.
    let forged = b
        .get(&s.url(
            "authenticate.test",
            "/oauth2/callback?code=abc&state=v1.forged",
        ))
        .await;
    assert_eq!(forged.status, 400);
    assert!(forged.body.contains("state"), "{}", forged.body);
    // Failed sign-ins are counted.
    let metrics = s.proxy.metrics().await;
    let failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_sign_ins_total{result=\"failed\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(failed.is_some_and(|n| n >= 1), "{metrics}");
    // A state from a real sign-in, but used with a code in another browser (no nonce cookie).
    let other = Browser::new(s.port, HOSTS);
    let replay_elsewhere = other.get(&callback).await;
    assert_eq!(replay_elsewhere.status, 400);
    // An IdP error (e.g. the user refused): a page with the reason and a way to try again.
    let mut denied = url::Url::parse(&s.url("authenticate.test", "/oauth2/callback")).expect("url");
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "User did not authorize the request")
        .append_pair("state", &state_text);
    // Without the browser's nonce cookie the provider's text is not shown at all (an attacker
    // could otherwise put words on the authenticate host's page).
    let unchecked = b.get(denied.as_str()).await;
    assert_eq!(unchecked.status, 400);
    assert!(
        !unchecked.body.contains("User did not authorize"),
        "{}",
        unchecked.body
    );
    // In the browser that started the sign-in, the refusal is explained.
    let resp = Browser::new(s.port, HOSTS)
        .client
        .get(denied.as_str())
        .header("accept", "text/html")
        .header("cookie", format!("_pomerium_csrf={}", state.nonce))
        .send()
        .await
        .expect("denied");
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.expect("body");
    assert!(body.contains("access_denied"), "{body}");
    assert!(body.contains("Try again"), "{body}");

    // Open redirect: even a correctly signed sign-in link may only return to a route host.
    let signer = portcullis::auth::UrlSigner::new(&base64_decode(SHARED_SECRET));
    for target in [
        "http://evil.test/",
        "https://app.test.evil.test/",
        "javascript:alert(1)",
    ] {
        let mut url =
            url::Url::parse(&s.url("authenticate.test", "/.pomerium/sign_in")).expect("url");
        url.query_pairs_mut()
            .append_pair("pomerium_redirect_uri", target);
        let signed = signer.sign_url(&url, Duration::from_secs(60));
        let resp = b.get_once(signed.as_str()).await;
        assert_eq!(resp.status(), 400, "{target}");
    }
    // An unsigned (or altered) sign-in link to a real route is refused too.
    let unsigned = b
        .get_once(&s.url(
            "authenticate.test",
            &format!(
                "/.pomerium/sign_in?pomerium_redirect_uri=http%3A%2F%2Fapp.test%3A{}%2F",
                s.port
            ),
        ))
        .await;
    assert_eq!(unsigned.status(), 400);
    // A forged hand-off on a route host.
    let handoff = b
        .get_once(&s.url(
            "app.test",
            "/.pomerium/callback/?portcullis_session=v1.x&portcullis_return=http%3A%2F%2Fapp.test%2F",
        ))
        .await;
    assert_eq!(handoff.status(), 400);
    assert!(
        !s.proxy.logs().contains(" status=500"),
        "{}",
        s.proxy.logs()
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test]
async fn an_expired_id_token_is_refreshed_without_a_second_login() {
    let s = Setup::start(serde_json::json!({"idTokenTTL": 3}), "").await;
    let b = s.browser();
    assert_eq!(
        b.visit_as(&s.url("app.test", "/"), "auth0|alice")
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let page = b.get(&s.url("app.test", "/later")).await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    assert!(page.login_action().is_none());
    let paths = hop_paths(&page);
    assert!(
        paths
            .iter()
            .any(|p| p == "302 authenticate.test/.pomerium/sign_in"),
        "{paths:#?}"
    );
    assert!(
        page.hops.iter().all(|h| !h.url.contains("/authorize")),
        "no new authorization: {paths:#?}"
    );
    assert_eq!(page.json()["assertion"]["valid"], true);
    let stats = s.idp.stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
    assert!(
        stats["tokenByGrant"]["refresh_token"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
}

#[tokio::test]
async fn sign_out_needs_a_post_and_then_sign_in_is_required() {
    let s = default_setup().await;
    let b = s.browser();
    assert_eq!(
        b.visit_as(&s.url("app.test", "/"), "auth0|alice")
            .await
            .status,
        200
    );
    // A plain GET (e.g. an <img> on another site) does not sign anyone out.
    let get = b.get(&s.url("app.test", "/.pomerium/sign_out")).await;
    assert_eq!(get.status, 400);
    assert!(get.body.contains("method=\"post\""), "{}", get.body);
    // Neither does a cross-site POST.
    let cross = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 400);
    assert_eq!(b.get(&s.url("app.test", "/")).await.status, 200);

    let resp = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .header("origin", format!("http://app.test:{}", s.port))
        .send()
        .await
        .expect("post");
    let out = b.follow(resp, Vec::new()).await;
    assert_eq!(out.status, 200, "{:#?}", out.hops);
    let paths = hop_paths(&out);
    for expected in [
        "302 app.test/.pomerium/sign_out",
        "302 authenticate.test/.pomerium/sign_out",
        "302 127.0.0.1/v2/logout",
        "200 authenticate.test/.pomerium/signed_out",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:#?}"
        );
    }
    assert!(!b.cookies(&s.url("app.test", "/")).contains("_pomerium="));
    assert!(
        !b.cookies(&s.url("authenticate.test", "/"))
            .contains("_pomerium_authenticate=")
    );
    // Both hosts need a new sign-in, at the IdP's login form.
    let again = b.get(&s.url("other.test", "/")).await;
    assert!(again.login_action().is_some(), "{:#?}", again.hops);
    let stats = s.idp.stats().await;
    assert_eq!(stats["logout"], 1, "{stats}");
}

#[tokio::test]
async fn auth0_roles_from_the_management_api_become_groups() {
    let s = Setup::with_management_api().await;
    let bob = s.browser();
    let page = bob.visit_as(&s.url("team.test", "/"), "auth0|bob").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    // This route does not pass identity headers.
    assert_eq!(page.json()["assertion"]["error"], "missing");
    let me: serde_json::Value = bob
        .client
        .get(s.url("team.test", "/.pomerium/"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let groups: Vec<&str> = me["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(
        groups.contains(&"viewer") && groups.contains(&"rol_viewer000000001"),
        "{groups:?}"
    );
    assert!(s.idp.stats().await["roles"].as_u64().unwrap_or(0) >= 1);

    // Roles read a moment ago are reused: another sign-in of bob costs no second call.
    let calls = s.idp.stats().await["roles"].as_u64().unwrap_or(0);
    let again = s.browser();
    let page = again.visit_as(&s.url("team.test", "/"), "auth0|bob").await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    assert_eq!(s.idp.stats().await["roles"].as_u64().unwrap_or(0), calls);
}

#[tokio::test]
async fn a_directory_outage_does_not_drop_roles_from_a_session() {
    let s = Setup::with_management_api().await;
    // The Management API rate-limits (as an attacker can make it do by exhausting the
    // tenant's quota): no session is issued without the roles — sign-in stops with a page
    // that says why and when to try again.
    s.idp
        .post(
            "/__test/roles-fail",
            Some(serde_json::json!({"status": 429, "retryAfter": 2})),
        )
        .await;
    let bob = s.browser();
    let page = bob.visit_as(&s.url("team.test", "/"), "auth0|bob").await;
    assert_eq!(page.status, 503, "{:#?}\n{}", page.hops, page.body);
    assert!(page.body.contains("roles"), "{}", page.body);
    assert!(page.body.contains("Try again"), "{}", page.body);
    assert!(!bob.cookies(&s.url("team.test", "/")).contains("_pomerium="));
    // While the Retry-After pause lasts, the API is not called again.
    let calls = s.idp.stats().await["roles"].as_u64().unwrap_or(0);
    let page = bob.get(&s.url("team.test", "/")).await;
    assert_eq!(page.status, 503, "{:#?}", page.hops);
    assert_eq!(s.idp.stats().await["roles"].as_u64().unwrap_or(0), calls);
    // The API answers again and the pause is over: sign-in completes with the roles.
    let client = reqwest::Client::new();
    client
        .delete(s.idp.url("/__test/roles-fail"))
        .send()
        .await
        .expect("reset");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let page = bob.get(&s.url("team.test", "/")).await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
}

#[tokio::test]
async fn a_new_provider_signing_key_is_fetched_once_and_sign_in_goes_on() {
    let mut s = default_setup().await;
    let b = s.browser();
    assert_eq!(
        b.visit_as(&s.url("app.test", "/"), "auth0|alice")
            .await
            .status,
        200
    );
    // The provider restarts on the same address with a new key (and forgets its sessions).
    let port = s.idp.port;
    s.idp.stop();
    s.idp = Idp::start_on(port, &s.idp_config);
    let fresh = s.browser();
    let page = fresh.visit_as(&s.url("app.test", "/"), "auth0|alice").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, s.proxy.logs());
    let logs = s.proxy.log_with("keys fetched again").await;
    assert!(logs.contains("keys fetched again"), "{logs}");
}

#[tokio::test]
async fn the_proxy_starts_before_the_provider_and_signs_in_once_it_is_up() {
    let port = support::free_port();
    let idp_port = support::free_port();
    let upstream = VerifyingUpstream::start().await;
    let issuer = format!("http://127.0.0.1:{idp_port}/");
    let yaml = proxy_yaml(port, "auth0", &issuer, &upstream.url(), "");
    let proxy = Proxy::start_on(port, &yaml, true, &[]).await;
    let b = Browser::new(port, HOSTS);
    let url = |host: &str| format!("http://{host}:{port}/");
    assert_eq!(b.get(&url("public.test")).await.status, 200);
    let down = b.get(&url("app.test")).await;
    assert_eq!(down.status, 503, "{:#?}", down.hops);
    assert!(down.body.contains("Try again"), "{}", down.body);
    let _idp = Idp::start_on(idp_port, &idp_config_for(port, serde_json::json!({})));
    let page = b.visit_as(&url("app.test"), "auth0|alice").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, proxy.logs());
}

#[tokio::test]
async fn a_generic_oidc_provider_signs_in_and_out_through_its_end_session_endpoint() {
    let s = Setup::start_as("oidc", serde_json::json!({}), "").await;
    let b = s.browser();
    let page = b.visit_as(&s.url("app.test", "/"), "auth0|alice").await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    let resp = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .header("origin", format!("http://app.test:{}", s.port))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 302);
    let next = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let resp = b.get_once(&next).await;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 302, "GET {next}\n{body}\n{}", s.proxy.logs());
    let logout = location.as_str();
    assert!(logout.starts_with(&s.idp.url("/oidc/logout?")), "{logout}");
    assert!(logout.contains("post_logout_redirect_uri="), "{logout}");
    assert!(logout.contains("client_id=portcullis-test"), "{logout}");
}

#[tokio::test]
async fn a_route_cookie_replayed_on_another_host_is_no_session() {
    let s = default_setup().await;
    let (b, _) = s.alice_on_app().await;
    // The cookie set for app.test, sent to other.test (a route host with the same policy).
    let cookie = b.cookies(&s.url("app.test", "/"));
    assert!(cookie.contains("_pomerium="), "{cookie}");
    let resp = reqwest::Client::builder()
        .resolve("other.test", ([127, 0, 0, 1], s.port).into())
        .build()
        .expect("client")
        .get(s.url("other.test", "/"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .expect("replay");
    assert_eq!(resp.status(), 401, "sealed for app.test only");
}

#[tokio::test]
async fn a_hand_off_link_is_accepted_once_and_only_by_its_browser() {
    let s = default_setup().await;
    let (_alice, page) = s.alice_on_app().await;
    let hand_off = hop_to(&page, "/.pomerium/callback/");
    // Another browser (no route-host nonce): refused, even within the link's minute.
    let other = Browser::new(s.port, HOSTS);
    let stolen = other.get(&hand_off).await;
    assert_eq!(stolen.status, 400, "{}", stolen.body);
    assert!(
        !other
            .cookies(&s.url("app.test", "/"))
            .contains("_pomerium=")
    );
    // Even with the browser's nonce (read from the signed sign-in link it was sent to), the
    // hand-off is refused the second time: already used.
    let nonce = page
        .hops
        .iter()
        .find_map(|h| {
            url::Url::parse(&h.url)
                .ok()?
                .query_pairs()
                .find(|(k, _)| k == "portcullis_browser")
                .map(|(_, v)| v.into_owned())
        })
        .expect("the sign-in link names the browser");
    let resp = Browser::new(s.port, HOSTS)
        .client
        .get(&hand_off)
        .header("cookie", format!("_pomerium_browser={nonce}"))
        .send()
        .await
        .expect("replay");
    assert_eq!(resp.status(), 400);
    let logs = s.proxy.log_with("already used").await;
    assert!(logs.contains("already used"), "{logs}");
}

#[tokio::test]
async fn the_assertion_endpoint_evaluates_the_routes_policy() {
    let s = default_setup().await;
    let (alice, _) = s.alice_on_app().await;
    let jwt = alice.get_once(&s.url("app.test", "/.pomerium/jwt")).await;
    assert_eq!(jwt.status(), 200);
    assert_eq!(jwt.headers()["content-type"], "application/jwt");
    // bob is signed in on app.test but its policy denies him: no assertion for him.
    let bob = s.browser();
    assert_eq!(
        bob.visit_as(&s.url("app.test", "/"), "auth0|bob")
            .await
            .status,
        403
    );
    let denied = bob.get_once(&s.url("app.test", "/.pomerium/jwt")).await;
    assert_eq!(denied.status(), 403);
    // A route that passes no identity headers has no assertion to give, even to alice.
    let page = alice
        .visit_as(&s.url("public.test", "/"), "auth0|alice")
        .await;
    assert_eq!(page.status, 200);
    let none = alice
        .client
        .get(s.url("public.test", "/.pomerium/jwt"))
        .send()
        .await
        .expect("jwt");
    assert!(
        none.status() == 404 || none.status() == 401,
        "{}",
        none.status()
    );
}

#[tokio::test]
async fn a_sign_out_post_without_origin_is_refused() {
    let s = default_setup().await;
    let (b, _) = s.alice_on_app().await;
    let resp = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400, "a confirmation page, not a sign-out");
    assert_eq!(b.get(&s.url("app.test", "/")).await.status, 200);
    // A browser's own form post says where it comes from.
    let resp = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 302);
}

/// `idp_request_params` reach the authorization request; the sign-in's own parameters cannot
/// be replaced through it (`idp_request_params_cannot_replace_state_or_nonce`).
#[tokio::test]
async fn idp_request_params_reach_the_authorization_request() {
    let s = Setup::start(
        serde_json::json!({}),
        "idp_request_params: {prompt: login, organization: org_123}",
    )
    .await;
    let page = s
        .browser()
        .visit_as(&s.url("app.test", "/"), "auth0|alice")
        .await;
    let authorize = hop_to(&page, "/authorize?");
    for param in ["prompt=login", "organization=org_123", "state=v1."] {
        assert!(authorize.contains(param), "{param} in {authorize}");
    }
    assert_eq!(
        page.status, 200,
        "sign-in still completes: {:#?}",
        page.hops
    );
}

/// `signout_redirect_url` is where the identity provider's logout sends the browser back to.
#[tokio::test]
async fn sign_out_returns_to_the_configured_page() {
    let s = Setup::start(
        serde_json::json!({}),
        "signout_redirect_url: https://www.example.com/goodbye",
    )
    .await;
    let (b, _) = s.alice_on_app().await;
    let resp = b
        .client
        .post(s.url("app.test", "/.pomerium/sign_out"))
        .header("origin", format!("http://app.test:{}", s.port))
        .send()
        .await
        .expect("post");
    // app host → authenticate host (a signed link) → the IdP's logout, naming the page.
    let to_authenticate = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = b.client.get(&to_authenticate).send().await.expect("get");
    assert_eq!(resp.status(), 302);
    let logout = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(logout.path(), "/v2/logout");
    let return_to: Vec<String> = logout
        .query_pairs()
        .filter(|(k, _)| k == "returnTo")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        return_to,
        vec!["https://www.example.com/goodbye".to_string()]
    );
}
