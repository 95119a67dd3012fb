//! Sign-in wired into the data plane, split along its seams:
//!
//! - [`authenticate`]: the authenticate service on the host of `authenticate_service_url`
//!   (`/.pomerium/sign_in`, `/oauth2/callback`, `/.pomerium/sign_out`, `/.pomerium/signed_out`);
//! - [`route_host`]: the endpoints every route host has (`/.pomerium/`, `/.pomerium/callback/`,
//!   `/.pomerium/sign_out`, `/.pomerium/jwt`, the JWKS), the sign-in redirect and the 403 page;
//! - [`sessions`]: route sessions opened from cookies (and cached), sessions built at sign-in;
//! - [`bearer`]: sessions of API clients that present an identity provider token (cached);
//! - [`identity`]: the identity headers sent upstream;
//! - [`rules`]: the pure rules (where sign-in may return to, who may sign out);
//! - [`error`]: [`SignInError`], turned into a page in one place.
//!
//! Handlers take the request and return a [`Reply`]; the proxy writes it. See
//! `docs/ARCHITECTURE.md`, "Sign-in".

mod authenticate;
mod bearer;
mod error;
mod identity;
mod route_host;
mod rules;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{CasedHeaderName, RequestHeader};
use url::Url;

pub use error::SignInError;
pub use identity::{IdentityHeaders, impersonation_headers};
pub use sessions::OpenSession;

use super::reply::{Page, Reply, Who};
use crate::auth::oidc::{Oidc, OidcConfig, OidcError};
use crate::auth::{
    AssertionCache, AssertionError, CookieOptions, CookieSealer, Directory, ManagementClient,
    ManagementError, SealKey, SigningKey, UrlSigner,
};
use crate::config::{IdpProvider, SameSite, Settings};

/// The query parameter of `/.pomerium/sign_in` naming the URL to return to (Pomerium's name).
pub const REDIRECT_PARAM: &str = "pomerium_redirect_uri";
/// The signed sign-in link's parameter carrying the route host's nonce of the browser that is
/// being sent to sign in (the hand-off is only accepted by that browser).
pub const BROWSER_PARAM: &str = "portcullis_browser";
/// The signed sign-out link's parameter naming the session it signs out.
pub const SESSION_PARAM: &str = "portcullis_sid";
/// Lifetime of a signed sign-in or sign-out link.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(5 * 60);

/// Why sign-in could not be set up from the settings (checked at start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("authenticate_service_url is set: {0} is required")]
    Missing(&'static str),
    #[error("authenticate_service_url {0} has no host or port")]
    AuthenticateUrl(Url),
    #[error("authenticate_service_url: {0}")]
    CallbackUrl(#[source] url::ParseError),
    #[error("cookie_secret must be 32 bytes")]
    CookieSecret,
    #[error("signing_key: {0}")]
    SigningKey(#[source] AssertionError),
    #[error("idp_service_account: {0}")]
    ServiceAccount(#[source] ManagementError),
    #[error("identity provider: {0}")]
    Oidc(#[source] OidcError),
    #[error("jwt_claims_headers: {0:?} is not a header name")]
    ClaimHeader(String),
}

/// Everything sign-in needs, built once from the settings at start.
pub struct SignIn {
    /// `authenticate_service_url`, path `/`.
    pub authenticate: Url,
    authenticate_host: String,
    authenticate_port: u16,
    key: SealKey,
    signer: UrlSigner,
    route_cookie: CookieOptions,
    route_sealer: CookieSealer,
    auth_cookie: CookieOptions,
    auth_sealer: CookieSealer,
    csrf_cookie: CookieOptions,
    /// On a route host: the nonce of a browser sent to sign in, checked at the hand-off.
    browser_cookie: CookieOptions,
    /// Hand-offs already used (each is accepted once).
    used_hand_offs: sessions::UsedHandOffs,
    cookie_expire: Duration,
    signing_key: SigningKey,
    jwks: Bytes,
    assertions: AssertionCache,
    sessions: sessions::SessionCache,
    /// Sessions of identity provider tokens presented by API clients, until they expire.
    tokens: bearer::TokenCache,
    /// Header name → claim name (`jwt_claims_headers`).
    claims_headers: Vec<(CasedHeaderName, String)>,
    oidc: Oidc,
    /// Auth0 roles (`idp_service_account`): cached per user, behind a circuit breaker.
    directory: Option<Directory>,
    /// Whether URLs of route hosts are `http://` (insecure_server).
    insecure: bool,
    /// Where the browser lands after signing out (`signout_redirect_url`); else our page.
    signout_redirect: Option<Url>,
    /// How long a session outlives its ID token while the provider cannot be reached.
    refresh_grace: sessions::RefreshGrace,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("authenticate", &self.authenticate.as_str())
            .finish_non_exhaustive()
    }
}

/// A request as sign-in handlers see it: the request head, its id (for pages) and whether the
/// client wants JSON.
pub struct Call<'a> {
    pub req: &'a RequestHeader,
    pub request_id: &'a str,
    /// How our pages look.
    pub brand: &'a crate::config::Branding,
}

impl Call<'_> {
    /// Whether a page for this request is given as JSON (the client's `Accept` asks for it
    /// first). Read when a page is written, not for every request: most requests get none.
    pub fn json(&self) -> bool {
        crate::proxy::request::wants_json(&self.req.headers)
    }
}

/// The time in whole seconds since 1970, as `chrono::Utc::now().timestamp()` gives it, without
/// making a calendar date: read for every signed-in request. Before 1970 (where `Utc::now`
/// panics) it rounds down, as chrono's `DateTime<Utc>` made from a `SystemTime` does.
pub fn now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // `timestamp` rounds down: 0.5 s before 1970 is -1.
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
}

