//! Sessions: route sessions opened from their cookie (and kept, so a signed-in user's next
//! requests cost a hash lookup instead of a decryption), and the session built when the
//! identity provider signs someone in or refreshes them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{SignIn, now};
use crate::auth::oidc::{SignedIn, groups_from_claims};
use crate::auth::{DirectoryError, SessionData, flatten_claims, new_session_id};
use crate::guard::cookies::{is_chunk_of_bytes, split_semicolon_bytes, trim_bytes};

/// How many opened sessions the cache keeps.
const CAPACITY: usize = 10_000;
/// Sealed values longer than this are opened on every request rather than kept, so the cache
/// holds at most `CAPACITY` × this many bytes of cookie text (80 MB).
const MAX_CACHED_VALUE: usize = 8 * 1024;

/// A route session as opened from its cookie, with the identity the policy engine evaluates.
#[derive(Debug)]
pub struct OpenSession {
    pub data: SessionData,
    pub identity: crate::ppl::Identity,
    /// The `jwt_claims_headers` of this session, made by the first request that sends them
    /// (`SignIn::identity_headers`) and cloned by the next while the session stays cached (a
    /// session too long to cache is opened, and its headers made, on every request). An
    /// `OpenSession` lives in the caches of the one `SignIn` that opened it, so the header names
    /// are always that `SignIn`'s.
    pub(super) claim_headers: std::sync::OnceLock<super::IdentityHeaders>,
}

impl OpenSession {
    /// The session and the identity the policy engine reads from it.
    pub fn new(data: SessionData) -> OpenSession {
        OpenSession {
            identity: data.identity(),
            data,
            claim_headers: std::sync::OnceLock::new(),
        }
    }
}

/// A cached session: the whole sealed value and the scope it opened for, compared on a hit.
type Cached = (String, String, Arc<OpenSession>);

/// Opened route sessions by the last characters of their sealed cookie value (the AEAD tag,
/// unique per sealed value), each with the whole value and the scope it opened for to compare
/// on a hit: hashing a short key instead of a kilobyte-long cookie keeps the lookup cheap on
/// every request. Only values that opened are kept; expiry is checked again on every hit.
///
/// Only a value that opened puts a key in, and its last characters are the AEAD tag, which no
/// client can choose without the key: so no client can fill the map with colliding keys, and a
/// fast hash seeded at random once per process does, where SipHash cost some 230 instructions a
/// request.
#[derive(Default)]
pub(super) struct SessionCache(RwLock<HashMap<String, Cached, foldhash::fast::RandomState>>);

/// How many used hand-offs are remembered (each for its minute of validity).
const USED_HAND_OFFS: usize = 100_000;

/// Hand-offs already accepted, until they expire: each is accepted once.
#[derive(Default)]
pub(super) struct UsedHandOffs(std::sync::Mutex<HashMap<String, i64>>);

impl UsedHandOffs {
    /// Records `id` (valid until `expires_at`); false when it was used before. When full of
    /// unexpired entries, refuses new hand-offs rather than forget used ones (fail closed).
    pub(super) fn first_use(&self, id: &str, expires_at: i64, now: i64) -> bool {
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains_key(id) {
            return false;
        }
        if used.len() >= USED_HAND_OFFS {
            used.retain(|_, until| *until > now);
            if used.len() >= USED_HAND_OFFS {
                tracing::warn!(
                    "too many sign-in hand-offs in a minute: refusing until some expire"
                );
                return false;
            }
        }
        used.insert(id.to_string(), expires_at);
        true
    }
}

/// How long a session outlives its ID token when a refresh finds the identity provider
/// unreachable (a refusal ends it at once). Within the grace the session is handed on with an ID
/// token expiry pushed out by at most [`RefreshGrace::STEP`], so the refresh is tried again soon;
/// past `id_token_expires_at + grace`, sign-in is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshGrace(pub std::time::Duration);

impl Default for RefreshGrace {
    fn default() -> Self {
        RefreshGrace(std::time::Duration::from_secs(300))
    }
}

impl RefreshGrace {
    /// How far one extension reaches (seconds).
    pub const STEP: i64 = 30;

    /// The session to hand on at `now`, or `None` once the grace is over.
    pub fn extend(&self, session: &SessionData, now: i64) -> Option<SessionData> {
        let grace = i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX);
        let end = session
            .id_token_expires_at
            .saturating_add(grace)
            .min(session.expires_at);
        if now >= end {
            return None;
        }
        let mut kept = session.without_refresh_token();
        kept.id_token_expires_at = now.saturating_add(Self::STEP).min(end);
        Some(kept)
    }
}

