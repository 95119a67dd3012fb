//! Sign-in wired into the data plane: the authenticate service (`/oauth2/callback`,
//! `/.pomerium/sign_in`, `/.pomerium/sign_out`, `/.pomerium/signed_out` on the host of
//! `authenticate_service_url`), the endpoints every route host has (`/.pomerium/`,
//! `/.pomerium/callback/`, `/.pomerium/sign_out`, `/.pomerium/jwt`,
//! `/.well-known/pomerium/jwks.json`), session cookies and identity headers for upstreams.
//!
//! See `docs/ARCHITECTURE.md`, "Sign-in flow".

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use url::Url;

use crate::auth::assertion::JWKS_PATH;
use crate::auth::oidc::{Oidc, OidcConfig, SignedIn, groups_from_claims};
use crate::auth::signed::CALLBACK_PATH;
use crate::auth::{
    AssertionCache, CookieOptions, CookieSealer, HandOff, ManagementClient, OAuthState, SealKey,
    SessionData, SigningKey, UrlSigner, flatten_claims, host_and_port, new_session_id,
};
use crate::config::{IdpProvider, SameSite, Settings};
use crate::routes::RouteTable;

/// How many opened sessions [`Auth::route_session`] keeps.
const SESSION_CACHE_CAPACITY: usize = 10_000;

/// A route session as opened from its cookie, with the identity the policy engine evaluates.
#[derive(Debug)]
pub struct OpenSession {
    pub data: SessionData,
    pub identity: crate::ppl::Identity,
}

/// The query parameter of `/.pomerium/sign_in` naming the URL to return to (Pomerium's name).
pub const REDIRECT_PARAM: &str = "pomerium_redirect_uri";
/// Lifetime of a signed sign-in or sign-out link.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(5 * 60);