impl SignIn {
    /// Sign-in for these settings; `None` when `authenticate_service_url` is not set (then a
    /// `login` decision answers 401). Missing secrets are generated with a warning.
    pub fn from_settings(s: &Settings) -> Result<Option<SignIn>, SetupError> {
        let Some(authenticate) = s.authenticate_service_url.clone() else {
            return Ok(None);
        };
        let provider = s.idp_provider.unwrap_or(IdpProvider::Oidc);
        let provider_url = s
            .idp_provider_url
            .clone()
            .ok_or(SetupError::Missing("idp_provider_url"))?;
        let client_id = s
            .idp_client_id
            .clone()
            .ok_or(SetupError::Missing("idp_client_id"))?;
        let client_secret = s
            .idp_client_secret
            .clone()
            .ok_or(SetupError::Missing("idp_client_secret"))?;
        let (Some(host), Some(authenticate_port)) = (
            authenticate.host_str(),
            authenticate.port_or_known_default(),
        ) else {
            return Err(SetupError::AuthenticateUrl(authenticate));
        };
        let authenticate_host = host.to_ascii_lowercase();
        let mut base = authenticate.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);

        let cookie_secret: [u8; 32] = match s.cookie_secret.as_ref() {
            Some(secret) => secret
                .as_bytes()
                .try_into()
                .map_err(|_| SetupError::CookieSecret)?,
            None => {
                tracing::warn!(
                    "cookie_secret is not set: using a random one, so sessions end when the process stops and replicas do not share them"
                );
                rand::random()
            }
        };
        let shared_secret: Vec<u8> = match s.shared_secret.as_ref() {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "shared_secret is not set: using a random one (replicas will not accept each other's sign-in links)"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        let signing_key = match s.signing_key.as_ref() {
            Some(pem) => SigningKey::from_pem(pem.as_str()).map_err(SetupError::SigningKey)?,
            None => {
                tracing::warn!(
                    "signing_key is not set: generated an ES256 key; upstreams must fetch /.well-known/pomerium/jwks.json again after every restart"
                );
                SigningKey::generate()
            }
        };
        let jwks = Bytes::from(signing_key.jwks().to_string());
        let route_cookie = CookieOptions::from_settings(s);
        let mut auth_cookie = route_cookie.with_name(&format!("{}_authenticate", s.cookie_name));
        // The authenticate host's cookie is only ever for that host.
        auth_cookie.domain = None;
        let mut csrf_cookie = auth_cookie.with_name(&format!("{}_csrf", s.cookie_name));
        csrf_cookie.max_age = crate::auth::signed::STATE_TTL;
        // The IdP sends the browser back with a cross-site top-level GET: Lax is needed.
        csrf_cookie.same_site = SameSite::Lax;
        // The route host's nonce comes back with the hand-off, a cross-site top-level GET too;
        // it is for the route host alone.
        let mut browser_cookie = route_cookie.with_name(&format!("{}_browser", s.cookie_name));
        browser_cookie.domain = None;
        browser_cookie.max_age = crate::auth::signed::STATE_TTL;
        browser_cookie.same_site = SameSite::Lax;

        let issuer = OidcConfig::issuer_for(provider, &provider_url);
        let redirect_url = base
            .join("oauth2/callback")
            .map_err(SetupError::CallbackUrl)?;
        let oidc = Oidc::new(OidcConfig {
            provider,
            issuer: issuer.clone(),
            client_id,
            client_secret,
            redirect_url,
            scopes: s.idp_scopes.clone(),
            extra_params: s.idp_request_params.clone(),
        })
        .map_err(SetupError::Oidc)?;
        let directory = match &s.idp_service_account {
            Some(account) => Some(Directory::new(
                ManagementClient::new(account, &issuer).map_err(SetupError::ServiceAccount)?,
            )),
            None => None,
        };
        let mut claims_headers = Vec::new();
        for (header, claim) in &s.jwt_claims_headers {
            let name = http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| SetupError::ClaimHeader(header.clone()))?;
            // Spelled as Pingora writes a `HeaderName` (as these always were), prepared once.
            claims_headers.push((CasedHeaderName::from(name), claim.clone()));
        }
        Ok(Some(SignIn {
            authenticate: base,
            authenticate_host,
            authenticate_port,
            key: SealKey::new(&cookie_secret),
            signer: UrlSigner::new(&shared_secret),
            route_sealer: CookieSealer::new(&cookie_secret, &route_cookie.name),
            auth_sealer: CookieSealer::new(&cookie_secret, &auth_cookie.name),
            route_cookie,
            auth_cookie,
            csrf_cookie,
            browser_cookie,
            used_hand_offs: sessions::UsedHandOffs::default(),
            cookie_expire: s.cookie_expire,
            signing_key,
            jwks,
            assertions: AssertionCache::new(10_000),
            sessions: sessions::SessionCache::default(),
            tokens: bearer::TokenCache::default(),
            claims_headers,
            oidc,
            directory,
            insecure: s.insecure_server,
            signout_redirect: s.signout_redirect_url.clone(),
            refresh_grace: sessions::RefreshGrace::default(),
        }))
    }

    /// The same, with another refresh grace (default 5 minutes).
    pub fn with_refresh_grace(mut self, grace: std::time::Duration) -> SignIn {
        self.refresh_grace = sessions::RefreshGrace(grace);
        self
    }

    /// Whether a request addressed the authenticate host.
    pub fn is_authenticate_host(&self, host: &str, port: u16) -> bool {
        host == self.authenticate_host && port == self.authenticate_port
    }

    /// The headers `jwt_claims_headers` names: only Portcullis sets them.
    pub fn claim_header_names(&self) -> impl Iterator<Item = &http::HeaderName> + Clone {
        self.claims_headers.iter().map(|(name, _)| name.name())
    }

    /// The signed sign-in URL on the authenticate host for a request to `return_to`, from the
    /// browser whose route-host nonce is `browser`.
    pub fn sign_in_url(&self, return_to: &Url, browser: &str) -> Url {
        let mut url = self.authenticate.clone();
        url.set_path("/.pomerium/sign_in");
        url.query_pairs_mut()
            .append_pair(REDIRECT_PARAM, return_to.as_str())
            .append_pair(BROWSER_PARAM, browser);
        self.signer.sign_url(&url, SIGN_IN_TTL)
    }

    /// What a route cookie is bound to: the `cookie_domain` it is shared across, else the host
    /// it was issued on.
    fn cookie_scope<'a>(&'a self, host: &'a str) -> &'a str {
        self.route_cookie.domain.as_deref().unwrap_or(host)
    }

    fn route_scheme(&self) -> &'static str {
        super::request::scheme(self.insecure)
    }

    /// Whether a request is a same-origin POST (by `Origin`, else `Sec-Fetch-Site`).
    fn same_origin_post(req: &RequestHeader, host: &str) -> bool {
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        rules::same_origin_post(
            &req.method,
            header("origin"),
            header("sec-fetch-site"),
            host,
        )
    }

    /// A sign-out that is neither a same-origin POST nor a signed link (a cross-site GET, say)
    /// gets this page: a button that POSTs to `form`, so nobody is signed out by a stray link.
    fn confirm_sign_out(call: &Call<'_>, form: &Url, email: Option<&str>) -> Reply {
        Reply::page(
            &Page {
                status: 400,
                title: "Sign out?",
                detail: "Use the button to sign out.",
                request_id: call.request_id,
                who: email.map_or(Who::Unsaid, Who::Email),
                sign_out: Some(form.to_string()),
                brand: Some(call.brand),
                ..Page::default()
            },
            call.json(),
        )
    }

    /// Try the identity provider's discovery until it answers (or shutdown).
    pub async fn warm_up(&self) {
        self.oidc.warm_up().await
    }
}

