//! The OpenID Connect relying party: discovery (lazy, retried), the authorization-code flow with
//! `state`, `nonce` and PKCE (S256), ID-token verification (issuer, audience, expiry, signature
//! through the provider's JWKS, refetched once when a token names an unknown key), UserInfo and
//! the refresh-token grant.
//!
//! Only `openid` claims are typed by the `openidconnect` crate; every other claim is read from
//! the verified token's payload (base64url JSON), so namespaced Auth0 claims need no generics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJsonWebKeySet, CoreProviderMetadata,
    CoreTokenResponse,
};
use openidconnect::reqwest;
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use url::Url;

use crate::config::{IdpProvider, Secret};

/// Scopes asked for when `idp_scopes` is empty.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Claims that only matter to the token exchange and are not kept in sessions.
const DROPPED_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "auth_time", "sid"];

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The underlying error of a failed call (HTTP client, token endpoint, …), kept as the source.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Each variant's text includes its cause's chain, so one log line says everything.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider's configuration could not be read: {}", err_text(.0.as_ref()))]
    Discovery(#[source] Cause),
    #[error("the authorization code could not be exchanged: {}", err_text(.0.as_ref()))]
    Exchange(#[source] Cause),
    #[error("the refresh token was refused: {}", err_text(.0.as_ref()))]
    Refresh(#[source] Cause),
    /// The provider did not answer (connection failed, timed out, or an answer that is not
    /// OAuth's): nothing was refused, so the caller may keep what it has for a while.
    #[error("the identity provider cannot be reached: {}", err_text(.0.as_ref()))]
    Unreachable(#[source] Cause),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("UserInfo failed: {}", err_text(.0.as_ref()))]
    UserInfo(#[source] Cause),
    #[error("configuration: {}", err_text(.0.as_ref()))]
    Config(#[source] Cause),
}

impl OidcError {
    /// The provider did not answer (as opposed to refusing): discovery failed, or a token
    /// request got no OAuth answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OidcError::Discovery(_) | OidcError::Unreachable(_))
    }
}

/// A failure that is ours to describe (no underlying error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Plain(pub String);

fn cause(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
    Box::new(e)
}

/// What the relying party needs to know.
#[derive(Clone)]
pub struct OidcConfig {
    pub provider: IdpProvider,
    /// The issuer (for Auth0, `https://TENANT/` with the trailing slash).
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://AUTHENTICATE/oauth2/callback`.
    pub redirect_url: Url,
    pub scopes: Vec<String>,
    /// Extra parameters of every authorization request (Pomerium's `idp_request_params`, e.g.
    /// Auth0's `connection` or `organization`).
    pub extra_params: BTreeMap<String, String>,
}

impl OidcConfig {
    /// The issuer for a provider URL: Auth0's issuer is the tenant URL with a trailing slash.
    pub fn issuer_for(provider: IdpProvider, url: &Url) -> Url {
        let mut out = url.clone();
        if provider == IdpProvider::Auth0 && !out.path().ends_with('/') {
            let path = format!("{}/", out.path());
            out.set_path(&path);
        }
        out
    }
}

/// A user signed in (or refreshed) at the provider.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The ID token's claims merged with UserInfo's (UserInfo wins), without the exchange-only
    /// claims (`nonce`, `at_hash`, …).
    pub claims: Map<String, Value>,
    pub subject: String,
    /// The ID token's `exp` (Unix seconds).
    pub id_token_expires_at: i64,
    pub refresh_token: Option<String>,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    /// `end_session_endpoint` (generic OIDC logout), read from the raw discovery document.
    end_session: Option<Url>,
    jwks_fetched: Instant,
}

/// The relying party. Discovery happens on first use (and is retried on later uses while it
/// fails), so the proxy starts even when the provider is not up yet.
pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
    discovering: tokio::sync::Mutex<()>,
    /// When the provider last answered [`Oidc::reachable`].
    last_reachable: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.cfg.issuer.as_str())
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

fn err_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The payload of a compact JWT as JSON (the signature must have been verified already).
pub fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    jwt_part(token, 1)
}

/// Part `n` of a compact JWT (0: header, 1: payload) as a JSON object.
fn jwt_part(token: &str, n: usize) -> Option<Map<String, Value>> {
    let part = token.split('.').nth(n)?;
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// `base` with `extra`'s keys added or replaced.
pub fn merge_claims(mut base: Map<String, Value>, extra: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in extra {
        base.insert(k, v);
    }
    for k in DROPPED_CLAIMS {
        base.remove(*k);
    }
    base
}

impl Oidc {
    pub fn new(cfg: OidcConfig) -> Result<Oidc, OidcError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Config(cause(e)))?;
        Ok(Oidc {
            cfg,
            http,
            discovered: tokio::sync::RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            last_reachable: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// Whether the provider answers right now: its discovery document is fetched (3 s at most)
    /// unless it answered in the last second (so a flood of sign-in starts costs the provider
    /// at most one request a second). Asked before a browser is sent to the provider, so
    /// a provider that is down gives our 503 page instead of a browser error on its side.
    pub async fn reachable(&self) -> bool {
        let now = Instant::now();
        if let Some(ok) = *self
            .last_reachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && now.duration_since(ok) < Duration::from_secs(1)
        {
            return true;
        }
        let Ok(url) = self.cfg.issuer.join(".well-known/openid-configuration") else {
            return false;
        };
        let ok = self
            .http
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            *self
                .last_reachable
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        ok
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let issuer =
            IssuerUrl::new(self.cfg.issuer.to_string()).map_err(|e| OidcError::Config(cause(e)))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(cause(e)))?;
        // `end_session_endpoint` is not part of the core metadata type: read it from the
        // document itself (best effort; Auth0 uses /v2/logout instead).
        let end_session = match self.cfg.issuer.join(".well-known/openid-configuration") {
            Ok(url) => match self.http.get(url).send().await {
                Ok(resp) => resp
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|doc| doc.get("end_session_endpoint")?.as_str().map(str::to_owned))
                    .and_then(|u: String| Url::parse(&u).ok()),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let d = Arc::new(Discovered {
            metadata,
            end_session,
            jwks_fetched: Instant::now(),
        });
        *self.discovered.write().await = Some(d.clone());
        tracing::info!(issuer = %self.cfg.issuer, "identity provider discovered");
        Ok(d)
    }

    /// Discovery until it succeeds, with backoff (1 s doubling to 30 s). Run in the background at
    /// start so the first sign-in does not wait; never blocks serving.
    pub async fn warm_up(&self) {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.discovered().await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "identity provider discovery failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn client(&self, d: &Discovered) -> Result<Client, OidcError> {
        let redirect = RedirectUrl::new(self.cfg.redirect_url.to_string())
            .map_err(|e| OidcError::Config(cause(e)))?;
        let client = CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(
                self.cfg.client_secret.as_str().to_string(),
            )),
        )
        .set_redirect_uri(redirect);
        // Auth0's applications authenticate at the token endpoint with a POSTed secret by
        // default; generic providers get HTTP Basic (the OIDC default).
        Ok(match self.cfg.provider {
            IdpProvider::Auth0 => client.set_auth_type(AuthType::RequestBody),
            IdpProvider::Oidc => client,
        })
    }

    /// The authorization URL for a new sign-in; `pkce_verifier` (from [`new_pkce_verifier`])
    /// travels in the sealed state to the exchange.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Url, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.to_string(),
        ));
        let state = state.to_string();
        let nonce = nonce.to_string();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        let scopes: Vec<String> = if self.cfg.scopes.is_empty() {
            DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
        } else {
            self.cfg.scopes.clone()
        };
        for s in scopes.into_iter().filter(|s| s != "openid") {
            req = req.add_scope(Scope::new(s));
        }
        for (k, v) in &self.cfg.extra_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, _, _) = req.set_pkce_challenge(challenge).url();
        Ok(url)
    }

    /// Exchanges an authorization code (PKCE verifier and expected nonce from the sealed state).
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let resp: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Config(cause(e)))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(cause(e)))?;
        self.finish(d, resp, Some(nonce), None).await
    }

    /// The refresh-token grant: a new ID token (no nonce), UserInfo again.
    pub async fn refresh(&self, refresh_token: &str) -> Result<SignedIn, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let rt = RefreshToken::new(refresh_token.to_string());
        let resp: CoreTokenResponse = client
            .exchange_refresh_token(&rt)
            .map_err(|e| OidcError::Config(cause(e)))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(_) => OidcError::Refresh(cause(e)),
                _ => OidcError::Unreachable(cause(e)),
            })?;
        self.finish(d, resp, None, Some(refresh_token)).await
    }

    async fn finish(
        &self,
        d: Arc<Discovered>,
        resp: CoreTokenResponse,
        nonce: Option<&str>,
        previous_refresh: Option<&str>,
    ) -> Result<SignedIn, OidcError> {
        let id_token = resp
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the token response has no ID token".into()))?;
        let (subject, exp) = match self.verify(&d, id_token, nonce) {
            Ok(v) => v,
            Err(VerifyError::UnknownKey) => {
                // Key rotation: fetch the JWKS once more and try again.
                let d = self.refetch_jwks(&d).await?;
                self.verify(&d, id_token, nonce)
                    .map_err(|e| OidcError::IdToken(e.to_string()))?
            }
            Err(e) => return Err(OidcError::IdToken(e.to_string())),
        };
        let raw = jwt_payload(&id_token.to_string())
            .ok_or_else(|| OidcError::IdToken("unreadable payload".into()))?;
        let userinfo = match d.metadata.userinfo_endpoint() {
            Some(url) => {
                self.userinfo(url.url(), resp.access_token().secret(), &subject)
                    .await?
            }
            None => Map::new(),
        };
        Ok(SignedIn {
            claims: merge_claims(raw, userinfo),
            subject,
            id_token_expires_at: exp,
            refresh_token: resp
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous_refresh.map(str::to_owned)),
        })
    }

    fn verify(
        &self,
        d: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<(String, i64), VerifyError> {
        let client = self
            .client(d)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let verifier = client.id_token_verifier();
        let result = match nonce {
            Some(n) => id_token.claims(&verifier, &Nonce::new(n.to_string())),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        };
        match result {
            Ok(claims) => Ok((
                claims.subject().as_str().to_string(),
                claims.expiration().timestamp(),
            )),
            Err(e) => Err(VerifyError::from(e)),
        }
    }

    async fn refetch_jwks(&self, old: &Arc<Discovered>) -> Result<Arc<Discovered>, OidcError> {
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(current) = self.discovered.read().await.as_ref()
            && current.jwks_fetched > old.jwks_fetched
        {
            return Ok(current.clone());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(old.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Discovery(cause(e)))?;
        let d = Arc::new(Discovered {
            metadata: old.metadata.clone().set_jwks(jwks),
            end_session: old.end_session.clone(),
            jwks_fetched: Instant::now(),
        });
        *self.discovered.write().await = Some(d.clone());
        tracing::info!("identity provider keys fetched again (unknown key id)");
        Ok(d)
    }

    async fn userinfo(
        &self,
        url: &Url,
        access_token: &str,
        subject: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| OidcError::UserInfo(cause(e)))?;
        if !resp.status().is_success() {
            return Err(OidcError::UserInfo(cause(Plain(format!(
                "status {}",
                resp.status()
            )))));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| OidcError::UserInfo(cause(e)))?;
        let map: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|e| OidcError::UserInfo(cause(e)))?;
        if map.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(OidcError::UserInfo(cause(Plain(
                "UserInfo is about another subject".into(),
            ))));
        }
        Ok(map)
    }

    /// Where to send the browser to end the provider's session: Auth0's `/v2/logout`, or the
    /// discovery document's `end_session_endpoint`. `None` when the provider has neither.
    pub async fn logout_url(&self, return_to: &Url) -> Option<Url> {
        match self.cfg.provider {
            IdpProvider::Auth0 => {
                let mut url = self.cfg.issuer.join("v2/logout").ok()?;
                url.query_pairs_mut()
                    .append_pair("client_id", &self.cfg.client_id)
                    .append_pair("returnTo", return_to.as_str());
                Some(url)
            }
            IdpProvider::Oidc => {
                let d = self.discovered().await.ok()?;
                let mut url = d.end_session.clone()?;
                url.query_pairs_mut()
                    .append_pair("client_id", &self.cfg.client_id)
                    .append_pair("post_logout_redirect_uri", return_to.as_str());
                Some(url)
            }
        }
    }
}

