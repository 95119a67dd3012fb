//! API clients that present identity provider tokens instead of signing in (Pomerium's
//! `bearer_token_format` and `idp_access_token_allowed_audiences`), and upstreams that get a
//! Kubernetes service account token with the user impersonated. Real tokens come from the Auth0
//! stand-in (a real oidc-provider): an ID token through the authorization-code flow as alice, a
//! JWT access token through client credentials for the Management API audience.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::signin::Setup;

/// Routes besides the shared ones: `api.test` reads a plain bearer as an access token for the
/// Management API audience; `plain.test` leaves a plain bearer alone (only Pomerium's explicit
/// forms are tokens there); `kube.test` sends a service account token. Every plain bearer is
/// an ID token unless a route says otherwise.
const EXTRA: &str = "bearer_token_format: idp_identity_token
policy:
  - from: http://api.test
    to: {upstream}
    pass_identity_headers: true
    bearer_token_format: idp_access_token
    idp_access_token_allowed_audiences: [\"{issuer}api/v2/\"]
    policy:
      allow:
        and:
          - claim/gty: client-credentials
  - from: http://plain.test
    to: {upstream}
    bearer_token_format: default
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
  - from: http://kube-open.test
    to: {upstream}
    kubernetes_service_account_token_file: {sa_file}
    allow_public_unauthenticated_access: true
  - from: http://kube.test
    to: {upstream}
    kubernetes_service_account_token_file: {sa_file}
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
";

const SA_TOKEN: &str = "sa-token-e2e-0123456789";

struct Api {
    s: Setup,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start(idp_extra: Value) -> Api {
        Api::start_with(idp_extra, "").await
    }

    /// The same with more settings (YAML lines).
    async fn start_with(idp_extra: Value, settings: &str) -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let sa_file = dir.path().join("token");
        std::fs::write(&sa_file, format!("{SA_TOKEN}\n")).expect("token file");
        let extra = format!(
            "{settings}\n{}",
            EXTRA.replace("{sa_file}", &sa_file.display().to_string())
        );
        let s = Setup::start(idp_extra, &extra).await;
        let client = s.proxy.client_for(
            &[
                "app.test",
                "team.test",
                "public.test",
                "api.test",
                "plain.test",
                "kube.test",
                "kube-open.test",
            ],
            reqwest::Client::builder(),
        );
        Api {
            s,
            client,
            _dir: dir,
        }
    }

    /// GET `http://HOST/api` with these headers, as an API client (JSON answers).
    async fn get(
        &self,
        host: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut r = self
            .client
            .get(self.s.url(host, "/api"))
            .header("accept", "application/json");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let head = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, head)
    }

    /// GET `http://HOST/api` with `Authorization: Bearer TOKEN`.
    async fn bearer(&self, host: &str, token: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.get(host, &[("authorization", &bearer(token))]).await
    }

    /// An ID token for `login`, from the authorization-code flow with PKCE driven against the
    /// identity provider directly (the code comes back on the proxy's callback URL, which
    /// refuses it for lack of a state it issued, so the code is still unused).
    async fn id_token(&self, login: &str) -> String {
        let s = &self.s;
        let verifier = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let redirect = s.url("authenticate.test", "/oauth2/callback");
        let mut url = url::Url::parse(&format!("{}authorize", s.idp.issuer)).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "portcullis-test")
            .append_pair("redirect_uri", &redirect)
            .append_pair("scope", "openid profile email")
            .append_pair("state", "api-client")
            .append_pair("nonce", "api-client")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let page = s.browser().visit_as(url.as_str(), login).await;
        let back = page
            .hops
            .iter()
            .find(|h| h.url.starts_with(&redirect))
            .unwrap_or_else(|| panic!("no code came back: {:#?}", page.hops));
        let code = url::Url::parse(&back.url)
            .expect("callback url")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code");
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("client_id", "portcullis-test"),
            ("client_secret", "test-secret"),
            ("code_verifier", &verifier),
        ])
        .await["id_token"]
            .as_str()
            .expect("id_token")
            .to_string()
    }

    /// A JWT access token of the machine client for the Management API audience.
    async fn access_token(&self) -> String {
        let audience = format!("{}api/v2/", self.s.idp.issuer);
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "portcullis-m2m"),
            ("client_secret", "m2m-secret"),
            ("audience", &audience),
        ])
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    async fn token(&self, form: &[(&str, &str)]) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}oauth/token", self.s.idp.issuer))
            .form(form)
            .send()
            .await
            .expect("token request");
        assert_eq!(resp.status(), 200, "token endpoint");
        resp.json().await.expect("token json")
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The JWT's claims, decoded without verification.
fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

