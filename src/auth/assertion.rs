//! `X-Pomerium-Jwt-Assertion`: a JWT telling the upstream who the user is.
//!
//! Signed with `signing_key`: ES256 for an EC P-256 key (PKCS#8 `PRIVATE KEY` or SEC1
//! `EC PRIVATE KEY`), RS256 for an RSA key (PKCS#8 or PKCS#1). The header's `kid` is the key's
//! RFC 7638 JWK thumbprint (SHA-256, URL-safe base64). Claims: `iss` and `aud` = the route host,
//! `sub` and `user` = the user id, `email`, `groups`, `name` (when known), `sid`, `iat`, `exp`
//! (`iat` + 5 minutes) and a random `jti`.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};

use super::cookie::SessionData;

/// Lifetime of an assertion.
pub const ASSERTION_TTL_SECS: i64 = 5 * 60;
/// A cached assertion is replaced when it has less than this left.
pub const ASSERTION_REFRESH_MARGIN_SECS: i64 = 60;
/// Path where route hosts serve [`SigningKey::jwks`].
pub const JWKS_PATH: &str = "/.well-known/pomerium/jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("signing_key is neither an EC P-256 nor an RSA private key in PEM")]
    UnsupportedKey,
    #[error("could not sign the assertion: {0}")]
    Sign(String),
}

/// The claims of an assertion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub user: String,
    pub email: String,
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// The key assertions are signed with, and its public JWK.
pub struct SigningKey {
    key: EncodingKey,
    algorithm: Algorithm,
    jwk: Jwk,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from PEM: EC P-256 (ES256) or RSA (RS256).
    pub fn from_pem(pem: &str) -> Result<SigningKey, AssertionError> {
        let ec = p256::SecretKey::from_pkcs8_pem(pem)
            .ok()
            .or_else(|| p256::SecretKey::from_sec1_pem(pem).ok());
        if let Some(secret) = ec {
            return Self::from_p256(&secret);
        }
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| AssertionError::UnsupportedKey)?;
        Self::with_key(key, Algorithm::RS256)
    }

    /// A new random EC P-256 key (ES256), for when no `signing_key` is configured.
    pub fn generate() -> SigningKey {
        loop {
            let bytes: [u8; 32] = rand::random();
            // Fails only for zero or values above the curve order: practically never.
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes)
                && let Ok(key) = Self::from_p256(&secret)
            {
                return key;
            }
        }
    }

    fn from_p256(secret: &p256::SecretKey) -> Result<SigningKey, AssertionError> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| AssertionError::UnsupportedKey)?;
        Self::with_key(EncodingKey::from_ec_der(der.as_bytes()), Algorithm::ES256)
    }

    fn with_key(key: EncodingKey, algorithm: Algorithm) -> Result<SigningKey, AssertionError> {
        let mut jwk =
            Jwk::from_encoding_key(&key, algorithm).map_err(|_| AssertionError::UnsupportedKey)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| AssertionError::UnsupportedKey)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(SigningKey {
            key,
            algorithm,
            jwk,
            kid,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (with `kid`, `use: sig` and `alg`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The JWKS document served at [`JWKS_PATH`].
    pub fn jwks(&self) -> serde_json::Value {
        let set = JwkSet {
            keys: vec![self.jwk.clone()],
        };
        serde_json::to_value(set).unwrap_or_else(|_| serde_json::json!({ "keys": [] }))
    }

    /// The claims of an assertion for `route_host` issued at `now`.
    pub fn claims(route_host: &str, session: &SessionData, now: i64) -> AssertionClaims {
        let jti: [u8; 16] = rand::random();
        AssertionClaims {
            iss: route_host.to_string(),
            aud: route_host.to_string(),
            sub: session.user.clone(),
            user: session.user.clone(),
            email: session.email.clone(),
            groups: session.groups.clone(),
            name: session.name.clone(),
            sid: session.sid.clone(),
            iat: now,
            exp: now + ASSERTION_TTL_SECS,
            jti: URL_SAFE_NO_PAD.encode(jti),
        }
    }

    /// Signs an assertion for `route_host` (host, or host:port when not the default port).
    pub fn sign(
        &self,
        route_host: &str,
        session: &SessionData,
        now: i64,
    ) -> Result<String, AssertionError> {
        self.sign_claims(&Self::claims(route_host, session, now))
    }

    pub fn sign_claims(&self, claims: &AssertionClaims) -> Result<String, AssertionError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| AssertionError::Sign(e.to_string()))
    }
}

