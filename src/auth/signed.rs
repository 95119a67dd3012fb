//! Short-lived signed URLs, the sign-in hand-off to a route host, and the OAuth `state` value.
//!
//! Signed URL: two query parameters are appended, in this order:
//! - `portcullis_expiry`: Unix seconds after which the URL is refused;
//! - `portcullis_signature`: URL-safe base64 (no padding) of HMAC-SHA256 under `shared_secret`
//!   over `portcullis/url/v1\n` followed by the whole URL (scheme, host, port, path and query
//!   including the expiry, everything but the signature parameter) as serialised by the `url`
//!   crate after re-encoding the query. Scheme and host are covered, so a URL signed for one host
//!   does not verify for another.
//!
//! Hand-off: `https://ROUTE/.pomerium/callback/?portcullis_session=<sealed>&portcullis_return=<url>`
//! signed as above with a one-minute lifetime. `<sealed>` is the session (without its refresh
//! token), the target host and the expiry, sealed with the cookie key for purpose
//! `handoff:<host[:port]>`, so it opens only on that host.
//!
//! OAuth state: [`OAuthState`] sealed with the cookie key for purpose `oauth-state`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use url::Url;

use super::cookie::{SealError, SealKey, SessionData};

/// Query parameter carrying the expiry (Unix seconds) of a signed URL.
pub const EXPIRY_PARAM: &str = "portcullis_expiry";
/// Query parameter carrying the signature of a signed URL.
pub const SIGNATURE_PARAM: &str = "portcullis_signature";
/// Query parameter of the hand-off carrying the sealed session.
pub const HANDOFF_SESSION_PARAM: &str = "portcullis_session";
/// Query parameter of the hand-off carrying the URL to return to.
pub const HANDOFF_RETURN_PARAM: &str = "portcullis_return";
/// Path of the hand-off on every route host.
pub const CALLBACK_PATH: &str = "/.pomerium/callback/";
/// Lifetime of a hand-off URL.
pub const HANDOFF_TTL: Duration = Duration::from_secs(60);
/// Lifetime of an OAuth state (the time a user has to log in).
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedError {
    #[error("the URL is not signed")]
    Unsigned,
    #[error("the URL's signature or expiry is malformed")]
    Malformed,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signed value has expired")]
    Expired,
    #[error("the hand-off is for another host")]
    WrongHost,
    #[error("the hand-off is missing {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Seal(#[from] SealError),
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies URLs with `shared_secret`.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner([redacted])")
    }
}

impl UrlSigner {
    pub fn new(shared_secret: &[u8]) -> UrlSigner {
        UrlSigner {
            secret: shared_secret.to_vec(),
        }
    }

    fn mac(&self, text: &str) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"portcullis/url/v1\n");
        mac.update(text.as_bytes());
        mac
    }

    /// `url` with an expiry `ttl` from now and a signature.
    pub fn sign_url(&self, url: &Url, ttl: Duration) -> Url {
        self.sign_url_at(url, ttl, chrono::Utc::now().timestamp())
    }

    /// `url` with an expiry `ttl` after `now` (Unix seconds) and a signature. Any signature or
    /// expiry parameters already present are replaced.
    pub fn sign_url_at(&self, url: &Url, ttl: Duration, now: i64) -> Url {
        let expiry = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != EXPIRY_PARAM && k != SIGNATURE_PARAM)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut out = rebuild(url, &pairs);
        out.query_pairs_mut()
            .append_pair(EXPIRY_PARAM, &expiry.to_string());
        let signature = URL_SAFE_NO_PAD.encode(self.mac(out.as_str()).finalize().into_bytes());
        out.query_pairs_mut()
            .append_pair(SIGNATURE_PARAM, &signature);
        out
    }

    /// Checks a signed URL's signature (in constant time) and expiry at `now`.
    pub fn verify_url(&self, url: &Url, now: i64) -> Result<(), SignedError> {
        let mut signature = None;
        let mut pairs = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == SIGNATURE_PARAM {
                if signature.is_some() {
                    return Err(SignedError::Malformed);
                }
                signature = Some(v.into_owned());
            } else {
                pairs.push((k.into_owned(), v.into_owned()));
            }
        }
        let signature = signature.ok_or(SignedError::Unsigned)?;
        let given = URL_SAFE_NO_PAD
            .decode(signature.as_bytes())
            .map_err(|_| SignedError::Malformed)?;
        let unsigned = rebuild(url, &pairs);
        self.mac(unsigned.as_str())
            .verify_slice(&given)
            .map_err(|_| SignedError::BadSignature)?;
        let mut expiries = pairs.iter().filter(|(k, _)| k == EXPIRY_PARAM);
        let expiry: i64 = match (expiries.next(), expiries.next()) {
            (Some((_, v)), None) => v.parse().map_err(|_| SignedError::Malformed)?,
            (None, _) => return Err(SignedError::Malformed),
            _ => return Err(SignedError::Malformed),
        };
        if now >= expiry {
            return Err(SignedError::Expired);
        }
        Ok(())
    }
}