/// The cache key of a sealed cookie value: its last 24 characters (they encode the AEAD tag).
fn cache_key(value: &str) -> &str {
    let mut start = value.len().saturating_sub(24);
    while !value.is_char_boundary(start) {
        start -= 1;
    }
    &value[start..]
}

impl SignIn {
    /// The session of the route cookie in a `Cookie` header sent to `host`: `None` when
    /// absent, tampered, truncated, sealed under another name or key, issued for another host
    /// (or cookie domain), expired, or when its ID token has expired (a browser is then sent
    /// through sign-in, which refreshes silently).
    pub fn route_session(
        &self,
        cookie_header: &str,
        host: &str,
        now: i64,
    ) -> Option<Arc<OpenSession>> {
        let value = self.route_cookie.read(cookie_header)?;
        let scope = self.cookie_scope(host);
        let fresh = |s: &OpenSession| now < s.data.expires_at && !s.data.id_token_expired(now);
        let key = cache_key(&value);
        {
            let cache = self.sessions.0.read().unwrap_or_else(|e| e.into_inner());
            if let Some((whole, for_scope, hit)) = cache.get(key)
                && whole == &value
                && for_scope == scope
            {
                return fresh(hit).then(|| hit.clone());
            }
        }
        let data = self.route_sealer.open_for(scope, &value, now).ok()?;
        let open = Arc::new(OpenSession::new(data));
        if value.len() > MAX_CACHED_VALUE {
            return fresh(&open).then_some(open);
        }
        let mut cache = self.sessions.0.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CAPACITY {
            cache.retain(|_, (_, _, s)| fresh(s));
            if cache.len() >= CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            key.to_string(),
            (value.into_owned(), scope.to_string(), open.clone()),
        );
        drop(cache);
        fresh(&open).then_some(open)
    }

    /// A `Cookie` header's bytes without the session cookie (and its chunks), so upstreams never
    /// see it: `None` when the header has none of them (it is sent as it is), `Some(None)` when
    /// nothing else is left. The other cookies keep their bytes, UTF-8 or not.
    pub fn without_session_cookie(&self, header: &[u8]) -> Option<Option<Vec<u8>>> {
        let name = self.route_cookie.name.as_str();
        // Trimmed as the parser trims (spaces and tabs), so that what it reads as the session is
        // what is taken out. A name that is not UTF-8 is not the session's (the parser reads it
        // with U+FFFD, which no cookie name of ours holds: `cookie_name` must be a token).
        let ours = |part: &[u8]| {
            let pair_name = memchr::memchr(b'=', part).map_or(part, |at| &part[..at]);
            is_chunk_of_bytes(trim_bytes(pair_name), name)
        };
        let parts = || split_semicolon_bytes(header);
        // A header without the session is left as it is, and nothing is built for it.
        if !parts().any(ours) {
            return None;
        }
        let mut kept = Vec::new();
        for part in parts()
            .map(trim_bytes)
            .filter(|p| !p.is_empty() && !ours(p))
        {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(part);
        }
        Some((!kept.is_empty()).then_some(kept))
    }

