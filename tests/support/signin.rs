//! The sign-in set-up shared by the sign-in and fault tests: the Auth0 stand-in, `portcullis
//! serve` signing in through it, an upstream that verifies the assertion, and browsers.

use super::Proxy;
use super::idp::{Browser, Idp, VerifyingUpstream, idp_config, sign_in_yaml};

pub const HOSTS: &[&str] = &[
    "authenticate.test",
    "app.test",
    "other.test",
    "denied.test",
    "public.test",
    "team.test",
    "xss.test",
    "readonly.test",
];

pub struct Setup {
    pub idp: Idp,
    pub idp_config: serde_json::Value,
    pub proxy: Proxy,
    pub upstream: VerifyingUpstream,
    pub port: u16,
}

impl Setup {
    /// IdP with `idp_extra` merged into its config, proxy with `extra` settings.
    pub async fn start(idp_extra: serde_json::Value, extra: &str) -> Setup {
        Setup::start_as("auth0", idp_extra, extra).await
    }

    pub async fn start_as(provider: &str, idp_extra: serde_json::Value, extra: &str) -> Setup {
        Setup::start_with(provider, idp_extra, extra, &[]).await
    }

    /// The same with environment variables for the proxy. `{issuer}` and `{upstream}` in
    /// `extra` become the identity provider's issuer and the upstream's URL.
    pub async fn start_with(
        provider: &str,
        idp_extra: serde_json::Value,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Setup {
        Setup::start_routed(provider, idp_extra, extra, env, None).await
    }

    /// The default setup with every route going to `to` (an upstream of the test's own)
    /// instead of the verifying upstream, which still runs.
    pub async fn start_routing_to(to: &str) -> Setup {
        Setup::start_routed("auth0", serde_json::json!({}), "", &[], Some(to)).await
    }

    async fn start_routed(
        provider: &str,
        idp_extra: serde_json::Value,
        extra: &str,
        env: &[(&str, &str)],
        to: Option<&str>,
    ) -> Setup {
        let port = super::free_port();
        let config = idp_config_for(port, idp_extra);
        let idp = Idp::start(&config);
        let upstream = VerifyingUpstream::start().await;
        let extra = extra
            .replace("{issuer}", &idp.issuer)
            .replace("{upstream}", &upstream.url());
        let up = to.map_or_else(|| upstream.url(), str::to_owned);
        let yaml = proxy_yaml(port, provider, &idp.issuer, &up, &extra);
        let proxy = Proxy::start_on(port, &yaml, true, env).await;
        *upstream.jwks_from.lock().expect("lock") =
            Some((([127, 0, 0, 1], port).into(), format!("app.test:{port}")));
        Setup {
            idp,
            idp_config: config,
            proxy,
            upstream,
            port,
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.port, HOSTS)
    }

    /// The default setup with the Auth0 Management API's machine client configured.
    pub async fn with_management_api() -> Setup {
        // {"client_id":"portcullis-m2m","client_secret":"m2m-secret"}
        let account =
            "eyJjbGllbnRfaWQiOiJwb3J0Y3VsbGlzLW0ybSIsImNsaWVudF9zZWNyZXQiOiJtMm0tc2VjcmV0In0=";
        Setup::start(
            serde_json::json!({}),
            &format!("idp_service_account: {account}"),
        )
        .await
    }

    /// A browser signed in as alice on app.test (allowed there), and the page it ended on.
    pub async fn alice_on_app(&self) -> (Browser, super::idp::Page) {
        let b = self.browser();
        let page = b.visit_as(&self.url("app.test", "/"), "auth0|alice").await;
        assert_eq!(page.status, 200, "{:#?}", page.hops);
        (b, page)
    }
}

/// The URL of the first hop of `page` whose URL contains `fragment`.
pub fn hop_to(page: &super::idp::Page, fragment: &str) -> String {
    page.hops
        .iter()
        .find(|h| h.url.contains(fragment))
        .unwrap_or_else(|| panic!("no hop to {fragment}: {:#?}", page.hops))
        .url
        .clone()
}

pub fn idp_config_for(port: u16, idp_extra: serde_json::Value) -> serde_json::Value {
    let mut config = idp_config(&format!("http://authenticate.test:{port}"));
    if let (Some(c), Some(e)) = (config.as_object_mut(), idp_extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    config
}

/// The proxy's settings: sign-in through `issuer`, seven routes to `up`.
pub fn proxy_yaml(port: u16, provider: &str, issuer: &str, up: &str, extra: &str) -> String {
    format!(
        "{sign_in}jwt_claims_headers:
  X-Pomerium-Claim-Email: email
{extra}
routes:
  - from: http://app.test
    to: {up}
    description: \"The <b>admin</b> app\"
    logo_url: https://cdn.test/app.png
    pass_identity_headers: true
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
  - from: http://other.test
    to: {up}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
  - from: http://denied.test
    to: {up}
    policy:
      allow:
        and:
          - claim/https://example.com/roles: superuser
  - from: http://public.test
    to: {up}
    allow_public_unauthenticated_access: true
  - from: http://team.test
    to: {up}
    policy:
      allow:
        or:
          - groups: {{has: rol_viewer000000001}}
  - from: http://readonly.test
    to: {up}
    policy:
      allow:
        or:
          - accept: true
      deny:
        or:
          - http_path: {{starts_with: /admin}}
  - from: http://xss.test
    to: {up}
    policy:
      allow:
        and:
          - claim/https://example.com/roles: \"<script>alert(2)</script>\"
",
        sign_in = sign_in_yaml(port, provider, issuer)
    )
}

pub async fn default_setup() -> Setup {
    Setup::start(serde_json::json!({}), "").await
}

pub fn hop_paths(page: &super::idp::Page) -> Vec<String> {
    page.hops
        .iter()
        .map(|h| {
            let u = url::Url::parse(&h.url).expect("url");
            format!("{} {}{}", h.status, u.host_str().unwrap_or(""), u.path())
        })
        .collect()
}
