//! Stateless sessions: the cookie is the session.
//!
//! A session is serialised as JSON and sealed with XChaCha20-Poly1305 under `cookie_secret`.
//! The sealed text is `v1.` followed by URL-safe base64 (no padding) of `nonce (24 bytes) ||
//! ciphertext+tag`. The associated data is `portcullis/v1/<purpose>`, where the purpose of a
//! session cookie is `cookie:<cookie name>`: a value sealed for one cookie name does not open
//! under another (nor as a hand-off or an OAuth state, which use other purposes).
//!
//! Browsers cap a cookie at about 4 KB, so a long value is split into chunks of at most
//! [`CHUNK_SIZE`] bytes, written as `NAME`, `NAME_1`, `NAME_2`, … and joined back in that order.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::config::{SameSite, Settings};
use crate::ppl::{Claims, Identity};

/// Prefix of every sealed value; the version of the format.
const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The largest cookie value written in one cookie; longer values are chunked.
pub const CHUNK_SIZE: usize = 3800;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value has an unknown format or version")]
    Format,
    #[error("sealed value is not valid base64")]
    Encoding,
    #[error("sealed value is too short")]
    Truncated,
    #[error("sealed value failed authentication (tampered, wrong key or wrong purpose)")]
    Authentication,
    #[error("sealed value does not contain a valid payload: {0}")]
    Payload(String),
    #[error("session expired")]
    Expired,
}

/// A 32-byte key for authenticated encryption, used with a purpose string as associated data.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    pub fn new(secret: &[u8; 32]) -> SealKey {
        SealKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(secret)),
        }
    }

    fn aad(purpose: &str) -> Vec<u8> {
        format!("portcullis/v1/{purpose}").into_bytes()
    }

    /// Encrypts `plaintext` for `purpose`; returns `v1.<base64url(nonce || ciphertext)>`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let aad = Self::aad(purpose);
        // Encryption only fails when the message exceeds the cipher's limit (256 GiB).
        let ciphertext = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce_bytes);
        raw.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Decrypts a value made by [`SealKey::seal`] with the same purpose.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Format)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Encoding)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let aad = Self::aad(purpose);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Authentication)
    }

    /// Seals a serialisable value as JSON.
    pub fn seal_json<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        // Serialising our own plain data types to JSON does not fail.
        let json = serde_json::to_vec(value).unwrap_or_default();
        self.seal(purpose, &json)
    }

    /// Opens a value sealed by [`SealKey::seal_json`].
    pub fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        purpose: &str,
        sealed: &str,
    ) -> Result<T, SealError> {
        let plain = self.open(purpose, sealed)?;
        serde_json::from_slice(&plain).map_err(|e| SealError::Payload(e.to_string()))
    }
}

/// What a session cookie holds. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionData {
    /// The user id (the ID token's `sub`, e.g. `auth0|alice`).
    pub user: String,
    pub email: String,
    /// The ID token's claims, flattened (see [`flatten_claims`]).
    pub claims: BTreeMap<String, Vec<serde_json::Value>>,
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Random session id (see [`new_session_id`]).
    pub sid: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub id_token_expires_at: i64,
    /// Only in the authenticate-domain cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl SessionData {
    /// The identity the policy engine evaluates.
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
            email: self.email.clone(),
            claims: claims_from_map(&self.claims),
            groups: self.groups.clone(),
        }
    }

    /// Whether the ID token behind this session needs a (silent) refresh at `now`.
    pub fn id_token_expired(&self, now: i64) -> bool {
        now >= self.id_token_expires_at
    }

    /// A copy without the refresh token, for route-host cookies.
    pub fn without_refresh_token(&self) -> SessionData {
        SessionData {
            refresh_token: None,
            ..self.clone()
        }
    }
}

/// A new random session id: 16 random bytes as URL-safe base64.
pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Builds `ppl::Claims` from a flattened map (`Claims` is a transparent map when serialised).
fn claims_from_map(map: &BTreeMap<String, Vec<serde_json::Value>>) -> Claims {
    serde_json::to_value(map)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Flattens a claims object: nested objects become dotted keys (`a.b`), arrays are kept as the
/// list of their elements, any other value becomes a one-element list. A non-object gives an
/// empty map. (Stand-in until `ppl::Claims::from_json` lands; same rules.)
pub fn flatten_claims(claims: &serde_json::Value) -> BTreeMap<String, Vec<serde_json::Value>> {
    fn walk(
        prefix: &str,
        value: &serde_json::Value,
        out: &mut BTreeMap<String, Vec<serde_json::Value>>,
    ) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, inner, out);
                }
            }
            serde_json::Value::Array(items) => {
                out.insert(prefix.to_string(), items.clone());
            }
            other => {
                out.insert(prefix.to_string(), vec![other.clone()]);
            }
        }
    }
    let mut out = BTreeMap::new();
    if claims.is_object() {
        walk("", claims, &mut out);
    }
    out
}

