//! API clients identified by an identity provider token instead of a session cookie
//! (Pomerium's `bearer_token_format` and `idp_access_token_allowed_audiences`). A verified
//! token becomes a session exactly as a sign-in does (claims, claim groups, Auth0 roles from the
//! directory), kept until the token expires so the next requests with it cost a hash lookup.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use super::{OpenSession, SignIn, SignInError, now};
use crate::guard::bearer::{IdpToken, TokenKind};

/// How many verified tokens are kept.
const CAPACITY: usize = 10_000;

/// Verified tokens by the SHA-256 of their kind, allowed audiences and value: the same access
/// token checked against another route's audiences is checked again.
#[derive(Default)]
pub(super) struct TokenCache(RwLock<HashMap<[u8; 32], Arc<OpenSession>>>);

fn cache_key(token: &IdpToken, audiences: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    match token.kind {
        TokenKind::Access => {
            h.update(b"access\0");
            for a in audiences {
                h.update(a.as_bytes());
                h.update([0]);
            }
        }
        TokenKind::Identity => h.update(b"identity\0"),
    }
    h.update([0xff]);
    h.update(token.value.as_bytes());
    h.finalize().into()
}

impl SignIn {
    /// The session of a token an API client presented, verified (or found verified and not yet
    /// expired). A token that does not verify is [`SignInError::TokenRefused`] (401, naming
    /// why); roles that cannot be read are [`SignInError::Directory`] (503, fail closed).
    pub async fn token_session(
        &self,
        token: &IdpToken,
        audiences: &[String],
    ) -> Result<Arc<OpenSession>, SignInError> {
        let now = now();
        let key = cache_key(token, audiences);
        if let Some(hit) = self
            .tokens
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && now < hit.data.expires_at
        {
            return Ok(hit.clone());
        }
        let verified = match token.kind {
            TokenKind::Access => self.oidc.verify_access_token(&token.value, audiences).await,
            TokenKind::Identity => self.oidc.verify_id_token(&token.value).await,
        };
        let signed_in = verified.map_err(|e| {
            tracing::info!(kind = ?token.kind, reason = %e, "identity provider token refused");
            SignInError::TokenRefused(e)
        })?;
        let expires_at = signed_in.id_token_expires_at;
        // The session id names the token (the assertion cache is keyed by it) without being it.
        let sid = format!("token-{}", hex::encode(&key[..12]));
        let mut data =
            self.session_from(signed_in, Some(sid))
                .await
                .map_err(|e| SignInError::Directory {
                    retry: None,
                    retry_after: e.retry_after().map(|d| d.as_secs()),
                })?;
        data.expires_at = expires_at;
        let open = Arc::new(OpenSession::new(data));
        let mut cache = self.tokens.0.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CAPACITY {
            cache.retain(|_, s| now < s.data.expires_at);
            if cache.len() >= CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, open.clone());
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(kind: TokenKind, value: &str) -> IdpToken {
        IdpToken {
            kind,
            value: value.into(),
            in_authorization: true,
        }
    }

    #[test]
    fn a_token_is_cached_per_kind_and_audiences() {
        let a = token(TokenKind::Access, "t");
        let aud = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        assert_eq!(cache_key(&a, &aud(&["x"])), cache_key(&a, &aud(&["x"])));
        assert_ne!(cache_key(&a, &aud(&["x"])), cache_key(&a, &aud(&["y"])));
        assert_ne!(
            cache_key(&a, &aud(&["x", "y"])),
            cache_key(&a, &aud(&["xy"]))
        );
        assert_ne!(
            cache_key(&a, &[]),
            cache_key(&token(TokenKind::Identity, "t"), &[])
        );
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let s = super::super::fixtures::sign_in();
        let t = token(TokenKind::Identity, "h.p.s");
        let mut data = super::super::fixtures::session();
        data.expires_at = now() + 60;
        let open = Arc::new(OpenSession::new(data));
        let key = cache_key(&t, &[]);
        s.tokens.0.write().unwrap().insert(key, open.clone());
        let hit = s.token_session(&t, &[]).await.expect("cached");
        assert!(Arc::ptr_eq(&hit, &open), "no verification on a hit");
        // Expired: verified again (and this made-up token fails), so nothing stale is served.
        let mut stale = super::super::fixtures::session();
        stale.expires_at = now() - 1;
        let stale = Arc::new(OpenSession::new(stale));
        s.tokens.0.write().unwrap().insert(key, stale);
        assert!(s.token_session(&t, &[]).await.is_err());
    }

    #[tokio::test]
    async fn an_access_token_without_allowed_audiences_is_refused_before_any_lookup() {
        let s = super::super::fixtures::sign_in();
        let e = s
            .token_session(&token(TokenKind::Access, "a.b.c"), &[])
            .await
            .unwrap_err();
        let r = e.reply("rid", true, &crate::config::Branding::default());
        assert_eq!(r.status, 401);
        let body = String::from_utf8(r.body.unwrap().1.to_vec()).unwrap();
        assert!(
            body.contains("idp_access_token_allowed_audiences"),
            "{body}"
        );
    }
}