/// Why a token (an ID token at sign-in, or a token an API client presented) was not accepted.
/// The texts are shown to the client, so they say what is wrong without echoing the token.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token was issued by another identity provider")]
    WrongIssuer,
    #[error("the token's signature does not verify with the identity provider's keys")]
    BadSignature,
    #[error("the token is signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("the token is signed with an algorithm that is not accepted ({0})")]
    Algorithm(String),
    #[error("the token is not a JWT that can be read")]
    Malformed,
    #[error(
        "access tokens are not accepted here: no audience is allowed (idp_access_token_allowed_audiences)"
    )]
    NoAudiences,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The provider's keys could not be read: nothing was refused, the check could not run.
    #[error(transparent)]
    Provider(#[from] OidcError),
}

impl From<ClaimsVerificationError> for VerifyError {
    fn from(e: ClaimsVerificationError) -> VerifyError {
        use SignatureVerificationError as S;
        match e {
            ClaimsVerificationError::Expired(_) => VerifyError::Expired,
            ClaimsVerificationError::InvalidAudience(_) => VerifyError::WrongAudience,
            ClaimsVerificationError::InvalidIssuer(_) => VerifyError::WrongIssuer,
            ClaimsVerificationError::SignatureVerification(S::NoSignature) => {
                VerifyError::Algorithm("none".into())
            }
            ClaimsVerificationError::SignatureVerification(S::NoMatchingKey) => {
                VerifyError::UnknownKey
            }
            ClaimsVerificationError::SignatureVerification(
                S::DisallowedAlg(alg) | S::UnsupportedAlg(alg),
            ) => VerifyError::Algorithm(alg),
            ClaimsVerificationError::SignatureVerification(S::CryptoError(_)) => {
                VerifyError::BadSignature
            }
            other => VerifyError::Invalid(err_text(&other)),
        }
    }
}