use crate::guard::cookies::CookieLimits;

/// What a `Cookie` header may hold before it is refused unread: 256 pairs, 48 KiB (a session
/// with hundreds of groups takes about 20 KiB in chunks of [`CHUNK_SIZE`]), 12 chunks.
pub const COOKIE_LIMITS: CookieLimits = CookieLimits {
    max_pairs: 256,
    max_bytes: 48 * 1024,
    max_chunks: 12,
};

/// Seals and opens the sessions of one cookie name.
#[derive(Clone, Debug)]
pub struct CookieSealer {
    key: SealKey,
    purpose: String,
}

impl CookieSealer {
    /// A sealer for the cookie called `cookie_name`: values only open under that name.
    pub fn new(cookie_secret: &[u8; 32], cookie_name: &str) -> CookieSealer {
        CookieSealer {
            key: SealKey::new(cookie_secret),
            purpose: format!("cookie:{cookie_name}"),
        }
    }

    pub fn seal(&self, session: &SessionData) -> String {
        self.key.seal_json(&self.purpose, session)
    }

    /// Seals a session that opens only for `scope` (a route cookie: the host it was issued
    /// on, or the `cookie_domain` it is shared across): a value stolen on one host is no
    /// session on another.
    pub fn seal_for(&self, scope: &str, session: &SessionData) -> String {
        self.key
            .seal_json(&format!("{}:{}", self.purpose, scope), session)
    }

    /// Opens a value sealed by [`seal_for`](Self::seal_for) for the same scope, rejecting it
    /// when expired at `now`.
    pub fn open_for(&self, scope: &str, sealed: &str, now: i64) -> Result<SessionData, SealError> {
        let session: SessionData = self
            .key
            .open_json(&format!("{}:{}", self.purpose, scope), sealed)?;
        if now >= session.expires_at {
            return Err(SealError::Expired);
        }
        Ok(session)
    }

    /// Opens a session cookie value, rejecting it when expired now.
    pub fn open(&self, sealed: &str) -> Result<SessionData, SealError> {
        self.open_at(sealed, chrono::Utc::now().timestamp())
    }

    /// Opens a session cookie value, rejecting it when expired at `now` (Unix seconds).
    pub fn open_at(&self, sealed: &str, now: i64) -> Result<SessionData, SealError> {
        let session: SessionData = self.key.open_json(&self.purpose, sealed)?;
        if now >= session.expires_at {
            return Err(SealError::Expired);
        }
        Ok(session)
    }
}

/// How session cookies are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieOptions {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub domain: Option<String>,
    pub max_age: Duration,
}

impl CookieOptions {
    /// The route-host cookie as the settings describe it.
    pub fn from_settings(settings: &Settings) -> CookieOptions {
        CookieOptions {
            name: settings.cookie_name.clone(),
            secure: !settings.insecure_server,
            same_site: settings.cookie_same_site,
            domain: settings.cookie_domain.clone(),
            max_age: settings.cookie_expire,
        }
    }

    /// The same options under another cookie name (e.g. the authenticate host's cookie).
    pub fn with_name(&self, name: &str) -> CookieOptions {
        CookieOptions {
            name: name.to_string(),
            ..self.clone()
        }
    }

    fn chunk_name(&self, index: usize) -> String {
        if index == 0 {
            self.name.clone()
        } else {
            format!("{}_{index}", self.name)
        }
    }

    fn attributes(&self, max_age: u64) -> String {
        let mut out = String::from("; Path=/");
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        out.push_str(&format!("; Max-Age={max_age}"));
        out.push_str("; HttpOnly");
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str(match self.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        out
    }

    /// `Set-Cookie` values writing `value`, chunked when longer than [`CHUNK_SIZE`]. Chunks the
    /// browser still has from an earlier, longer value (seen in `request_cookies`, the request's
    /// `Cookie` header) are cleared.
    pub fn set_cookie_headers(&self, value: &str, request_cookies: Option<&str>) -> Vec<String> {
        let attrs = self.attributes(self.max_age.as_secs());
        // Sealed values are ASCII, so splitting by bytes is safe; fall back to chars otherwise.
        let chunks: Vec<&str> = split_ascii(value, CHUNK_SIZE);
        let mut out: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| format!("{}={chunk}{attrs}", self.chunk_name(i)))
            .collect();
        if let Some(header) = request_cookies {
            out.extend(
                self.present_chunks(header)
                    .into_iter()
                    .filter(|&i| i >= chunks.len())
                    .map(|i| self.clear_one(i)),
            );
        }
        out
    }