    /// Session data for a user the provider just signed in (or refreshed): groups from the
    /// Management API when configured (role names and ids) plus the claim-based groups. When
    /// the roles cannot be read, there is no session (fail closed): a `deny` rule on a role
    /// must not be walked around by making the directory fail.
    pub(super) async fn session_from(
        &self,
        signed_in: SignedIn,
        sid: Option<String>,
    ) -> Result<SessionData, DirectoryError> {
        let mut groups = groups_from_claims(&signed_in.claims);
        if let Some(directory) = &self.directory {
            match directory.roles(&signed_in.subject).await {
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
                    tracing::warn!(user = %signed_in.subject, error = %e, "Auth0 Management API roles unavailable: sign-in stops (no session without roles)");
                    return Err(e);
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
        Ok(SessionData {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{session, sign_in};

    #[test]
    fn the_session_cookie_is_kept_from_upstreams() {
        let a = sign_in();
        let without = |header: &str| {
            a.without_session_cookie(header.as_bytes())
                .map(|kept| kept.map(|k| String::from_utf8_lossy(&k).into_owned()))
        };
        assert_eq!(
            without("a=1; _pomerium=v1.x; _pomerium_1=y; _pomerium_csrfx=z; b=2"),
            Some(Some("a=1; _pomerium_csrfx=z; b=2".to_string()))
        );
        assert_eq!(without("_pomerium=v1.x"), Some(None));
        // Trimmed as the parser trims, spaces and tabs only: what it would read as the session
        // goes, a name it would not read so (a no-break space before it) stays.
        assert_eq!(
            without("a=1;\t_pomerium_1 =y ; \u{a0}_pomerium=z"),
            Some(Some("a=1; \u{a0}_pomerium=z".to_string()))
        );
        // No session cookie (the name only in a value, or a longer name): left as it is.
        assert_eq!(without("a=_pomerium; _pomeriumx=1;b=2"), None);
        // Cookies that are not UTF-8 (Latin-1 ones another site set) keep their bytes; a name
        // that is not UTF-8 is not the session's.
        assert_eq!(
            a.without_session_cookie(b"a=\xe9t\xe9; _pomerium=v1.x; _pomerium\xe9=1"),
            Some(Some(b"a=\xe9t\xe9; _pomerium\xe9=1".to_vec()))
        );
    }

    proptest::proptest! {
        /// Whatever the bytes of a `Cookie` header, what the reader (which reads them as text)
        /// takes for the session cookie is taken out of them, and what is left reads as no
        /// session.
        #[test]
        fn what_is_read_as_the_session_is_always_taken_out(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"_pomerium"[..], b"_pomerium_1", b"_pomerium_2", b"_pomerium_01", b"_pomerium_0",
                    b"_pomeriumx", b"x", b"=", b"=", b"v", b";", b"; ", b" ", b"\t", b"\xff", b"\xe9",
                    b"\xef\xbf\xbd",
                ]),
                0..24,
            ),
        ) {
            let a = sign_in();
            let header: Vec<u8> = pieces.concat();
            let text = crate::proxy::request::text_of(&header);
            if a.route_cookie.read(&text).is_some() {
                let rest = a.without_session_cookie(&header);
                proptest::prop_assert!(rest.is_some(), "{:?}", text);
                if let Some(Some(rest)) = rest {
                    let left = crate::proxy::request::text_of(&rest);
                    proptest::prop_assert!(a.route_cookie.read(&left).is_none(), "{:?} -> {:?}", text, left);
                }
            }
        }
    }

    /// Alice's session, valid until 1000 with an ID token until 500.
    fn until_1000() -> crate::auth::SessionData {
        let mut s = session();
        s.expires_at = 1000;
        s.id_token_expires_at = 500;
        s
    }

    #[test]
    fn route_sessions_need_a_fresh_id_token() {
        let a = sign_in();
        let s = until_1000();
        let sealed = a.route_sealer.seal_for("app.test", &s);
        let header = format!("x=1; _pomerium={sealed}");
        assert!(a.route_session(&header, "app.test", 100).is_some());
        assert!(
            a.route_session(&header, "app.test", 600).is_none(),
            "ID token expired"
        );
        assert!(
            a.route_session(&header, "app.test", 1000).is_none(),
            "session expired"
        );
        let foreign = a.auth_sealer.seal(&s);
        assert!(
            a.route_session(&format!("_pomerium={foreign}"), "app.test", 100)
                .is_none()
        );
    }

    #[test]
    fn a_route_cookie_stolen_on_one_host_is_no_session_on_another() {
        let a = sign_in();
        let s = until_1000();
        let header = format!("_pomerium={}", a.route_sealer.seal_for("evil.example", &s));
        assert!(a.route_session(&header, "evil.example", 100).is_some());
        // The same value, now cached, must not open for another host either.
        assert!(a.route_session(&header, "app.test", 100).is_none());
    }

    #[test]
    fn a_hand_off_is_accepted_once() {
        let used = super::UsedHandOffs::default();
        assert!(used.first_use("id-1", 160, 100));
        assert!(!used.first_use("id-1", 160, 101), "replayed");
        assert!(used.first_use("id-2", 160, 101));
    }
}

#[cfg(test)]
mod grace_tests {
    use super::*;

    fn session(id_exp: i64, exp: i64) -> SessionData {
        SessionData {
            user: "u".into(),
            email: String::new(),
            claims: Default::default(),
            groups: vec![],
            name: None,
            sid: "s".into(),
            issued_at: 0,
            expires_at: exp,
            id_token_expires_at: id_exp,
            refresh_token: Some("rt".into()),
        }
    }

    #[test]
    fn the_grace_extends_in_steps_and_ends() {
        let g = RefreshGrace(std::time::Duration::from_secs(100));
        let s = session(1_000, 10_000);
        let kept = g.extend(&s, 1_010).expect("within the grace");
        assert_eq!(kept.id_token_expires_at, 1_010 + RefreshGrace::STEP);
        assert!(kept.refresh_token.is_none());
        assert_eq!(
            g.extend(&s, 1_090)
                .expect("near the end")
                .id_token_expires_at,
            1_100
        );
        assert!(g.extend(&s, 1_100).is_none());
        // Never past the session's own end.
        assert!(g.extend(&session(1_000, 1_005), 1_005).is_none());
        assert!(
            RefreshGrace(std::time::Duration::ZERO)
                .extend(&s, 1_000)
                .is_none()
        );
    }
}