impl From<jsonwebtoken::errors::Error> for VerifyError {
    fn from(e: jsonwebtoken::errors::Error) -> VerifyError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => VerifyError::Expired,
            K::ImmatureSignature => VerifyError::NotYetValid,
            K::InvalidAudience => VerifyError::WrongAudience,
            K::InvalidIssuer => VerifyError::WrongIssuer,
            K::InvalidSignature => VerifyError::BadSignature,
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => VerifyError::Malformed,
            K::MissingRequiredClaim(c) => VerifyError::Invalid(format!("it has no {c} claim")),
            _ => VerifyError::Invalid(e.to_string()),
        }
    }
}

/// JWKS from the identity provider are fetched again for an unknown key at most this often
/// when the token comes from an API client (anyone can make up a key id).
const BEARER_JWKS_REFETCH: Duration = Duration::from_secs(10);

impl Oidc {
    /// An ID token an API client presented: verified as at sign-in (signature with the
    /// provider's keys and an algorithm it allows, issuer, audience = our client id, expiry),
    /// without a nonce. Its claims become the identity, as at sign-in (no UserInfo call).
    pub async fn verify_id_token(&self, token: &str) -> Result<SignedIn, VerifyError> {
        let id_token: CoreIdToken = token.parse().map_err(|_| VerifyError::Malformed)?;
        let d = self.discovered().await?;
        let (subject, exp) = match self.verify(&d, &id_token, None) {
            Err(VerifyError::UnknownKey) if d.jwks_fetched.elapsed() > BEARER_JWKS_REFETCH => {
                let d = self.refetch_jwks(&d).await?;
                self.verify(&d, &id_token, None)
            }
            other => other,
        }?;
        Self::signed_in(token, subject, exp)
    }