/// Signed assertions by session id and route host, reused until
/// [`ASSERTION_REFRESH_MARGIN_SECS`] before they expire. Holds at most `capacity` entries:
/// when full, expired entries are dropped, then everything if that was not enough.
///
/// A token is kept as the header value it is sent as, checked once when signed: each request
/// shares it (no copy, no check of its bytes again).
pub struct AssertionCache {
    capacity: usize,
    /// Keyed by [`cache_key`].
    entries: Mutex<Entries>,
}

/// Tokens by [`cache_key`]. SipHash (the standard map's hash), not a faster one: the route host
/// in the key is the host the client addressed, which a wildcard route lets a signed-in client
/// choose freely, request after request.
type Entries = HashMap<String, (http::HeaderValue, i64)>;

/// The cache's key: the session id, a NUL (in neither a session id nor a host) and the route
/// host, written into `out`.
fn cache_key(out: &mut String, sid: &str, route_host: &str) {
    out.clear();
    out.push_str(sid);
    out.push('\0');
    out.push_str(route_host);
}

impl AssertionCache {
    pub fn new(capacity: usize) -> AssertionCache {
        AssertionCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached assertion for this session and host, or a new one.
    pub fn get_or_sign(
        &self,
        key: &SigningKey,
        route_host: &str,
        session: &SessionData,
        now: i64,
    ) -> Result<http::HeaderValue, AssertionError> {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let hit = KEY.with_borrow_mut(|k| {
            cache_key(k, &session.sid, route_host);
            self.lock()
                .get(k.as_str())
                .filter(|(_, exp)| now < exp - ASSERTION_REFRESH_MARGIN_SECS)
                .map(|(token, _)| token.clone())
        });
        if let Some(token) = hit {
            return Ok(token);
        }
        let claims = SigningKey::claims(route_host, session, now);
        // A JWT (base64url and dots) is always a valid header value.
        let token =
            http::HeaderValue::from_maybe_shared(bytes::Bytes::from(key.sign_claims(&claims)?))
                .map_err(|e| AssertionError::Sign(e.to_string()))?;
        let mut key_text = String::new();
        cache_key(&mut key_text, &session.sid, route_host);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key_text) {
            entries.retain(|_, (_, exp)| now < *exp - ASSERTION_REFRESH_MARGIN_SECS);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key_text, (token.clone(), claims.exp));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const NOW: i64 = 1_800_000_000;
    const RSA_PEM: &str = include_str!("testdata/test-only-rsa.pem");
    const EC_SEC1_PEM: &str = include_str!("testdata/test-only-ec-sec1.pem");

    fn session(sid: &str) -> SessionData {
        SessionData {
            user: "auth0|alice".into(),
            email: "alice@example.com".into(),
            claims: Default::default(),
            groups: vec!["admin".into(), "dev".into()],
            name: Some("Alice Example".into()),
            sid: sid.into(),
            issued_at: NOW,
            expires_at: NOW + 3600,
            id_token_expires_at: NOW + 600,
            refresh_token: None,
        }
    }

    /// Verifies `token` the way an upstream would: with the JWKS document.
    fn verify(jwks: &serde_json::Value, token: &str, host: &str) -> AssertionClaims {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[host]);
        validation.set_issuer(&[host]);
        // The tests use a fixed clock in the future; expiry is checked by hand below.
        validation.validate_exp = false;
        jsonwebtoken::decode::<AssertionClaims>(token, &key, &validation)
            .unwrap()
            .claims
    }