/// Everything sign-in needs, built once from the settings at start.
pub struct Auth {
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
    cookie_expire: Duration,
    pub signing_key: SigningKey,
    pub jwks: Bytes,
    pub assertions: AssertionCache,
    /// Opened route sessions by cookie value, so a signed-in user's requests skip decryption,
    /// parsing and building the policy identity. Bounded; entries are re-checked for expiry.
    /// Opened route sessions by the last characters of their sealed cookie value (the AEAD
    /// tag, unique per sealed value), each with the whole value to compare on a hit: hashing a
    /// short key instead of a kilobyte-long cookie keeps the lookup cheap on every request.
    sessions: std::sync::RwLock<std::collections::HashMap<String, (String, Arc<OpenSession>)>>,
    /// Header name → claim name (`jwt_claims_headers`).
    pub claims_headers: Vec<(http::HeaderName, String)>,
    pub oidc: Oidc,
    management: Option<ManagementClient>,
    /// Whether URLs of route hosts are `http://` (insecure_server).
    insecure: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("authenticate", &self.authenticate.as_str())
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Auth {
    /// Sign-in for these settings; `None` when `authenticate_service_url` is not set (then a
    /// `login` decision answers 401). Missing secrets are generated with a warning.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Option<Auth>> {
        let Some(authenticate) = s.authenticate_service_url.clone() else {
            return Ok(None);
        };
        let provider = s.idp_provider.unwrap_or(IdpProvider::Oidc);
        let provider_url = s.idp_provider_url.clone().ok_or_else(|| {
            anyhow::anyhow!("authenticate_service_url is set: idp_provider_url is required")
        })?;
        let client_id = s.idp_client_id.clone().ok_or_else(|| {
            anyhow::anyhow!("authenticate_service_url is set: idp_client_id is required")
        })?;
        let client_secret = s.idp_client_secret.clone().ok_or_else(|| {
            anyhow::anyhow!("authenticate_service_url is set: idp_client_secret is required")
        })?;
        let authenticate_host = authenticate
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("authenticate_service_url has no host"))?
            .to_ascii_lowercase();
        let authenticate_port = authenticate
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("authenticate_service_url has no port"))?;
        let mut base = authenticate.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);

        let cookie_secret: [u8; 32] = match s.cookie_secret.as_ref() {
            Some(secret) => secret
                .as_bytes()
                .try_into()
                .map_err(|_| anyhow::anyhow!("cookie_secret must be 32 bytes"))?,
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
            Some(pem) => SigningKey::from_pem(pem.as_str())
                .map_err(|e| anyhow::anyhow!("signing_key: {e}"))?,
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

        let issuer = OidcConfig::issuer_for(provider, &provider_url);
        let redirect_url = base.join("oauth2/callback")?;
        let oidc = Oidc::new(OidcConfig {
            provider,
            issuer: issuer.clone(),
            client_id,
            client_secret,
            redirect_url,
            scopes: s.idp_scopes.clone(),
        })?;
        let management = match &s.idp_service_account {
            Some(account) => Some(
                ManagementClient::new(account, &issuer)
                    .map_err(|e| anyhow::anyhow!("idp_service_account: {e}"))?,
            ),
            None => None,
        };
        let mut claims_headers = Vec::new();
        for (header, claim) in &s.jwt_claims_headers {
            let name = http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                anyhow::anyhow!("jwt_claims_headers: {header:?} is not a header name")
            })?;
            claims_headers.push((name, claim.clone()));
        }
        Ok(Some(Auth {
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
            cookie_expire: s.cookie_expire,
            signing_key,
            jwks,
            assertions: AssertionCache::new(10_000),
            sessions: std::sync::RwLock::new(std::collections::HashMap::new()),
            claims_headers,
            oidc,
            management,
            insecure: s.insecure_server,
        }))
    }

    /// The route cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.route_cookie.name
    }

    /// Whether a request addressed the authenticate host.
    pub fn is_authenticate_host(&self, host: &str, port: u16) -> bool {
        host == self.authenticate_host && port == self.authenticate_port
    }

    /// The route-host session in a `Cookie` header: `None` when absent, tampered, truncated,
    /// sealed under another name or key, expired, or when its ID token has expired (a browser
    /// is then sent through sign-in, which refreshes silently).
    pub fn route_session(&self, cookie_header: &str, now: i64) -> Option<Arc<OpenSession>> {
        let value = self.route_cookie.read(cookie_header)?;
        let fresh = |s: &OpenSession| now < s.data.expires_at && !s.data.id_token_expired(now);
        let key = session_cache_key(&value);
        {
            let cache = self.sessions.read().unwrap_or_else(|e| e.into_inner());
            if let Some((whole, hit)) = cache.get(key)
                && whole == &value
            {
                return fresh(hit).then(|| hit.clone());
            }
        }
        let data = self.route_sealer.open_at(&value, now).ok()?;
        let open = Arc::new(OpenSession {
            identity: data.identity(),
            data,
        });
        let mut cache = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SESSION_CACHE_CAPACITY {
            cache.retain(|_, (_, s)| fresh(s));
            if cache.len() >= SESSION_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key.to_string(), (value.clone(), open.clone()));
        drop(cache);
        fresh(&open).then_some(open)
    }

    /// A `Cookie` header without the session cookie (and its chunks), so upstreams never see
    /// it. `None` when nothing else is left.
    pub fn without_session_cookie(&self, header: &str) -> Option<String> {
        let name = self.route_cookie.name.as_str();
        let ours = |n: &str| {
            n == name
                || n.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        };
        let kept: Vec<&str> = header
            .split(';')
            .map(str::trim)
            .filter(|part| {
                let n = part.split_once('=').map_or(*part, |(n, _)| n).trim();
                !part.is_empty() && !ours(n)
            })
            .collect();
        if kept.is_empty() {
            None
        } else {
            Some(kept.join("; "))
        }
    }

    /// The signed sign-in URL on the authenticate host for a request to `return_to`.
    pub fn sign_in_url(&self, return_to: &Url) -> Url {
        let mut url = self.authenticate.clone();
        url.set_path("/.pomerium/sign_in");
        url.query_pairs_mut()
            .append_pair(REDIRECT_PARAM, return_to.as_str());
        self.signer.sign_url(&url, SIGN_IN_TTL)
    }

    fn route_scheme(&self) -> &'static str {
        if self.insecure { "http" } else { "https" }
    }

    /// Session data for a user the provider just signed in (or refreshed): groups from the
    /// Management API when configured (role names and ids) plus the claim-based groups.
    async fn session_from(&self, signed_in: SignedIn, sid: Option<String>) -> SessionData {
        let mut groups = groups_from_claims(&signed_in.claims);
        if let Some(m) = &self.management {
            match m.user_roles(&signed_in.subject).await {
                Ok(roles) => {
                    for r in roles {
                        for g in [r.name, r.id] {
                            if !groups.contains(&g) {
                                groups.push(g);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Auth0 Management API roles unavailable: keeping the groups from the claims");
                }
            }
        }
        let text = |name: &str| {
            signed_in
                .claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let now = now();
        SessionData {
            user: signed_in.subject.clone(),
            email: text("email").unwrap_or_default(),
            name: text("name"),
            claims: flatten_claims(&serde_json::Value::Object(signed_in.claims.clone())),
            groups,
            sid: sid.unwrap_or_else(new_session_id),
            issued_at: now,
            expires_at: now.saturating_add(self.cookie_expire.as_secs() as i64),
            id_token_expires_at: signed_in.id_token_expires_at,
            refresh_token: signed_in.refresh_token,
        }
    }

    /// The identity headers for an allowed request: the assertion (cached per session and
    /// route host) and the `jwt_claims_headers`.
    pub fn identity_headers(
        &self,
        route_host: &str,
        session: &SessionData,
        out: &mut Vec<(http::HeaderName, String)>,
    ) {
        match self
            .assertions
            .get_or_sign(&self.signing_key, route_host, session, now())
        {
            Ok(token) => out.push((
                http::HeaderName::from_static("x-pomerium-jwt-assertion"),
                token,
            )),
            Err(e) => tracing::error!(error = %e, "cannot sign the identity assertion"),
        }
        for (header, claim) in &self.claims_headers {
            if let Some(value) = claim_text(session, claim) {
                out.push((header.clone(), value));
            }
        }
    }
}

/// The cache key of a sealed cookie value: its last 24 characters (they encode the AEAD tag).
fn session_cache_key(value: &str) -> &str {
    let mut start = value.len().saturating_sub(24);
    while !value.is_char_boundary(start) {
        start -= 1;
    }
    &value[start..]
}

/// A claim of the session as header text (lists joined by commas). `email`, `user`, `sub`,
/// `groups` and `name` come from the session's own fields.
fn claim_text(session: &SessionData, claim: &str) -> Option<String> {
    match claim {
        "email" => return Some(session.email.clone()).filter(|s| !s.is_empty()),
        "user" | "sub" => return Some(session.user.clone()),
        "groups" => return Some(session.groups.join(",")),
        "name" => return session.name.clone(),
        _ => {}
    }
    let values = session.claims.get(claim)?;
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let text = parts.join(",");
    // Header values may not hold control characters.
    if text.bytes().any(|b| b < 0x20 && b != b'\t') {
        return None;
    }
    Some(text)
}

/// Background discovery of the identity provider at start (with retries).
pub struct Discovery {
    pub shared: std::sync::Arc<super::Shared>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Discovery {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(auth) = self.shared.auth.load_full() else {
            return;
        };
        tokio::select! {
            _ = auth.oidc.warm_up() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Whether the client prefers HTML (a browser) to JSON.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The full URL of a request: scheme, `Host` as sent, path and query.
pub fn request_url(session: &Session, scheme: &str) -> Option<Url> {
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Url::parse(&format!("{scheme}://{host}{pq}")).ok()
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A page Portcullis writes for sign-in: status, title, text, links, and for JSON clients the
/// same as an object.
pub struct AuthPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub detail: &'a str,
    pub request_id: &'a str,
    pub reasons: &'a [&'a str],
    /// The signed-in user's email, when there is one.
    pub email: Option<&'a str>,
    /// Link label and URL.
    pub links: Vec<(&'a str, String)>,
    /// A sign-out button (POST to this URL).
    pub sign_out: Option<String>,
}

use super::pages::escape;

impl AuthPage<'_> {
    pub fn render(&self, json: bool) -> (&'static str, Bytes) {
        if json {
            let mut v = serde_json::json!({
                "status": self.status,
                "error": self.title,
                "detail": self.detail,
                "request_id": self.request_id,
                "reasons": self.reasons,
            });
            if let Some(email) = self.email {
                v["email"] = email.into();
            }
            for (label, url) in &self.links {
                if *label == "Try again" || *label == "Sign in" {
                    v["retry"] = url.as_str().into();
                }
            }
            if let Some(url) = &self.sign_out {
                v["sign_out"] = url.as_str().into();
            }
            return ("application/json", Bytes::from(v.to_string()));
        }
        let mut body = format!("<p>{}</p>", escape(self.detail));
        if !self.reasons.is_empty() {
            body.push_str("<p>Why:</p><ul>");
            for r in self.reasons {
                body.push_str(&format!("<li><code>{}</code></li>", escape(r)));
            }
            body.push_str("</ul>");
        }
        if let Some(email) = self.email {
            body.push_str(&format!(
                "<p>Signed in as <strong>{}</strong>.</p>",
                escape(email)
            ));
        }
        for (label, url) in &self.links {
            body.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>",
                escape(url),
                escape(label)
            ));
        }
        if let Some(url) = &self.sign_out {
            body.push_str(&format!(
                "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
                escape(url)
            ));
        }
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}\
             code{{background:#f3f3f3;padding:0 .3em}}small{{color:#777}}</style></head>\
             <body><h1>{title}</h1>{body}\
             <p><small>Request id: <code>{rid}</code></small></p></body></html>\n",
            title = escape(self.title),
            rid = escape(self.request_id),
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    }
}

/// Writes a whole response: status, headers (repeatable, e.g. `Set-Cookie`) and a body.
pub async fn write(
    session: &mut Session,
    status: u16,
    headers: &[(&str, String)],
    body: Option<(&str, Bytes)>,
    request_id: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 4))?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
    for (k, v) in headers {
        resp.append_header(k.to_string(), v.as_str())?;
    }
    let body = body.map(|(ct, b)| (ct.to_string(), b));
    match &body {
        Some((ct, b)) => {
            resp.insert_header(http::header::CONTENT_TYPE, ct.as_str())?;
            resp.insert_header(http::header::CONTENT_LENGTH, b.len().to_string())?;
        }
        None => {
            resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
        }
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_none();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if let (Some((_, b)), false) = (body, session.req_header().method == http::Method::HEAD) {
        session.write_response_body(Some(b), true).await?;
    }
    Ok(())
}

/// A sign-out that is neither a same-origin POST nor a signed link (a cross-site GET, say)
/// gets this page: a button that POSTs to `form`, so nobody is signed out by a stray link.
async fn confirm_sign_out(
    session: &mut Session,
    form: &Url,
    email: Option<&str>,
    request_id: &str,
) -> Result<()> {
    let confirm = AuthPage {
        status: 400,
        title: "Sign out?",
        detail: "Use the button to sign out.",
        request_id,
        reasons: &[],
        email,
        links: vec![],
        sign_out: Some(form.to_string()),
    };
    page(session, confirm, &[]).await
}

async fn page(session: &mut Session, page: AuthPage<'_>, headers: &[(&str, String)]) -> Result<()> {
    let accept = session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let json = super::pages::wants_json(accept);
    let (ct, body) = page.render(json);
    write(
        session,
        page.status,
        headers,
        Some((ct, body)),
        page.request_id,
    )
    .await
}

fn redirect_headers(location: &Url, cookies: Vec<String>) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> =
        cookies.into_iter().map(|c| ("set-cookie", c)).collect();
    h.push(("location", location.to_string()));
    h
}

fn cookie_header(session: &Session) -> Option<String> {
    let values: Vec<&str> = session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join("; "))
    }
}