/// Asserts a 401 naming `why`, answered by the proxy itself (no redirect to sign-in).
fn assert_refused(answer: &(u16, Value, reqwest::header::HeaderMap), why: &str) {
    let (status, body, head) = answer;
    assert_eq!(*status, 401, "{body}");
    assert!(head.get("location").is_none(), "never a redirect: {head:?}");
    assert!(body.to_string().contains(why), "{why:?} in {body}");
}

#[tokio::test]
async fn an_api_client_with_an_id_token_reaches_a_claim_policy_route_with_its_identity() {
    let api = Api::start(json!({})).await;
    let token = api.id_token("auth0|alice").await;
    let auth = bearer(&token);
    for headers in [
        vec![("authorization", auth.as_str())],
        vec![("x-pomerium-idp-identity-token", token.as_str())],
    ] {
        let (status, body, _) = api.get("app.test", &headers).await;
        assert_eq!(status, 200, "{body}\n{}", api.s.proxy.logs());
        let seen = &body["headers"];
        assert_eq!(seen["x-pomerium-claim-email"], "alice@example.com");
        assert_eq!(body["assertion"]["valid"], true, "{body}");
        assert_eq!(body["assertion"]["claims"]["sub"], "auth0|alice");
        assert!(
            seen.get("authorization").is_none()
                && seen.get("x-pomerium-idp-identity-token").is_none(),
            "the token is not passed on: {seen}"
        );
    }
    // Where the route's format is `default`, a plain bearer is not read; the explicit form
    // still is. A public route that needs no identity reads no token: the bearer goes on.
    let (status, body, _) = api.bearer("plain.test", &token).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = api
        .get("plain.test", &[("x-pomerium-idp-identity-token", &token)])
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = api.bearer("public.test", "for-the-upstream").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["authorization"], "Bearer for-the-upstream");
    // Bob's token is verified just as well, and his roles do not pass the policy: a 403 for
    // him, not a sign-in.
    let bob = api.id_token("auth0|bob").await;
    let (status, body, _) = api.bearer("app.test", &bob).await;
    assert_eq!(status, 403, "{body}");
    let logs = api.s.proxy.log_with("app.test").await;
    assert!(
        !logs.contains(&token) && !logs.contains(&bob),
        "tokens are never logged"
    );
}

#[tokio::test]
async fn an_api_client_with_a_jwt_access_token_for_an_allowed_audience_is_let_through() {
    let api = Api::start(json!({})).await;
    let token = api.access_token().await;
    let scheme = format!("Pomerium-IDP-Access-Token {token}");
    for headers in [
        vec![("authorization", bearer(&token))],
        vec![("authorization", scheme)],
        vec![("x-pomerium-idp-access-token", token.clone())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = api.get("api.test", &headers).await;
        assert_eq!(status, 200, "{headers:?}: {body}\n{}", api.s.proxy.logs());
        assert_eq!(
            body["assertion"]["claims"]["sub"], "portcullis-m2m",
            "{body}"
        );
        assert!(body["headers"].get("authorization").is_none(), "{body}");
    }
    // app.test allows no access-token audience: the same token is refused there, with why.
    let refused = api
        .get("app.test", &[("x-pomerium-idp-access-token", &token)])
        .await;
    assert_refused(&refused, "idp_access_token_allowed_audiences");
}

#[tokio::test]
async fn bearer_token_with_wrong_audience_is_refused() {
    let api = Api::start(json!({})).await;
    let id_token = api.id_token("auth0|alice").await;
    let access = api.access_token().await;
    // An ID token (for our client id) offered as an access token for the API audience.
    let answer = api.bearer("api.test", &id_token).await;
    assert_refused(&answer, "another audience");
    // An access token for the API offered as an ID token.
    let answer = api.bearer("app.test", &access).await;
    assert_eq!(answer.0, 401, "{}", answer.1);
    assert!(answer.2.get("location").is_none());
}

#[tokio::test]
async fn tampered_bearer_token_is_refused() {
    let api = Api::start(json!({})).await;
    for (host, token) in [
        ("api.test", api.access_token().await),
        ("app.test", api.id_token("auth0|bob").await),
    ] {
        // Bob makes himself an admin (or the machine another client) and keeps the signature.
        let mut claims = claims_of(&token);
        claims["https://example.com/roles"] = json!(["admin"]);
        claims["sub"] = json!("auth0|alice");
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        let answer = api.bearer(host, &forged).await;
        assert_refused(&answer, "signature");
    }
}

#[tokio::test]
async fn expired_bearer_token_is_refused() {
    let api = Api::start(json!({"idTokenTTL": 1, "accessTokenTTL": 1})).await;
    let id_token = api.id_token("auth0|alice").await;
    let access = api.access_token().await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let answer = api.bearer("app.test", &id_token).await;
    assert_refused(&answer, "expired");
    let answer = api.bearer("api.test", &access).await;
    assert_refused(&answer, "expired");
}

#[tokio::test]
async fn bearer_token_signed_with_hs256_is_refused() {
    let api = Api::start(json!({})).await;
    let issuer = api.s.idp.issuer.clone();
    let now = chrono::Utc::now().timestamp();
    let hs256 = |claims: Value, key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("sign")
    };
    // An ID token for our client "signed" with the client secret, a guessable shared key.
    let id = hs256(
        json!({"iss": issuer, "aud": "portcullis-test", "sub": "auth0|mallory", "iat": now,
               "exp": now + 600, "https://example.com/roles": ["admin"]}),
        "test-secret",
    );
    let answer = api.bearer("app.test", &id).await;
    assert_refused(&answer, "HS256");
    // An access token for the API audience signed with "secret".
    let access = hs256(
        json!({"iss": issuer, "aud": format!("{issuer}api/v2/"), "sub": "portcullis-m2m",
               "gty": "client-credentials", "iat": now, "exp": now + 600}),
        "secret",
    );
    let answer = api.bearer("api.test", &access).await;
    assert_refused(&answer, "HS256");
    // And no signature at all.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        access.split('.').nth(1).expect("payload")
    );
    let answer = api.bearer("api.test", &none).await;
    assert_refused(&answer, "none");
}