    fn check_sign_and_verify(key: &SigningKey, alg: Algorithm) {
        assert_eq!(key.algorithm(), alg);
        let token = key.sign("app.example.com", &session("sid-1"), NOW).unwrap();
        let claims = verify(&key.jwks(), &token, "app.example.com");
        assert_eq!(claims.sub, "auth0|alice");
        assert_eq!(claims.user, "auth0|alice");
        assert_eq!(claims.email, "alice@example.com");
        assert_eq!(claims.groups, vec!["admin", "dev"]);
        assert_eq!(claims.name.as_deref(), Some("Alice Example"));
        assert_eq!(claims.sid, "sid-1");
        assert_eq!(claims.iat, NOW);
        assert_eq!(claims.exp, NOW + 300);
        assert!(!claims.jti.is_empty());
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        // Another audience is refused.
        let set: JwkSet = serde_json::from_value(key.jwks()).unwrap();
        let dk = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_audience(&["other.example.com"]);
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<AssertionClaims>(&token, &dk, &validation).is_err());
    }

    #[test]
    fn generated_es256() {
        let key = SigningKey::generate();
        check_sign_and_verify(&key, Algorithm::ES256);
        let jwks = key.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    }

    #[test]
    fn ec_pem_sec1_and_pkcs8_same_kid() {
        let sec1 = SigningKey::from_pem(EC_SEC1_PEM).unwrap();
        check_sign_and_verify(&sec1, Algorithm::ES256);
        let secret = p256::SecretKey::from_sec1_pem(EC_SEC1_PEM).unwrap();
        let pkcs8 = secret.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let again = SigningKey::from_pem(&pkcs8).unwrap();
        assert_eq!(sec1.kid(), again.kid());
    }

    #[test]
    fn rsa_pem_rs256() {
        let key = SigningKey::from_pem(RSA_PEM).unwrap();
        check_sign_and_verify(&key, Algorithm::RS256);
        assert_eq!(key.jwks()["keys"][0]["kty"], "RSA");
    }

    #[test]
    fn bad_pem() {
        assert!(SigningKey::from_pem("not a key").is_err());
        assert!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn thumbprint_is_rfc7638() {
        let key = SigningKey::from_pem(EC_SEC1_PEM).unwrap();
        let jwk = serde_json::to_value(key.public_jwk()).unwrap();
        // Required members in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            jwk["x"], jwk["y"]
        );
        use sha2::Digest;
        let expected = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()));
        assert_eq!(key.kid(), expected);
        assert_eq!(SigningKey::from_pem(EC_SEC1_PEM).unwrap().kid(), key.kid());
        assert_ne!(SigningKey::generate().kid(), key.kid());
    }

    #[test]
    fn cache_reuses_until_near_expiry() {
        let key = SigningKey::generate();
        let cache = AssertionCache::new(100);
        let s = session("sid-1");
        let first = cache.get_or_sign(&key, "app.example.com", &s, NOW).unwrap();
        let hit = cache
            .get_or_sign(&key, "app.example.com", &s, NOW + 239)
            .unwrap();
        assert_eq!(first, hit);
        // Another host or session: another token.
        let other_host = cache
            .get_or_sign(&key, "b.example.com", &s, NOW + 1)
            .unwrap();
        assert_ne!(first, other_host);
        let other_sid = cache
            .get_or_sign(&key, "app.example.com", &session("sid-2"), NOW + 1)
            .unwrap();
        assert_ne!(first, other_sid);
        // Within a minute of expiry: a fresh one.
        let refreshed = cache
            .get_or_sign(&key, "app.example.com", &s, NOW + 240)
            .unwrap();
        assert_ne!(first, refreshed);
        let claims = verify(&key.jwks(), refreshed.to_str().unwrap(), "app.example.com");
        assert_eq!(claims.iat, NOW + 240);
    }

    #[test]
    fn cache_is_bounded() {
        let key = SigningKey::generate();
        let cache = AssertionCache::new(3);
        for i in 0..10 {
            cache
                .get_or_sign(&key, "app.example.com", &session(&format!("s{i}")), NOW)
                .unwrap();
            assert!(cache.len() <= 3);
        }
        assert!(!cache.is_empty());
    }
}
