#![no_main]
//! Signed URLs, the sign-in hand-off and the OAuth state, with fixed keys. The first line of
//! the input is a URL, the second a sealed value (an OAuth state or PKCE verifier).
//! - Received as-is, nothing panics and a URL that verifies was signed with our secret (the
//!   seeds carry such URLs).
//! - Signed by us, a URL verifies until its expiry and not after, and not with another secret.
//! - A hand-off made for a URL with a host opens on the callback URL it produced, giving back
//!   the session and the return URL.
//! - An OAuth state sealed by us opens to itself.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis::auth::{HandOff, OAuthState, SealKey, SessionData, SignedError, UrlSigner};
use url::Url;

const COOKIE_KEY: [u8; 32] = [0x42; 32];
const SHARED_SECRET: &[u8] = b"fuzz-shared-secret";
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

fn session() -> SessionData {
    SessionData {
        user: "auth0|alice".into(),
        email: "alice@example.com".into(),
        claims: Default::default(),
        groups: vec!["admin".into()],
        name: None,
        sid: "sid".into(),
        issued_at: NOW - 10,
        expires_at: NOW + 3600,
        id_token_expires_at: NOW + 3600,
        refresh_token: Some("refresh".into()),
    }
}

fuzz_target!(|text: &str| {
    let mut lines = text.splitn(2, '\n');
    let first = lines.next().unwrap_or_default();
    let second = lines.next().unwrap_or_default();
    let key = SealKey::new(&COOKIE_KEY);
    let signer = UrlSigner::new(SHARED_SECRET);

    if let Ok(state) = OAuthState::open(&key, second, NOW) {
        assert!(NOW < state.expires_at);
    }

    let Ok(url) = Url::parse(first) else {
        return;
    };
    let _ = signer.verify_url(&url, NOW);
    let _ = HandOff::open(&key, &signer, &url, NOW);

    let signed = signer.sign_url_at(&url, Duration::from_secs(60), NOW);
    assert_eq!(signer.verify_url(&signed, NOW), Ok(()), "{signed}");
    assert_eq!(
        signer.verify_url(&signed, NOW + 60),
        Err(SignedError::Expired)
    );
    assert_eq!(
        UrlSigner::new(b"another secret").verify_url(&signed, NOW),
        Err(SignedError::BadSignature)
    );
    // What travels is the text: the URL parsed again from it verifies too.
    let reparsed = Url::parse(signed.as_str()).expect("a signed URL parses");
    assert_eq!(signer.verify_url(&reparsed, NOW), Ok(()), "{signed}");

    let session = session();
    if let Some(callback) = HandOff::callback_url(&key, &signer, &session, &url, second, NOW) {
        let callback = Url::parse(callback.as_str()).expect("a callback URL parses");
        match HandOff::open(&key, &signer, &callback, NOW) {
            Ok(ticket) => {
                assert_eq!(ticket.session, session.without_refresh_token());
                assert_eq!(ticket.return_to.as_str(), url.as_str());
                assert_eq!(ticket.matches_browser(second), !second.is_empty());
            }
            Err(e) => panic!("hand-off for {url} does not open at {callback}: {e}"),
        }
        assert!(HandOff::open(&key, &signer, &callback, NOW + 60).is_err());
    }

    let state = OAuthState::new(&url, second, second, NOW);
    assert_eq!(
        OAuthState::open(&key, &state.seal(&key), NOW).as_ref(),
        Ok(&state)
    );
});
