//! Auth0 Management API client for a user's roles (used as groups).
//!
//! Credentials come from `idp_service_account`: base64 of `{"client_id":…,"client_secret":…}`
//! of a machine-to-machine application. Its access token (client credentials for audience
//! `https://TENANT/api/v2/`) is cached until [`TOKEN_REFRESH_MARGIN`] before it expires. A rate
//! limit (429) or a server error (5xx) is a typed error so that callers can fall back to the
//! groups from the ID token's claims.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use openidconnect::reqwest;
use serde::Deserialize;
use url::Url;

use crate::config::Secret;

/// A cached token is renewed when it has less than this left (or half its lifetime, if shorter).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Roles asked for per page.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Pages read at most for one user (a guard against a server that never ends).
const MAX_PAGES: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("idp_service_account is not base64 of {{\"client_id\",\"client_secret\"}}: {0}")]
    ServiceAccount(String),
    #[error("idp_provider_url cannot be used as the Management API's base: {0}")]
    TenantUrl(String),
    #[error("idp_provider_url cannot be used as the Management API's base: {0}")]
    TenantPath(#[source] url::ParseError),
    #[error("Management API request failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("Management API rate limit reached (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Management API unavailable: HTTP {status}")]
    Unavailable { status: u16 },
    #[error("client-credentials token refused: HTTP {status}: {message}")]
    Token { status: u16, message: String },
    #[error("Management API answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Management API answer not understood: {0}")]
    InvalidResponse(String),
}

impl ManagementError {
    /// A temporary condition (rate limit, server error, network): fall back and retry later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ManagementError::RateLimited { .. }
                | ManagementError::Unavailable { .. }
                | ManagementError::Transport(_)
        )
    }
}

/// One of a user's roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize)]
struct ServiceAccount {
    client_id: String,
    client_secret: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct RolesPage {
    roles: Vec<Role>,
    #[serde(default)]
    total: Option<usize>,
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// Client for the roles endpoint of the Auth0 Management API.
pub struct ManagementClient {
    http: reqwest::Client,
    base: Url,
    audience: String,
    client_id: String,
    client_secret: Secret,
    page_size: u32,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`auth0|x` → `auth0%7Cx`).
fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ManagementClient {
    /// A client for the tenant at `tenant` (e.g. `https://example.eu.auth0.com/`) with the
    /// machine-to-machine credentials in `service_account`.
    pub fn new(
        service_account: &Secret,
        tenant: &Url,
    ) -> Result<ManagementClient, ManagementError> {
        let json = decode_base64(service_account.as_str())
            .ok_or_else(|| ManagementError::ServiceAccount("not valid base64".into()))?;
        let account: ServiceAccount = serde_json::from_slice(&json)
            .map_err(|e| ManagementError::ServiceAccount(format!("not the expected JSON: {e}")))?;
        if !matches!(tenant.scheme(), "http" | "https") || tenant.host_str().is_none() {
            return Err(ManagementError::TenantUrl(tenant.to_string()));
        }
        let mut base = tenant.clone();
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let audience = base
            .join("api/v2/")
            .map_err(ManagementError::TenantPath)?
            .to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ManagementError::Transport)?;
        Ok(ManagementClient {
            http,
            base,
            audience,
            client_id: account.client_id,
            client_secret: Secret::from(account.client_secret),
            page_size: DEFAULT_PAGE_SIZE,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Roles asked for per page (1 or more; Auth0 allows up to 100).
    pub fn with_page_size(mut self, page_size: u32) -> ManagementClient {
        self.page_size = page_size.max(1);
        self
    }

    /// The audience tokens are requested for: `https://TENANT/api/v2/`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Forgets the cached token (e.g. after the API refused it).
    pub async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// A valid access token, from the cache or the token endpoint.
    pub async fn access_token(&self) -> Result<String, ManagementError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.token.clone());
        }
        let url = self
            .base
            .join("oauth/token")
            .map_err(ManagementError::TenantPath)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.as_str())
            .append_pair("audience", &self.audience)
            .finish();
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await;
        let bytes = read_answer(answer, |status, message| ManagementError::Token {
            status,
            message,
        })
        .await?;
        let token: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| ManagementError::InvalidResponse(e.to_string()))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(0));
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(CachedToken {
            token: token.access_token.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        Ok(token.access_token)
    }

    /// Every role of `user_id` (e.g. `auth0|alice`), reading all pages.
    pub async fn user_roles(&self, user_id: &str) -> Result<Vec<Role>, ManagementError> {
        match self.user_roles_once(user_id).await {
            // A token revoked or expired early: get a new one and try once more.
            Err(ManagementError::Status { status: 401, .. }) => {
                self.forget_token().await;
                self.user_roles_once(user_id).await
            }
            other => other,
        }
    }

    async fn user_roles_once(&self, user_id: &str) -> Result<Vec<Role>, ManagementError> {
        let token = self.access_token().await?;
        let path = format!("api/v2/users/{}/roles", encode_path_segment(user_id));
        let endpoint = self.base.join(&path).map_err(ManagementError::TenantPath)?;
        let mut roles = Vec::new();
        for page in 0..MAX_PAGES {
            let mut url = endpoint.clone();
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &self.page_size.to_string())
                .append_pair("include_totals", "true");
            let answer = self
                .http
                .get(url)
                .bearer_auth(&token)
                .header("accept", "application/json")
                .send()
                .await;
            let bytes = read_answer(answer, |status, message| ManagementError::Status {
                status,
                message,
            })
            .await?;
            let page: RolesPage = serde_json::from_slice(&bytes)
                .map_err(|e| ManagementError::InvalidResponse(e.to_string()))?;
            let count = page.roles.len();
            roles.extend(page.roles);
            let done = match page.total {
                Some(total) => roles.len() >= total,
                None => count < self.page_size as usize,
            };
            if done || count == 0 {
                return Ok(roles);
            }
        }
        Err(ManagementError::InvalidResponse(format!(
            "more than {MAX_PAGES} pages of roles"
        )))
    }
}

