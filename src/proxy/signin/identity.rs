//! The identity an allowed request carries to its upstream: the signed assertion
//! (`X-Pomerium-Jwt-Assertion`, cached per session and route host) and the
//! `jwt_claims_headers`.

use super::{SignIn, SignInError};
use crate::auth::SessionData;

impl SignIn {
    /// The assertion for `route_host` (`host[:port]` as addressed).
    pub(super) fn assertion(
        &self,
        route_host: &str,
        session: &SessionData,
        now: i64,
    ) -> Result<String, SignInError> {
        self.assertions
            .get_or_sign(&self.signing_key, route_host, session, now)
            .map_err(SignInError::Assertion)
    }

    /// The identity headers for an allowed request.
    pub fn identity_headers(
        &self,
        route_host: &str,
        session: &SessionData,
        out: &mut Vec<(http::HeaderName, String)>,
    ) {
        match self.assertion(route_host, session, super::now()) {
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

/// Kubernetes impersonation of the user (`Impersonate-User`: the email, else the user id;
/// one `Impersonate-Group` per group, as the Kubernetes API reads them), for a route that
/// sends the upstream its service account token. Values a header cannot carry are left out.
pub fn impersonation_headers(session: &SessionData, out: &mut Vec<(http::HeaderName, String)>) {
    let user = if session.email.is_empty() {
        &session.user
    } else {
        &session.email
    };
    let pairs = std::iter::once(("impersonate-user", user.as_str())).chain(
        session
            .groups
            .iter()
            .map(|g| ("impersonate-group", g.as_str())),
    );
    for (name, value) in pairs {
        if !value.is_empty() && http::HeaderValue::from_str(value).is_ok() {
            out.push((http::HeaderName::from_static(name), value.to_string()));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::session;
    use super::*;

    #[test]
    fn the_user_is_impersonated_by_email_else_id_with_groups_joined() {
        let mut s = session();
        let mut out = Vec::new();
        impersonation_headers(&s, &mut out);
        let text: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            text,
            vec![
                ("impersonate-user", "alice@example.com"),
                ("impersonate-group", "g1"),
                ("impersonate-group", "g2")
            ]
        );
        s.email.clear();
        s.groups.clear();
        out.clear();
        impersonation_headers(&s, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, "auth0|alice");
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
}