    /// An access token an API client presented: accepted only as a JWT signed with one of the
    /// provider's keys (with that key's algorithm; never `none` or HMAC), issued by the
    /// provider, within its `nbf`/`exp`, and whose `aud` holds one of `audiences`.
    pub async fn verify_access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<SignedIn, VerifyError> {
        if audiences.is_empty() {
            return Err(VerifyError::NoAudiences);
        }
        let alg = jwt_part(token, 0)
            .and_then(|h| h.get("alg")?.as_str().map(str::to_owned))
            .ok_or(VerifyError::Malformed)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Algorithm(alg.clone()))?;
        if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return Err(VerifyError::Algorithm(alg));
        }
        let d = self.discovered().await?;
        let claims = match access_token_claims(&d, token, &header, audiences) {
            Err(VerifyError::UnknownKey) if d.jwks_fetched.elapsed() > BEARER_JWKS_REFETCH => {
                let d = self.refetch_jwks(&d).await?;
                access_token_claims(&d, token, &header, audiences)
            }
            other => other,
        }?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::Invalid("it has no sub claim".into()))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| VerifyError::Invalid("it has no exp claim".into()))?;
        Self::signed_in(token, subject.to_string(), exp)
    }

    fn signed_in(token: &str, subject: String, exp: i64) -> Result<SignedIn, VerifyError> {
        let raw = jwt_payload(token).ok_or(VerifyError::Malformed)?;
        Ok(SignedIn {
            claims: merge_claims(raw, Map::new()),
            subject,
            id_token_expires_at: exp,
            refresh_token: None,
        })
    }
}