fn retry_after(answer: &reqwest::Response) -> Option<Duration> {
    answer
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A short description from an Auth0 or OAuth error body.
fn error_message(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["message", "error_description", "error"]
        .iter()
        .find_map(|k| json.get(*k).and_then(|v| v.as_str()))
        .map(|s| s.chars().take(200).collect())
        .unwrap_or_else(|| "no details".to_string())
}

/// The body of a 200 answer; a 429 or 5xx as the typed transient errors, any other status as
/// `other(status, message)`.
async fn read_answer(
    answer: Result<reqwest::Response, reqwest::Error>,
    other: impl FnOnce(u16, String) -> ManagementError,
) -> Result<bytes::Bytes, ManagementError> {
    let answer = answer.map_err(|e| ManagementError::Transport(e.without_url()))?;
    let status = answer.status().as_u16();
    let retry_after = retry_after(&answer);
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ManagementError::Transport(e.without_url()))?;
    match status {
        200 => Ok(bytes),
        429 => Err(ManagementError::RateLimited { retry_after }),
        500..=599 => Err(ManagementError::Unavailable { status }),
        _ => Err(other(status, error_message(&bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(json: &str) -> Secret {
        Secret::from(STANDARD.encode(json))
    }

    #[test]
    fn service_account_parsing() {
        let tenant = Url::parse("https://example.eu.auth0.com").unwrap();
        let client = ManagementClient::new(
            &account(r#"{"client_id":"m2m","client_secret":"s3cret"}"#),
            &tenant,
        )
        .unwrap();
        assert_eq!(client.audience(), "https://example.eu.auth0.com/api/v2/");
        assert!(!format!("{client:?}").contains("s3cret"));
        assert!(matches!(
            ManagementClient::new(&Secret::from("%%%".to_string()), &tenant),
            Err(ManagementError::ServiceAccount(_))
        ));
        assert!(matches!(
            ManagementClient::new(&account(r#"{"client_id":"m2m"}"#), &tenant),
            Err(ManagementError::ServiceAccount(_))
        ));
    }

    #[test]
    fn path_encoding() {
        assert_eq!(encode_path_segment("auth0|alice"), "auth0%7Calice");
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_path_segment("x-y_z.~1"), "x-y_z.~1");
    }

    #[test]
    fn transient_errors() {
        assert!(ManagementError::RateLimited { retry_after: None }.is_transient());
        assert!(ManagementError::Unavailable { status: 503 }.is_transient());
        assert!(
            !ManagementError::Status {
                status: 404,
                message: String::new()
            }
            .is_transient()
        );
    }
}