    /// `Set-Cookie` values deleting the cookie and every chunk of it present in
    /// `request_cookies` (the `Cookie` header); without it, only the first cookie.
    pub fn clear_cookie_headers(&self, request_cookies: Option<&str>) -> Vec<String> {
        let mut indexes = request_cookies
            .map(|h| self.present_chunks(h))
            .unwrap_or_default();
        if !indexes.contains(&0) {
            indexes.insert(0, 0);
        }
        indexes.into_iter().map(|i| self.clear_one(i)).collect()
    }

    fn clear_one(&self, index: usize) -> String {
        format!("{}={}", self.chunk_name(index), self.attributes(0))
    }

    /// Indexes of this cookie's chunks present in a `Cookie` header (0 is the first cookie).
    fn present_chunks(&self, header: &str) -> Vec<usize> {
        let mut found: Vec<usize> = parse_cookie_header(header)
            .filter_map(|(name, _)| {
                if name == self.name {
                    Some(0)
                } else {
                    name.strip_prefix(&self.name)?
                        .strip_prefix('_')?
                        .parse::<usize>()
                        .ok()
                        .filter(|&i| i > 0)
                }
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The cookie's value from a `Cookie` request header, joining `NAME`, `NAME_1`, … in order
    /// up to the first missing chunk. `None` when `NAME` is absent, and when the header is over
    /// [`COOKIE_LIMITS`] (too many pairs, too many bytes or too many chunks): the header is
    /// parsed once, in linear time, before anything is decrypted.
    pub fn read<'h>(&self, header: &'h str) -> Option<std::borrow::Cow<'h, str>> {
        crate::guard::cookies::chunked_value([header], &COOKIE_LIMITS, &self.name)
            .ok()
            .flatten()
    }
}

/// Splits `text` into pieces of at most `size` bytes, on character boundaries.
fn split_ascii(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > size {
        let mut cut = size;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// `name=value` pairs of a `Cookie` header.
pub fn parse_cookie_header(header: &str) -> impl Iterator<Item = (&str, &str)> {
    crate::guard::cookies::split_semicolons(header).filter_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        Some((name.trim(), value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn session(expires_at: i64) -> SessionData {
        SessionData {
            user: "auth0|alice".into(),
            email: "alice@example.com".into(),
            claims: flatten_claims(&serde_json::json!({
                "email": "alice@example.com",
                "https://example.com/roles": ["admin", "dev"],
                "address": {"country": "FR"}
            })),
            groups: vec!["admin".into(), "dev".into()],
            name: Some("Alice Example".into()),
            sid: new_session_id(),
            issued_at: 1_000,
            expires_at,
            id_token_expires_at: 2_000,
            refresh_token: Some("rt-123".into()),
        }
    }

    #[test]
    fn round_trip() {
        let sealer = CookieSealer::new(&KEY, "_pomerium");
        let s = session(10_000);
        let sealed = sealer.seal(&s);
        assert!(sealed.starts_with("v1."));
        assert_eq!(sealer.open_at(&sealed, 5_000), Ok(s.clone()));
        // Random nonce: two seals differ.
        assert_ne!(sealed, sealer.seal(&s));
    }

    #[test]
    fn flattening_and_identity() {
        let s = session(10_000);
        assert_eq!(s.claims["address.country"], vec![serde_json::json!("FR")]);
        assert_eq!(s.claims["https://example.com/roles"].len(), 2);
        let id = s.identity();
        assert_eq!(id.user, "auth0|alice");
        let claims_json = serde_json::to_value(&id.claims).unwrap();
        assert_eq!(claims_json["address.country"], serde_json::json!(["FR"]));
    }

    #[test]
    fn tampering_any_byte_fails() {
        let sealer = CookieSealer::new(&KEY, "_pomerium");
        let sealed = sealer.seal(&session(10_000));
        let raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let text = format!("v1.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(
                sealer.open_at(&text, 5_000),
                Err(SealError::Authentication),
                "byte {i}"
            );
        }
        assert_eq!(
            sealer.open_at(&format!("v2.{}", &sealed[3..]), 5_000),
            Err(SealError::Format)
        );
        assert_eq!(
            sealer.open_at(&format!("{sealed}*"), 5_000),
            Err(SealError::Encoding)
        );
    }

    #[test]
    fn truncated_fails() {
        let sealer = CookieSealer::new(&KEY, "_pomerium");
        let sealed = sealer.seal(&session(10_000));
        for cut in [3, 10, 40, sealed.len() - 1] {
            assert!(sealer.open_at(&sealed[..cut], 5_000).is_err(), "cut {cut}");
        }
        assert_eq!(
            sealer.open_at(&sealed[..23], 5_000),
            Err(SealError::Truncated)
        );
    }

    #[test]
    fn wrong_key_and_wrong_name_fail() {
        let sealed = CookieSealer::new(&KEY, "_pomerium").seal(&session(10_000));
        let other_key = CookieSealer::new(&[8; 32], "_pomerium");
        assert_eq!(
            other_key.open_at(&sealed, 5_000),
            Err(SealError::Authentication)
        );
        let other_name = CookieSealer::new(&KEY, "_pomerium_authenticate");
        assert_eq!(
            other_name.open_at(&sealed, 5_000),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn expired_fails() {
        let sealer = CookieSealer::new(&KEY, "_pomerium");
        let sealed = sealer.seal(&session(10_000));
        assert_eq!(sealer.open_at(&sealed, 10_000), Err(SealError::Expired));
        assert_eq!(sealer.open_at(&sealed, 99_999), Err(SealError::Expired));
        // And with the real clock: a session that expired in 1970.
        assert_eq!(sealer.open(&sealed), Err(SealError::Expired));
    }

    fn options() -> CookieOptions {
        CookieOptions::from_settings(&Settings::default())
    }

    fn header_from(set_cookies: &[String]) -> String {
        set_cookies
            .iter()
            .map(|c| c.split(';').next().unwrap().to_string())
            .filter(|pair| !pair.ends_with('='))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn chunking_round_trip_around_the_limit() {
        let opts = options();
        for len in [
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
            2 * CHUNK_SIZE + 1,
            5 * CHUNK_SIZE + 17,
        ] {
            let value: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let set = opts.set_cookie_headers(&value, None);
            assert_eq!(set.len(), len.div_ceil(CHUNK_SIZE), "len {len}");
            for c in &set {
                let (pair, _) = c.split_once(';').unwrap();
                assert!(pair.len() <= CHUNK_SIZE + opts.name.len() + 4);
            }
            let header = format!("other=1; {}; after=2", header_from(&set));
            assert_eq!(opts.read(&header).as_deref(), Some(value.as_str()));
        }
        assert_eq!(opts.read("other=1"), None);
    }

    #[test]
    fn sealed_session_survives_chunking() {
        let opts = options();
        let sealer = CookieSealer::new(&KEY, &opts.name);
        let mut s = session(10_000);
        s.groups = (0..400).map(|i| format!("group-{i}")).collect();
        let sealed = sealer.seal(&s);
        let set = opts.set_cookie_headers(&sealed, None);
        assert!(set.len() >= 2);
        let header = header_from(&set);
        let back = opts.read(&header).unwrap();
        assert_eq!(sealer.open_at(&back, 5_000), Ok(s));
    }

    #[test]
    fn stale_chunks_are_cleared() {
        let opts = options();
        let previous = "_pomerium=a; _pomerium_1=b; _pomerium_2=c; _pomerium_x=1; x=2";
        let set = opts.set_cookie_headers("short", Some(previous));
        assert_eq!(set.len(), 3);
        assert!(set[0].starts_with("_pomerium=short;"));
        assert!(set[1].starts_with("_pomerium_1=;") && set[1].contains("Max-Age=0"));
        assert!(set[2].starts_with("_pomerium_2=;") && set[2].contains("Max-Age=0"));

        let cleared = opts.clear_cookie_headers(Some(previous));
        assert_eq!(cleared.len(), 3);
        assert!(cleared.iter().all(|c| c.contains("Max-Age=0")));
        assert_eq!(opts.clear_cookie_headers(None).len(), 1);
    }

    #[test]
    fn attributes() {
        let set = options().set_cookie_headers("v", None);
        assert_eq!(
            set,
            vec!["_pomerium=v; Path=/; Max-Age=50400; HttpOnly; Secure; SameSite=Lax"]
        );
        let settings = Settings {
            insecure_server: true,
            cookie_domain: Some("example.com".into()),
            cookie_same_site: SameSite::Strict,
            cookie_expire: Duration::from_secs(60),
            ..Settings::default()
        };
        let opts = CookieOptions::from_settings(&settings).with_name("_auth");
        assert_eq!(
            opts.set_cookie_headers("v", None),
            vec!["_auth=v; Path=/; Domain=example.com; Max-Age=60; HttpOnly; SameSite=Strict"]
        );
        let none = CookieOptions {
            same_site: SameSite::None,
            ..options()
        };
        assert!(none.set_cookie_headers("v", None)[0].ends_with("Secure; SameSite=None"));
    }
}