/// The claims of an access token verified with the provider's keys as `d` holds them.
fn access_token_claims(
    d: &Discovered,
    token: &str,
    header: &jsonwebtoken::Header,
    audiences: &[String],
) -> Result<Map<String, Value>, VerifyError> {
    let unreadable = || VerifyError::Invalid("the identity provider's keys cannot be read".into());
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::to_value(d.metadata.jwks())
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(unreadable)?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or(VerifyError::UnknownKey)?;
    let key_alg = key_algorithm(jwk).ok_or_else(unreadable)?;
    if header.alg != key_alg {
        return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| unreadable())?;
    let mut v = jsonwebtoken::Validation::new(key_alg);
    v.set_audience(audiences);
    v.set_issuer(&[d.metadata.issuer().as_str()]);
    v.validate_nbf = true;
    // As for ID tokens: no grace past `exp`.
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    Ok(jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)?.claims)
}

/// The one algorithm a provider's public key signs with: the JWK's `alg`, else the usual one
/// for its type. Never an HMAC algorithm (a published key is public).
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve};
    let alg = match jwk.common.key_algorithm {
        Some(named) => serde_json::to_value(named)
            .ok()?
            .as_str()?
            .parse::<Algorithm>()
            .ok()?,
        None => match &jwk.algorithm {
            P::RSA(_) => Algorithm::RS256,
            P::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return None,
            },
            P::OctetKeyPair(_) => Algorithm::EdDSA,
            _ => return None,
        },
    };
    (alg.family() != jsonwebtoken::AlgorithmFamily::Hmac).then_some(alg)
}

/// A new random PKCE code verifier (32 random bytes, base64url: 43 characters).
pub fn new_pkce_verifier() -> String {
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    verifier.secret().clone()
}