/// Whether a POST comes from a page of `origin_host` (or states no origin, as non-browser
/// clients do): cross-site forms cannot sign anyone out.
fn same_origin_post(session: &Session, host_with_port: &str) -> bool {
    let req = session.req_header();
    if req.method != http::Method::POST {
        return false;
    }
    match req
        .headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(origin) => Url::parse(origin)
            .ok()
            .and_then(|u| host_and_port(&u))
            .is_some_and(|h| h.eq_ignore_ascii_case(host_with_port)),
    }
}

impl Auth {
    /// Sign-out happens only on a same-origin POST or a link we signed (no CSRF sign-out).
    fn sign_out_allowed(&self, session: &Session, host: &str, url: &Url, now: i64) -> bool {
        same_origin_post(session, host) || self.signer.verify_url(url, now).is_ok()
    }

    /// Whether `url` may be returned to after sign-in: http(s), a host some route serves, not
    /// the authenticate host. Anything else would be an open redirect.
    fn allowed_return(&self, url: &Url, table: &RouteTable) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        url.scheme() == self.route_scheme()
            && table.has_host(&host)
            && !self.is_authenticate_host(&host, url.port_or_known_default().unwrap_or(0))
    }

    /// Answers a request to the authenticate host. Always writes a response.
    pub async fn authenticate_endpoint(
        &self,
        session: &mut Session,
        table: &RouteTable,
        request_id: &str,
    ) -> Result<()> {
        let path = session.req_header().uri.path().to_string();
        let Some(url) = request_url(session, self.authenticate.scheme()) else {
            return self
                .fail(
                    session,
                    400,
                    "Bad request",
                    "The request URL is not valid.",
                    None,
                    request_id,
                )
                .await;
        };
        match path.as_str() {
            "/.pomerium/sign_in" => self.sign_in(session, &url, table, request_id).await,
            "/oauth2/callback" => self.callback(session, &url, table, request_id).await,
            "/.pomerium/sign_out" => self.authenticate_sign_out(session, &url, request_id).await,
            "/.pomerium/signed_out" => {
                page(
                    session,
                    AuthPage {
                        status: 200,
                        title: "Signed out",
                        detail: "You are signed out. Close this window, or go back to the application to sign in again.",
                        request_id,
                        reasons: &[],
                        email: None,
                        links: vec![],
                        sign_out: None,
                    },
                    &[],
                )
                .await
            }
            _ => self.fail(session, 404, "Not Found", "The authenticate service has no such page.", None, request_id).await,
        }
    }

    async fn fail(
        &self,
        session: &mut Session,
        status: u16,
        title: &str,
        detail: &str,
        retry: Option<String>,
        request_id: &str,
    ) -> Result<()> {
        page(
            session,
            AuthPage {
                status,
                title,
                detail,
                request_id,
                reasons: &[],
                email: None,
                links: retry.map(|u| vec![("Try again", u)]).unwrap_or_default(),
                sign_out: None,
            },
            &[],
        )
        .await
    }

    async fn sign_in(
        &self,
        session: &mut Session,
        url: &Url,
        table: &RouteTable,
        request_id: &str,
    ) -> Result<()> {
        let return_to = query_param(url, REDIRECT_PARAM).and_then(|u| Url::parse(&u).ok());
        let return_to = match return_to {
            Some(u) if self.allowed_return(&u, table) => u,
            Some(_) => {
                return self
                    .fail(
                        session,
                        400,
                        "Sign-in refused",
                        "The address to return to after sign-in is not one of this proxy's routes.",
                        None,
                        request_id,
                    )
                    .await;
            }
            None => {
                return self
                    .fail(
                        session,
                        400,
                        "Sign-in refused",
                        "The sign-in link names no address to return to.",
                        None,
                        request_id,
                    )
                    .await;
            }
        };
        let now = now();
        if let Err(e) = self.signer.verify_url(url, now) {
            tracing::info!(reason = %e, "sign-in link refused");
            return self.fail(session, 400, "Sign-in link expired or invalid", "This sign-in link is not valid any more. Go back to the application to start again.", Some(return_to.to_string()), request_id).await;
        }
        let cookies = cookie_header(session);
        // Single sign-on: a session on the authenticate host is handed to the route host.
        let existing = cookies
            .as_deref()
            .and_then(|c| self.auth_cookie.read(c))
            .and_then(|v| self.auth_sealer.open_at(&v, now).ok());
        if let Some(existing) = existing {
            if !existing.id_token_expired(now) {
                return self
                    .hand_off(session, &existing, &return_to, vec![], request_id)
                    .await;
            }
            if let Some(rt) = existing.refresh_token.clone() {
                match self.oidc.refresh(&rt).await {
                    Ok(signed_in) => {
                        let fresh = self
                            // A new session id: assertions cached for the old one (with the
                            // old groups) are not reused.
                            .session_from(signed_in, None)
                            .await;
                        let set = self
                            .auth_cookie
                            .set_cookie_headers(&self.auth_sealer.seal(&fresh), cookies.as_deref());
                        tracing::info!("session refreshed with the refresh token");
                        return self
                            .hand_off(session, &fresh, &return_to, set, request_id)
                            .await;
                    }
                    Err(e) => tracing::info!(error = %e, "silent refresh failed: signing in again"),
                }
            }
        }
        // A new sign-in at the provider.
        let verifier = crate::auth::oidc::new_pkce_verifier();
        let state = OAuthState::new(&return_to, &verifier, now);
        let sealed = state.seal(&self.key);
        match self
            .oidc
            .authorize_url(&sealed, &state.nonce, &verifier)
            .await
        {
            Ok(authorize) => {
                let set = self.csrf_cookie.set_cookie_headers(&state.nonce, None);
                write(
                    session,
                    302,
                    &redirect_headers(&authorize, set),
                    None,
                    request_id,
                )
                .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start sign-in");
                self.fail(
                    session,
                    503,
                    "Identity provider unavailable",
                    "The identity provider cannot be reached right now.",
                    Some(return_to.to_string()),
                    request_id,
                )
                .await
            }
        }
    }

    async fn hand_off(
        &self,
        session: &mut Session,
        data: &SessionData,
        return_to: &Url,
        mut cookies: Vec<String>,
        request_id: &str,
    ) -> Result<()> {
        let Some(target) = HandOff::callback_url(&self.key, &self.signer, data, return_to, now())
        else {
            return self
                .fail(
                    session,
                    400,
                    "Sign-in refused",
                    "The address to return to has no host.",
                    None,
                    request_id,
                )
                .await;
        };
        cookies.shrink_to_fit();
        write(
            session,
            302,
            &redirect_headers(&target, cookies),
            None,
            request_id,
        )
        .await
    }

    async fn callback(
        &self,
        session: &mut Session,
        url: &Url,
        table: &RouteTable,
        request_id: &str,
    ) -> Result<()> {
        let now = now();
        let Some(state_text) = query_param(url, "state") else {
            return self
                .fail(
                    session,
                    400,
                    "Sign-in failed",
                    "The identity provider's answer has no state.",
                    None,
                    request_id,
                )
                .await;
        };
        // Opened as of the earliest time so that an expired state still says where to try again.
        let state = match OAuthState::open(&self.key, &state_text, i64::MIN) {
            Ok(s) if now >= s.expires_at => {
                let retry = Url::parse(&s.return_url)
                    .ok()
                    .filter(|u| self.allowed_return(u, table))
                    .map(|u| u.to_string());
                return self
                    .fail(
                        session,
                        400,
                        "Sign-in expired",
                        "The sign-in took too long.",
                        retry,
                        request_id,
                    )
                    .await;
            }
            Ok(s) => s,
            Err(e) => {
                tracing::info!(reason = %e, "sign-in callback with a forged or damaged state");
                return self.fail(session, 400, "Sign-in failed", "The sign-in answer could not be verified (its state is not one this proxy issued).", None, request_id).await;
            }
        };
        let retry = Url::parse(&state.return_url)
            .ok()
            .filter(|u| self.allowed_return(u, table));
        let retry_text = retry.as_ref().map(|u| u.to_string());
        if let Some(error) = query_param(url, "error") {
            let description = query_param(url, "error_description").unwrap_or_default();
            tracing::info!(error = %error, description = %description, "the identity provider refused the sign-in");
            let detail = if description.is_empty() {
                format!("The identity provider refused the sign-in ({error}).")
            } else {
                format!("The identity provider refused the sign-in ({error}: {description}).")
            };
            let status = if error == "access_denied" { 403 } else { 400 };
            return self
                .fail(
                    session,
                    status,
                    "Sign-in refused",
                    &detail,
                    retry_text,
                    request_id,
                )
                .await;
        }
        let cookies = cookie_header(session);
        let nonce_ok = cookies
            .as_deref()
            .and_then(|c| self.csrf_cookie.read(c))
            .is_some_and(|n| state.matches_nonce(&n));
        if !nonce_ok {
            return self
                .fail(
                    session,
                    400,
                    "Sign-in failed",
                    "This sign-in was started in another browser, or its cookie was lost.",
                    retry_text,
                    request_id,
                )
                .await;
        }
        let Some(return_to) = retry else {
            return self
                .fail(
                    session,
                    400,
                    "Sign-in refused",
                    "The address to return to is not one of this proxy's routes.",
                    None,
                    request_id,
                )
                .await;
        };
        let Some(code) = query_param(url, "code") else {
            return self
                .fail(
                    session,
                    400,
                    "Sign-in failed",
                    "The identity provider's answer has no code.",
                    retry_text,
                    request_id,
                )
                .await;
        };
        let signed_in = match self
            .oidc
            .exchange_code(&code, &state.pkce_verifier, &state.nonce)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in could not be completed");
                return self.fail(session, 400, "Sign-in failed", "The sign-in could not be completed with the identity provider (the code was refused, or the ID token did not verify).", retry_text, request_id).await;
            }
        };
        let data = self.session_from(signed_in, None).await;
        tracing::info!(user = %data.user, "signed in");
        let mut set = self
            .auth_cookie
            .set_cookie_headers(&self.auth_sealer.seal(&data), cookies.as_deref());
        set.extend(self.csrf_cookie.clear_cookie_headers(None));
        self.hand_off(session, &data, &return_to, set, request_id)
            .await
    }

    async fn authenticate_sign_out(
        &self,
        session: &mut Session,
        url: &Url,
        request_id: &str,
    ) -> Result<()> {
        let host = host_and_port(&self.authenticate).unwrap_or_default();
        if !self.sign_out_allowed(session, &host, url, now()) {
            let mut form = self.authenticate.clone();
            form.set_path("/.pomerium/sign_out");
            return confirm_sign_out(session, &form, None, request_id).await;
        }
        let cookies = cookie_header(session);
        let mut set = self.auth_cookie.clear_cookie_headers(cookies.as_deref());
        set.extend(self.csrf_cookie.clear_cookie_headers(None));
        let signed_out = self
            .authenticate
            .join(".pomerium/signed_out")
            .unwrap_or_else(|_| self.authenticate.clone());
        let target = self
            .oidc
            .logout_url(&signed_out)
            .await
            .unwrap_or(signed_out);
        tracing::info!("signed out");
        write(
            session,
            302,
            &redirect_headers(&target, set),
            None,
            request_id,
        )
        .await
    }

    /// Answers `/.pomerium/*` and the JWKS on a route host. Returns `false` when the path is
    /// not one of them (the request goes on to the route).
    pub async fn route_endpoint(
        &self,
        session: &mut Session,
        path: &str,
        request_id: &str,
    ) -> Result<bool> {
        if path == JWKS_PATH {
            write(
                session,
                200,
                &[],
                Some(("application/json", self.jwks.clone())),
                request_id,
            )
            .await?;
            return Ok(true);
        }
        if !(path == "/.pomerium" || path.starts_with("/.pomerium/")) {
            return Ok(false);
        }
        let Some(url) = request_url(session, self.route_scheme()) else {
            self.fail(
                session,
                400,
                "Bad request",
                "The request URL is not valid.",
                None,
                request_id,
            )
            .await?;
            return Ok(true);
        };
        let now = now();
        let cookies = cookie_header(session);
        let current = cookies
            .as_deref()
            .and_then(|c| self.route_session(c, now))
            .map(|s| s.data.clone());
        let host = host_and_port(&url).unwrap_or_default();
        match path {
            CALLBACK_PATH => {
                match HandOff::open(&self.key, &self.signer, &url, now) {
                    Ok((data, return_to)) => {
                        let set = self
                            .route_cookie
                            .set_cookie_headers(&self.route_sealer.seal(&data), cookies.as_deref());
                        write(
                            session,
                            302,
                            &redirect_headers(&return_to, set),
                            None,
                            request_id,
                        )
                        .await?;
                    }
                    Err(e) => {
                        tracing::info!(reason = %e, "sign-in hand-off refused");
                        let mut home = url.clone();
                        home.set_path("/");
                        home.set_query(None);
                        self.fail(session, 400, "Sign-in failed", "The sign-in hand-off is not valid (expired, altered or for another host).", Some(home.to_string()), request_id).await?;
                    }
                }
            }
            "/.pomerium/sign_out" => {
                if !self.sign_out_allowed(session, &host, &url, now) {
                    let mut form = url.clone();
                    form.set_query(None);
                    let email = current.as_ref().map(|s| s.email.as_str());
                    confirm_sign_out(session, &form, email, request_id).await?;
                    return Ok(true);
                }
                let set = self.route_cookie.clear_cookie_headers(cookies.as_deref());
                let mut next = self.authenticate.clone();
                next.set_path("/.pomerium/sign_out");
                let next = self.signer.sign_url(&next, SIGN_IN_TTL);
                write(
                    session,
                    302,
                    &redirect_headers(&next, set),
                    None,
                    request_id,
                )
                .await?;
            }
            "/.pomerium/jwt" => match &current {
                Some(data) => {
                    let route_host = host.to_ascii_lowercase();
                    match self
                        .assertions
                        .get_or_sign(&self.signing_key, &route_host, data, now)
                    {
                        Ok(token) => {
                            write(
                                session,
                                200,
                                &[],
                                Some(("application/jwt", Bytes::from(token))),
                                request_id,
                            )
                            .await?;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot sign the identity assertion");
                            self.fail(
                                session,
                                500,
                                "Internal Error",
                                "The assertion could not be signed.",
                                None,
                                request_id,
                            )
                            .await?;
                        }
                    }
                }
                None => {
                    self.fail(
                        session,
                        401,
                        "Unauthorized",
                        "Not signed in.",
                        None,
                        request_id,
                    )
                    .await?;
                }
            },
            "/.pomerium" | "/.pomerium/" => {
                let accept = session
                    .req_header()
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let json = super::pages::wants_json(accept);
                let mut sign_out = url.clone();
                sign_out.set_path("/.pomerium/sign_out");
                sign_out.set_query(None);
                if json {
                    let v = match &current {
                        Some(d) => serde_json::json!({
                            "signed_in": true,
                            "user": d.user,
                            "email": d.email,
                            "name": d.name,
                            "groups": d.groups,
                            "claims": d.claims,
                            "expires_at": d.expires_at,
                            "id_token_expires_at": d.id_token_expires_at,
                        }),
                        None => serde_json::json!({"signed_in": false}),
                    };
                    write(
                        session,
                        200,
                        &[],
                        Some(("application/json", Bytes::from(v.to_string()))),
                        request_id,
                    )
                    .await?;
                } else {
                    let detail = match &current {
                        Some(d) => format!(
                            "User {} ({}), groups: {}.",
                            d.user,
                            d.name.as_deref().unwrap_or("no name"),
                            if d.groups.is_empty() {
                                "none".to_string()
                            } else {
                                d.groups.join(", ")
                            }
                        ),
                        None => "You are not signed in on this host.".to_string(),
                    };
                    let email = current.as_ref().map(|d| d.email.as_str());
                    page(
                        session,
                        AuthPage {
                            status: 200,
                            title: "Who am I",
                            detail: &detail,
                            request_id,
                            reasons: &[],
                            email,
                            links: vec![],
                            sign_out: current.as_ref().map(|_| sign_out.to_string()),
                        },
                        &[],
                    )
                    .await?;
                }
            }
            _ => {
                self.fail(session, 404, "Not Found", "No such page.", None, request_id)
                    .await?;
            }
        }
        Ok(true)
    }

    /// The 302 to sign-in for a browser without a (fresh) session.
    pub async fn redirect_to_sign_in(
        &self,
        session: &mut Session,
        request_id: &str,
    ) -> Result<bool> {
        let Some(url) = request_url(session, self.route_scheme()) else {
            return Ok(false);
        };
        let target = self.sign_in_url(&url);
        write(
            session,
            302,
            &redirect_headers(&target, vec![]),
            None,
            request_id,
        )
        .await?;
        Ok(true)
    }

    /// The 403 page for a signed-in user the policy denies.
    pub async fn denied(
        &self,
        session: &mut Session,
        email: Option<&str>,
        reasons: &[&str],
        request_id: &str,
    ) -> Result<()> {
        let sign_out = request_url(session, self.route_scheme()).map(|mut u| {
            u.set_path("/.pomerium/sign_out");
            u.set_query(None);
            u.to_string()
        });
        page(
            session,
            AuthPage {
                status: 403,
                title: "Forbidden",
                detail: "The route's policy does not allow this request.",
                request_id,
                reasons,
                email,
                links: vec![],
                sign_out,
            },
            &[],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_prefer_html() {
        assert!(prefers_html(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!prefers_html(Some("application/json")));
        assert!(!prefers_html(Some("application/json, text/html")));
        assert!(!prefers_html(Some("*/*")));
        assert!(!prefers_html(None));
    }

    fn session() -> SessionData {
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

    #[test]
    fn claims_as_header_text() {
        let s = session();
        assert_eq!(
            claim_text(&s, "email").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(claim_text(&s, "groups").as_deref(), Some("g1,g2"));
        assert_eq!(
            claim_text(&s, "https://example.com/roles").as_deref(),
            Some("admin,dev")
        );
        assert_eq!(claim_text(&s, "n").as_deref(), Some("3"));
        assert_eq!(claim_text(&s, "bad"), None);
        assert_eq!(claim_text(&s, "missing"), None);
        assert_eq!(claim_text(&s, "name"), None);
    }

    #[test]
    fn denied_page_shows_reasons_and_email_but_escapes() {
        let p = AuthPage {
            status: 403,
            title: "Forbidden",
            detail: "no",
            request_id: "rid",
            reasons: &["claim-unauthorized"],
            email: Some("<a>@x"),
            links: vec![],
            sign_out: Some("http://h/.pomerium/sign_out".into()),
        };
        let (_, html) = p.render(false);
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains("claim-unauthorized") && html.contains("&lt;a&gt;@x"));
        assert!(html.contains("method=\"post\""));
        let (_, json) = p.render(true);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["email"], "<a>@x");
        assert_eq!(v["reasons"][0], "claim-unauthorized");
    }

    fn auth() -> Auth {
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
        Auth::from_settings(&settings).unwrap().unwrap()
    }

    #[test]
    fn settings_build_sign_in_with_generated_secrets() {
        let a = auth();
        assert!(a.is_authenticate_host("auth.example.com", 443));
        assert!(!a.is_authenticate_host("auth.example.com", 80));
        assert_eq!(a.oidc.config().issuer.as_str(), "https://tenant.auth0.com/");
        assert_eq!(
            a.oidc.config().redirect_url.as_str(),
            "https://auth.example.com/oauth2/callback"
        );
        let link = a.sign_in_url(&Url::parse("https://app.example.com/x?y=1").unwrap());
        assert_eq!(link.path(), "/.pomerium/sign_in");
        assert!(a.signer.verify_url(&link, now()).is_ok());
        let no_auth = Settings::parse("insecure_server: true\n", "t.yaml", |_| None).unwrap();
        assert!(Auth::from_settings(&no_auth).unwrap().is_none());
        let incomplete = Settings::parse(
            "authenticate_service_url: https://auth.example.com\n",
            "t.yaml",
            |_| None,
        )
        .unwrap();
        assert!(Auth::from_settings(&incomplete).is_err());
    }

    #[test]
    fn the_session_cookie_is_kept_from_upstreams() {
        let a = auth();
        assert_eq!(
            a.without_session_cookie("a=1; _pomerium=v1.x; _pomerium_1=y; _pomerium_csrfx=z; b=2")
                .as_deref(),
            Some("a=1; _pomerium_csrfx=z; b=2")
        );
        assert_eq!(a.without_session_cookie("_pomerium=v1.x"), None);
    }

    #[test]
    fn route_sessions_need_a_fresh_id_token() {
        let a = auth();
        let mut s = session();
        s.expires_at = 1000;
        s.id_token_expires_at = 500;
        let sealed = a.route_sealer.seal(&s);
        let header = format!("x=1; _pomerium={sealed}");
        assert!(a.route_session(&header, 100).is_some());
        assert!(a.route_session(&header, 600).is_none(), "ID token expired");
        assert!(a.route_session(&header, 1000).is_none(), "session expired");
        let foreign = a.auth_sealer.seal(&s);
        assert!(
            a.route_session(&format!("_pomerium={foreign}"), 100)
                .is_none()
        );
    }
}