/// Background discovery of the identity provider at start (with retries): Portcullis serves
/// public routes while the provider is still down.
pub struct Discovery {
    pub sign_in: Arc<SignIn>,
}

impl Discovery {
    /// Its service name: Pingora's, and the `service` label of `portcullis_runtime_alive_tasks`.
    pub const NAME: &'static str = "identity provider discovery";
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Discovery {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        crate::metrics::count_tasks_of(Self::NAME);
        tokio::select! {
            _ = self.sign_in.warm_up() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Test fixtures: settings and sessions built in code.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::auth::SessionData;

    /// Sign-in with an Auth0 tenant and generated secrets; the authenticate host is
    /// `auth.example.com`.
    pub fn sign_in() -> SignIn {
        let settings = Settings::parse(
            "authenticate_service_url: https://auth.example.com
idp_provider: auth0
idp_provider_url: https://tenant.auth0.com
idp_client_id: c
idp_client_secret: s
insecure_server: false
",
            "t.yaml",
            |_| None,
        )
        .unwrap();
        SignIn::from_settings(&settings).unwrap().unwrap()
    }

    /// Alice, with two roles, two groups and a claim that cannot be a header value.
    pub fn session() -> SessionData {
        let mut claims = std::collections::BTreeMap::new();
        claims.insert(
            "https://example.com/roles".to_string(),
            vec!["admin".into(), "dev".into()],
        );
        claims.insert("bad".to_string(), vec!["a\nb".into()]);
        claims.insert("n".to_string(), vec![3.into()]);
        SessionData {
            user: "auth0|alice".into(),
            email: "alice@example.com".into(),
            claims,
            groups: vec!["g1".into(), "g2".into()],
            name: None,
            sid: "s".into(),
            issued_at: 0,
            expires_at: 10,
            id_token_expires_at: 5,
            refresh_token: None,
        }
    }

    /// A request head for `url` with these headers.
    pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let url = Url::parse(url).unwrap();
        let pq = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = RequestHeader::build(method, pq.as_bytes(), None).unwrap();
        req.insert_header("host", crate::auth::host_and_port(&url).unwrap())
            .unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock read for every signed-in request agrees with chrono's (read around it).
    #[test]
    fn now_is_chronos_timestamp() {
        let before = chrono::Utc::now().timestamp();
        let ours = super::now();
        let after = chrono::Utc::now().timestamp();
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }

    #[test]
    fn settings_build_sign_in_with_generated_secrets() {
        let a = fixtures::sign_in();
        assert!(a.is_authenticate_host("auth.example.com", 443));
        assert!(!a.is_authenticate_host("auth.example.com", 80));
        assert_eq!(a.oidc.config().issuer.as_str(), "https://tenant.auth0.com/");
        assert_eq!(
            a.oidc.config().redirect_url.as_str(),
            "https://auth.example.com/oauth2/callback"
        );
        let link = a.sign_in_url(&Url::parse("https://app.example.com/x?y=1").unwrap(), "b");
        assert_eq!(link.path(), "/.pomerium/sign_in");
        assert!(a.signer.verify_url(&link, now()).is_ok());
        let no_auth = Settings::parse("insecure_server: true\n", "t.yaml", |_| None).unwrap();
        assert!(SignIn::from_settings(&no_auth).unwrap().is_none());
        // Incomplete sign-in settings are refused where they are read.
        assert!(
            Settings::parse(
                "authenticate_service_url: https://auth.example.com\n",
                "t.yaml",
                |_| None,
            )
            .is_err()
        );
    }
}