/// `url` with its query replaced by `pairs`, encoded canonically.
fn rebuild(url: &Url, pairs: &[(String, String)]) -> Url {
    let mut out = url.clone();
    out.set_query(None);
    if !pairs.is_empty() {
        out.query_pairs_mut().extend_pairs(pairs);
    }
    out
}

/// `host` or `host:port` (the port only when not the scheme's default).
pub fn host_and_port(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

#[derive(Serialize, Deserialize)]
struct HandOffPayload {
    session: SessionData,
    host: String,
    expires_at: i64,
    /// The route host's nonce cookie of the browser that started the sign-in.
    browser: String,
    /// Random, so a used hand-off can be remembered and refused the second time.
    id: String,
}

/// The sign-in hand-off from the authenticate host to a route host.
pub struct HandOff;

/// A hand-off as opened on the route host: the session to install, where to go next, and
/// what binds it to one browser and one use.
#[derive(Debug)]
pub struct HandOffTicket {
    pub session: SessionData,
    pub return_to: Url,
    /// Must equal the nonce cookie the route host set before sending the browser to sign in.
    pub browser: String,
    /// Unique per hand-off: remembered until `expires_at` so a replay is refused.
    pub id: String,
    pub expires_at: i64,
}

impl HandOffTicket {
    /// Constant-time comparison with the browser's nonce cookie on the route host.
    pub fn matches_browser(&self, cookie_nonce: &str) -> bool {
        !self.browser.is_empty()
            && bool::from(self.browser.as_bytes().ct_eq(cookie_nonce.as_bytes()))
    }
}

impl HandOff {
    /// The URL on `return_to`'s host that installs `session` there and then redirects to
    /// `return_to`, for the browser whose route-host nonce is `browser`. The refresh token is
    /// left out. `None` when `return_to` has no host.
    pub fn callback_url(
        key: &SealKey,
        signer: &UrlSigner,
        session: &SessionData,
        return_to: &Url,
        browser: &str,
        now: i64,
    ) -> Option<Url> {
        let host = host_and_port(return_to)?;
        let expires_at = now.saturating_add(HANDOFF_TTL.as_secs() as i64);
        let payload = HandOffPayload {
            session: session.without_refresh_token(),
            host: host.clone(),
            expires_at,
            browser: browser.to_string(),
            id: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        };
        let sealed = key.seal_json(&format!("handoff:{host}"), &payload);
        let mut url = return_to.clone();
        url.set_path(CALLBACK_PATH);
        url.set_query(None);
        url.set_fragment(None);
        url.query_pairs_mut()
            .append_pair(HANDOFF_SESSION_PARAM, &sealed)
            .append_pair(HANDOFF_RETURN_PARAM, return_to.as_str());
        Some(signer.sign_url_at(&url, HANDOFF_TTL, now))
    }

    /// Opens a hand-off as received: `request_url` is the callback URL rebuilt from the request
    /// (scheme, the `Host` the request came to, path and query). Checks the signature, the
    /// expiry and that the session and return URL are for this host. The caller checks the
    /// browser nonce and that the ticket was not used before.
    pub fn open(
        key: &SealKey,
        signer: &UrlSigner,
        request_url: &Url,
        now: i64,
    ) -> Result<HandOffTicket, SignedError> {
        signer.verify_url(request_url, now)?;
        let host = host_and_port(request_url).ok_or(SignedError::WrongHost)?;
        let param = |name: &str| {
            request_url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let sealed = param(HANDOFF_SESSION_PARAM).ok_or(SignedError::Missing("the session"))?;
        let return_to = param(HANDOFF_RETURN_PARAM)
            .and_then(|u| Url::parse(&u).ok())
            .ok_or(SignedError::Missing("the return URL"))?;
        if host_and_port(&return_to).as_deref() != Some(host.as_str()) {
            return Err(SignedError::WrongHost);
        }
        let payload: HandOffPayload = key.open_json(&format!("handoff:{host}"), &sealed)?;
        if payload.host != host {
            return Err(SignedError::WrongHost);
        }
        if now >= payload.expires_at {
            return Err(SignedError::Expired);
        }
        Ok(HandOffTicket {
            session: payload.session,
            return_to,
            browser: payload.browser,
            id: payload.id,
            expires_at: payload.expires_at,
        })
    }
}

/// What the OAuth `state` parameter carries through the IdP. Sealed (encrypted and
/// authenticated) with the cookie key for purpose `oauth-state`, so the IdP sees an opaque
/// `v1.<base64url>` value and the callback can trust its content.
///
/// - `nonce`: 32 random bytes (URL-safe base64). Also the OIDC `nonce` of the authorization
///   request, and the value of a short-lived cookie on the authenticate host: the callback
///   compares the two with [`OAuthState::matches_nonce`], binding the code to the browser that
///   started the sign-in.
/// - `return_url`: the signed URL of the original request, as received at `/.pomerium/sign_in`
///   (verified there).
/// - `pkce_verifier`: the PKCE (S256) code verifier for the token exchange. It is encrypted, so
///   carrying it here keeps sign-in stateless; the nonce cookie keeps a stolen `state` + `code`
///   from being redeemed elsewhere.
/// - `expires_at`: Unix seconds; [`STATE_TTL`] after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    pub nonce: String,
    pub return_url: String,
    pub pkce_verifier: String,
    pub expires_at: i64,
    /// The route host's nonce of the browser that started the sign-in, for the hand-off.
    #[serde(default)]
    pub browser: String,
}

const STATE_PURPOSE: &str = "oauth-state";

impl OAuthState {
    /// A state with a new random nonce, valid for [`STATE_TTL`] from `now`.
    pub fn new(return_url: &Url, pkce_verifier: &str, browser: &str, now: i64) -> OAuthState {
        let nonce: [u8; 32] = rand::random();
        OAuthState {
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            return_url: return_url.to_string(),
            pkce_verifier: pkce_verifier.to_string(),
            expires_at: now.saturating_add(STATE_TTL.as_secs() as i64),
            browser: browser.to_string(),
        }
    }

    pub fn seal(&self, key: &SealKey) -> String {
        key.seal_json(STATE_PURPOSE, self)
    }

    /// Opens a `state` value from the callback, refusing forged and expired ones.
    pub fn open(key: &SealKey, sealed: &str, now: i64) -> Result<OAuthState, SignedError> {
        let state: OAuthState = key.open_json(STATE_PURPOSE, sealed)?;
        if now >= state.expires_at {
            return Err(SignedError::Expired);
        }
        Ok(state)
    }

    /// Constant-time comparison with the nonce from the browser's sign-in cookie.
    pub fn matches_nonce(&self, cookie_nonce: &str) -> bool {
        self.nonce.as_bytes().ct_eq(cookie_nonce.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cookie::new_session_id;

    const NOW: i64 = 1_800_000_000;

    fn signer() -> UrlSigner {
        UrlSigner::new(&[3; 32])
    }

    fn session() -> SessionData {
        SessionData {
            user: "auth0|alice".into(),
            email: "alice@example.com".into(),
            claims: Default::default(),
            groups: vec!["admin".into()],
            name: None,
            sid: new_session_id(),
            issued_at: NOW,
            expires_at: NOW + 3600,
            id_token_expires_at: NOW + 600,
            refresh_token: Some("secret-refresh".into()),
        }
    }

    #[test]
    fn signed_url_round_trip() {
        let url = Url::parse("https://app.example.com/a/b?x=1&y=a%20b&x=2").unwrap();
        let signed = signer().sign_url_at(&url, Duration::from_secs(300), NOW);
        assert!(signed.as_str().contains("portcullis_expiry="));
        assert!(signed.as_str().contains("portcullis_signature="));
        assert_eq!(signer().verify_url(&signed, NOW), Ok(()));
        assert_eq!(signer().verify_url(&signed, NOW + 299), Ok(()));
        // Re-parsing the text (as a server would) still verifies.
        let reparsed = Url::parse(signed.as_str()).unwrap();
        assert_eq!(signer().verify_url(&reparsed, NOW), Ok(()));
        // Re-signing replaces the old parameters.
        let again = signer().sign_url_at(&signed, Duration::from_secs(60), NOW);
        assert_eq!(again.query_pairs().count(), 5);
        assert_eq!(signer().verify_url(&again, NOW), Ok(()));
    }

    #[test]
    fn signed_url_expired() {
        let url = Url::parse("https://app.example.com/").unwrap();
        let signed = signer().sign_url_at(&url, Duration::from_secs(300), NOW);
        assert_eq!(
            signer().verify_url(&signed, NOW + 300),
            Err(SignedError::Expired)
        );
    }

    #[test]
    fn signed_url_tampered() {
        let url = Url::parse("https://app.example.com/path?x=1").unwrap();
        let signed = signer().sign_url_at(&url, Duration::from_secs(300), NOW);
        let text = signed.as_str();
        let bad = [
            text.replace("/path", "/other"),
            text.replace("x=1", "x=2"),
            text.replace("app.example.com", "evil.example.com"),
            text.replace("https://", "http://"),
            text.replace(
                &format!("portcullis_expiry={}", NOW + 300),
                &format!("portcullis_expiry={}", NOW + 9999),
            ),
            format!("{text}&extra=1"),
        ];
        for candidate in bad {
            let u = Url::parse(&candidate).unwrap();
            assert_eq!(
                signer().verify_url(&u, NOW),
                Err(SignedError::BadSignature),
                "{candidate}"
            );
        }
        // Forged with another secret.
        let forged =
            UrlSigner::new(b"another secret").sign_url_at(&url, Duration::from_secs(300), NOW);
        assert_eq!(
            signer().verify_url(&forged, NOW),
            Err(SignedError::BadSignature)
        );
        assert_eq!(signer().verify_url(&url, NOW), Err(SignedError::Unsigned));
        let garbage = Url::parse("https://app.example.com/?portcullis_signature=%%%").unwrap();
        assert_eq!(
            signer().verify_url(&garbage, NOW),
            Err(SignedError::Malformed)
        );
    }

    #[test]
    fn handoff_round_trip() {
        let key = SealKey::new(&[9; 32]);
        let s = session();
        let back = Url::parse("https://app.example.com/deep/page?q=1#frag").unwrap();
        let url = HandOff::callback_url(&key, &signer(), &s, &back, "browser-1", NOW).unwrap();
        assert_eq!(url.host_str(), Some("app.example.com"));
        assert_eq!(url.path(), CALLBACK_PATH);
        let ticket = HandOff::open(&key, &signer(), &url, NOW + 30).unwrap();
        assert_eq!(ticket.return_to, back);
        assert_eq!(ticket.session.sid, s.sid);
        assert_eq!(ticket.session.refresh_token, None);
        assert!(ticket.matches_browser("browser-1"));
        assert!(!ticket.matches_browser("browser-2"));
        assert!(!ticket.matches_browser(""));
        assert_eq!(ticket.session, s.without_refresh_token());
    }

    #[test]
    fn handoff_expired_forged_and_other_host() {
        let key = SealKey::new(&[9; 32]);
        let back = Url::parse("https://app.example.com/").unwrap();
        let url = HandOff::callback_url(&key, &signer(), &session(), &back, "b", NOW).unwrap();
        assert_eq!(
            HandOff::open(&key, &signer(), &url, NOW + 60).map(|_| ()),
            Err(SignedError::Expired)
        );
        // Replayed to another host: the request URL then names that host.
        let mut moved = url.clone();
        moved.set_host(Some("other.example.com")).unwrap();
        assert_eq!(
            HandOff::open(&key, &signer(), &moved, NOW).map(|_| ()),
            Err(SignedError::BadSignature)
        );
        // Even re-signed by someone holding the shared secret only, the sealed session is bound
        // to its host.
        let mut resigned = signer().sign_url_at(&moved, HANDOFF_TTL, NOW);
        resigned.query_pairs_mut().clear().extend_pairs(
            url.query_pairs()
                .filter(|(k, _)| k != SIGNATURE_PARAM && k != EXPIRY_PARAM)
                .map(|(k, v)| {
                    if k == HANDOFF_RETURN_PARAM {
                        (k.into_owned(), "https://other.example.com/".to_string())
                    } else {
                        (k.into_owned(), v.into_owned())
                    }
                }),
        );
        let resigned = signer().sign_url_at(&resigned, HANDOFF_TTL, NOW);
        assert_eq!(
            HandOff::open(&key, &signer(), &resigned, NOW).map(|_| ()),
            Err(SignedError::Seal(SealError::Authentication))
        );
        // Signed with another shared secret.
        let forged =
            HandOff::callback_url(&key, &UrlSigner::new(b"x"), &session(), &back, "b", NOW)
                .unwrap();
        assert_eq!(
            HandOff::open(&key, &signer(), &forged, NOW).map(|_| ()),
            Err(SignedError::BadSignature)
        );
        // Sealed with another cookie key.
        let other_key = SealKey::new(&[1; 32]);
        let foreign =
            HandOff::callback_url(&other_key, &signer(), &session(), &back, "b", NOW).unwrap();
        assert_eq!(
            HandOff::open(&key, &signer(), &foreign, NOW).map(|_| ()),
            Err(SignedError::Seal(SealError::Authentication))
        );
    }

    #[test]
    fn oauth_state() {
        let key = SealKey::new(&[5; 32]);
        let ret = signer().sign_url_at(
            &Url::parse("https://app.example.com/x").unwrap(),
            Duration::from_secs(300),
            NOW,
        );
        let state = OAuthState::new(&ret, "verifier-abc", "b", NOW);
        let sealed = state.seal(&key);
        assert!(!sealed.contains("verifier"));
        let opened = OAuthState::open(&key, &sealed, NOW + 60).unwrap();
        assert_eq!(opened, state);
        assert!(opened.matches_nonce(&state.nonce));
        assert!(!opened.matches_nonce("something else"));
        assert_eq!(
            OAuthState::open(&key, &sealed, NOW + STATE_TTL.as_secs() as i64),
            Err(SignedError::Expired)
        );
        assert!(OAuthState::open(&SealKey::new(&[6; 32]), &sealed, NOW).is_err());
        // A session cookie sealed with the same key is not a state.
        let cookie = key.seal_json("cookie:_pomerium", &state);
        assert_eq!(
            OAuthState::open(&key, &cookie, NOW),
            Err(SignedError::Seal(SealError::Authentication))
        );
        let mut bad = sealed.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(OAuthState::open(&key, &String::from_utf8(bad).unwrap(), NOW).is_err());
    }
}