/// Groups from claims: the `groups` claim and every namespaced claim whose name ends in `/roles`
/// or `/groups` (e.g. Auth0's `https://example.com/roles` set by a post-login Action).
pub fn groups_from_claims(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, value) in claims {
        let wanted = name == "groups" || name.ends_with("/roles") || name.ends_with("/groups");
        if !wanted {
            continue;
        }
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            if let Some(s) = item.as_str()
                && !out.iter().any(|g| g == s)
            {
                out.push(s.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn auth0_issuer_gets_a_trailing_slash() {
        let u = Url::parse("https://tenant.eu.auth0.com").unwrap();
        assert_eq!(
            OidcConfig::issuer_for(IdpProvider::Auth0, &u).as_str(),
            "https://tenant.eu.auth0.com/"
        );
        let u = Url::parse("https://idp.example.com/realms/x").unwrap();
        assert_eq!(
            OidcConfig::issuer_for(IdpProvider::Oidc, &u).as_str(),
            "https://idp.example.com/realms/x"
        );
        assert_eq!(
            OidcConfig::issuer_for(IdpProvider::Auth0, &u).as_str(),
            "https://idp.example.com/realms/x/"
        );
    }

    #[test]
    fn userinfo_wins_and_exchange_claims_are_dropped() {
        let id =
            obj(json!({"sub": "a", "email": "old@x", "nonce": "n", "at_hash": "h", "name": "A"}));
        let ui = obj(json!({"sub": "a", "email": "new@x"}));
        let m = merge_claims(id, ui);
        assert_eq!(m["email"], "new@x");
        assert_eq!(m["name"], "A");
        assert!(!m.contains_key("nonce") && !m.contains_key("at_hash"));
    }

    #[test]
    fn groups_come_from_groups_and_namespaced_claims() {
        let m = obj(json!({
            "groups": ["eng"],
            "https://example.com/roles": ["admin", "eng"],
            "https://example.com/groups": "ops",
            "https://example.com/rolesx": ["no"],
            "roles": ["no"]
        }));
        let mut g = groups_from_claims(&m);
        g.sort();
        assert_eq!(g, vec!["admin", "eng", "ops"]);
    }

    #[test]
    fn a_published_key_signs_with_one_public_key_algorithm() {
        use jsonwebtoken::Algorithm;
        let jwk = |v: Value| -> jsonwebtoken::jwk::Jwk { serde_json::from_value(v).unwrap() };
        let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"});
        assert_eq!(key_algorithm(&jwk(rsa.clone())), Some(Algorithm::RS256));
        let mut ps = rsa;
        ps["alg"] = json!("PS384");
        assert_eq!(key_algorithm(&jwk(ps)), Some(Algorithm::PS384));
        let ec = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(key_algorithm(&jwk(ec)), Some(Algorithm::ES384));
        // A shared secret is never a provider's public key, whatever it claims.
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(key_algorithm(&jwk(oct.clone())), None);
        let mut named = oct;
        named["alg"] = json!("HS256");
        assert_eq!(key_algorithm(&jwk(named)), None);
    }

    #[test]
    fn verification_failures_say_why() {
        use jsonwebtoken::errors::{Error, ErrorKind};
        let why = |k: ErrorKind| VerifyError::from(Error::from(k)).to_string();
        assert_eq!(why(ErrorKind::ExpiredSignature), "the token has expired");
        assert_eq!(
            why(ErrorKind::InvalidAudience),
            "the token is for another audience"
        );
        assert!(why(ErrorKind::InvalidSignature).contains("signature"));
        assert_eq!(
            why(ErrorKind::ImmatureSignature),
            "the token is not valid yet"
        );
        let expired = ClaimsVerificationError::Expired("at 1".into());
        assert!(matches!(VerifyError::from(expired), VerifyError::Expired));
        let alg = ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg("HS256".into()),
        );
        assert!(VerifyError::from(alg).to_string().contains("HS256"));
    }

    #[test]
    fn payload_of_a_jwt() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","n":1}"#);
        let m = jwt_payload(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(m["sub"], "x");
        assert!(jwt_payload("garbage").is_none());
        assert!(jwt_payload("a.!!!.c").is_none());
    }
}
