//! Prints a sealed route-host session cookie value, for benchmarks and manual tests without an
//! identity provider:
//!
//!     cargo run --example mint_session -- COOKIE_SECRET_BASE64 HOST [COOKIE_NAME] [EMAIL] [ROLE...]
//!
//! The session is for `auth0|bench`, valid for an hour, with the roles as the
//! `https://example.com/roles` claim and as groups. Route cookies open only on the host they
//! were sealed for: give the route's host (or the `cookie_domain`, when one is set).
use base64::Engine;
use portcullis::auth::{CookieSealer, SessionData, flatten_claims, new_session_id};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secret = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: mint_session COOKIE_SECRET HOST [NAME] [EMAIL] [ROLE...]")
    })?;
    let host = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: mint_session COOKIE_SECRET HOST [NAME] [EMAIL] [ROLE...]")
    })?;
    let name = args.next().unwrap_or_else(|| "_pomerium".into());
    let email = args.next().unwrap_or_else(|| "bench@example.com".into());
    let roles: Vec<String> = args.collect();
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the cookie secret must be 32 bytes"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": "auth0|bench",
        "email": email,
        "https://example.com/roles": roles,
    });
    let session = SessionData {
        user: "auth0|bench".into(),
        email,
        claims: flatten_claims(&claims),
        groups: roles,
        name: Some("Bench User".into()),
        sid: new_session_id(),
        issued_at: now,
        expires_at: now + 3600,
        id_token_expires_at: now + 3600,
        refresh_token: None,
    };
    println!(
        "{}",
        CookieSealer::new(&key, &name).seal_for(&host, &session)
    );
    Ok(())
}