#[tokio::test]
async fn a_bearer_token_gets_the_users_roles_and_a_503_when_they_cannot_be_read() {
    // {"client_id":"portcullis-m2m","client_secret":"m2m-secret"}
    let account =
        "eyJjbGllbnRfaWQiOiJwb3J0Y3VsbGlzLW0ybSIsImNsaWVudF9zZWNyZXQiOiJtMm0tc2VjcmV0In0=";
    let api = Api::start_with(json!({}), &format!("idp_service_account: {account}")).await;
    let alice = api.id_token("auth0|alice").await;
    let bob = api.id_token("auth0|bob").await;
    let (status, body, _) = api.bearer("app.test", &alice).await;
    assert_eq!(status, 200, "{body}\n{}", api.s.proxy.logs());
    let groups = body["assertion"]["claims"]["groups"].to_string();
    assert!(
        groups.contains("rol_admin0000000001"),
        "the role's id from the directory: {groups}"
    );

    // The directory fails: a token whose roles were never read is refused (fail closed) ...
    api.s
        .idp
        .post("/__test/roles-fail", Some(json!({"status": 503})))
        .await;
    let (status, body, head) = api.bearer("team.test", &bob).await;
    assert_eq!(status, 503, "{body}");
    assert!(head.get("retry-after").is_some(), "{head:?}");
    assert!(body.to_string().contains("roles"), "{body}");
    // ... while a token verified before keeps its identity until it expires.
    let (status, _, _) = api.bearer("app.test", &alice).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_service_account_token_reaches_the_upstream_with_the_user_impersonated() {
    let api = Api::start(json!({})).await;
    let token = api.id_token("auth0|alice").await;
    let (status, body, _) = api
        .get(
            "kube.test",
            &[
                ("authorization", &bearer(&token)),
                ("Impersonate-User", "system:admin"),
                ("impersonate_group", "system:masters"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", api.s.proxy.logs());
    let seen = &body["headers"];
    assert_eq!(seen["authorization"], format!("Bearer {SA_TOKEN}"));
    assert_eq!(seen["impersonate-user"], "alice@example.com");
    assert_eq!(seen["impersonate-group"], "admin");
    assert!(seen.get("impersonate_group").is_none(), "{seen}");
    // Nobody signed in gets nothing of the service account's.
    let (status, body, _) = api.get("kube.test", &[]).await;
    assert_eq!(status, 401, "{body}");
    // A route that lets anonymous requests in does not lend them the service account.
    let (status, body, _) = api.get("kube-open.test", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"].get("authorization").is_none(), "{body}");
    assert!(body["headers"].get("impersonate-user").is_none(), "{body}");
    // The token is never shown: not in the log, not in the route table.
    let routes = reqwest::get(format!(
        "http://127.0.0.1:{}/routes",
        api.s.proxy.metrics_port
    ))
    .await
    .expect("routes")
    .text()
    .await
    .expect("routes body");
    assert!(routes.contains("kube.test"), "{routes}");
    assert!(!routes.contains(SA_TOKEN));
    assert!(!api.s.proxy.logs().contains(SA_TOKEN));
}
