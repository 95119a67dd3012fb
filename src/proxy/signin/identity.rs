//! The identity an allowed request carries to its upstream: the signed assertion
//! (`X-Pomerium-Jwt-Assertion`, cached per session and route host) and the
//! `jwt_claims_headers`.

use std::sync::LazyLock;

use pingora::http::CasedHeaderName;

use super::{OpenSession, SignIn, SignInError};
use crate::auth::SessionData;

/// The headers an allowed request carries to its upstream, each name prepared once with its
/// spelling on the wire (as Pingora writes a `HeaderName`), so that adding it neither copies
/// the name nor, for a name in its usual spelling, looks it up.
pub type IdentityHeaders = Vec<(CasedHeaderName, http::HeaderValue)>;

static ASSERTION: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("x-pomerium-jwt-assertion"));
static IMPERSONATE_USER: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("impersonate-user"));
static IMPERSONATE_GROUP: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("impersonate-group"));

impl SignIn {
    /// The assertion for `route_host` (`host[:port]` as addressed).
    pub(super) fn assertion(
        &self,
        route_host: &str,
        session: &SessionData,
        now: i64,
    ) -> Result<http::HeaderValue, SignInError> {
        self.assertions
            .get_or_sign(&self.signing_key, route_host, session, now)
            .map_err(SignInError::Assertion)
    }

    /// The identity headers for an allowed request. Fails closed: without its assertion, or
    /// with a claim whose text no header can carry (a control character), the request is not
    /// sent at all, since an upstream may decide access by what the headers say.
    ///
    /// The claim headers are made once per opened session and cloned after that (a session's
    /// claims do not change while it is open; a session too long to cache is opened again for
    /// each request); a session whose claims cannot all be sent keeps failing, since nothing is
    /// kept for it.
    pub fn identity_headers(
        &self,
        route_host: &str,
        open: &OpenSession,
        out: &mut IdentityHeaders,
    ) -> Result<(), SignInError> {
        let session = &open.data;
        let token = self.assertion(route_host, session, super::now())?;
        out.push((ASSERTION.clone(), token));
        let claims = match open.claim_headers.get() {
            Some(claims) => claims,
            None => {
                let made = self.claim_headers(session)?;
                open.claim_headers.get_or_init(|| made)
            }
        };
        out.extend(claims.iter().cloned());
        Ok(())
    }

    /// The `jwt_claims_headers` of `session`, in their configured order; a claim the session
    /// does not have sends no header.
    fn claim_headers(&self, session: &SessionData) -> Result<IdentityHeaders, SignInError> {
        let mut out = Vec::with_capacity(self.claims_headers.len());
        for (header, claim) in &self.claims_headers {
            let Some(text) = claim_text(session, claim) else {
                continue;
            };
            let value =
                http::HeaderValue::try_from(text).map_err(|_| SignInError::ClaimNotAHeader {
                    header: header.name().to_string(),
                    claim: claim.clone(),
                })?;
            out.push((header.clone(), value));
        }
        Ok(out)
    }
}

/// Kubernetes impersonation of the user (`Impersonate-User`: the email, else the user id;
/// one `Impersonate-Group` per group, as the Kubernetes API reads them), for a route that
/// sends the upstream its service account token. Values a header cannot carry are left out,
/// which can only take rights away: without `Impersonate-User` the token is not sent at all
/// (`upstream::prepare_request`), and a group left out grants nothing.
pub fn impersonation_headers(session: &SessionData, out: &mut IdentityHeaders) {
    let user = if session.email.is_empty() {
        &session.user
    } else {
        &session.email
    };
    let pairs = std::iter::once((&*IMPERSONATE_USER, user.as_str())).chain(
        session
            .groups
            .iter()
            .map(|g| (&*IMPERSONATE_GROUP, g.as_str())),
    );
    for (name, value) in pairs {
        if !value.is_empty()
            && let Ok(value) = http::HeaderValue::from_str(value)
        {
            out.push((name.clone(), value));
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
    Some(parts.join(","))
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
        let text: Vec<(&str, &str)> = out
            .iter()
            .map(|(k, v)| (k.name().as_str(), v.to_str().unwrap_or("?")))
            .collect();
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

    /// Sign-in (an Auth0 tenant) sending the claims in `jwt_claims_headers` (a YAML list's
    /// items).
    fn sign_in_sending(claims: &str) -> SignIn {
        sign_in_with_claims_headers(&format!("[{claims}]"))
    }

    /// Sign-in (an Auth0 tenant) whose `jwt_claims_headers` is `value` (YAML: a list of claims
    /// or a map of header to claim).
    fn sign_in_with_claims_headers(value: &str) -> SignIn {
        let settings = crate::config::Settings::parse(
            &format!(
                "authenticate_service_url: https://auth.example.com
idp_provider: auth0
idp_provider_url: https://tenant.auth0.com
idp_client_id: c
idp_client_secret: s
jwt_claims_headers: {value}
"
            ),
            "t.yaml",
            |_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        SignIn::from_settings(&settings)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no sign-in"))
    }

    /// Every identity header an upstream may get (the assertion, each claim header, the
    /// impersonation headers) is one that cleaning a request removes, in any spelling a client
    /// writes it: so an upstream request only has one when the route's own header settings put
    /// it there (`upstream::prepare_request` removes them only then).
    #[test]
    fn every_identity_header_sent_is_one_a_client_cannot_send() {
        let sign_in =
            sign_in_with_claims_headers("{X-Email: email, x-pomerium-claim-groups: groups}");
        let mut s = session();
        s.expires_at = i64::MAX;
        let mut sent = Vec::new();
        sign_in
            .identity_headers("app.test", &OpenSession::new(s.clone()), &mut sent)
            .unwrap_or_else(|e| panic!("{e}"));
        impersonation_headers(&s, &mut sent);
        let mut names: Vec<String> = sent.iter().map(|(k, _)| k.name().to_string()).collect();
        names.dedup();
        assert_eq!(
            names,
            [
                "x-pomerium-jwt-assertion",
                "x-email",
                "x-pomerium-claim-groups",
                "impersonate-user",
                "impersonate-group"
            ]
        );
        let mut req = pingora::http::RequestHeader::build("GET", b"/", None)
            .unwrap_or_else(|e| panic!("{e}"));
        req.insert_header("host", "app.test")
            .unwrap_or_else(|e| panic!("{e}"));
        for name in &names {
            let upper = name.to_ascii_uppercase();
            for spelling in [name.clone(), upper.clone(), upper.replace('-', "_")] {
                req.append_header(spelling, "forged")
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        crate::proxy::sanitize::sanitize(
            &mut req,
            &crate::routes::Global::default(),
            sign_in.claim_header_names(),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host"]);
    }

    /// The claim headers are made by an opened session's first request and cloned by the next;
    /// a session whose claims cannot all be sent keeps nothing and is refused every time.
    #[test]
    fn claim_headers_are_made_once_per_open_session() {
        let sign_in = sign_in_sending("email, groups");
        let mut s = session();
        s.expires_at = i64::MAX;
        let open = OpenSession::new(s.clone());
        assert!(open.claim_headers.get().is_none());
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for out in [&mut first, &mut second] {
            sign_in
                .identity_headers("app.test", &open, out)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(first, second);
        let kept = open.claim_headers.get().map(|c| c.len());
        assert_eq!(kept, Some(2), "email and groups kept with the session");
        assert_eq!(first[1].1, "alice@example.com");
        assert_eq!(first[2].1, "g1,g2");
        // A group no header can carry: refused, twice, and nothing kept.
        s.groups.push("a\nb".into());
        let open = OpenSession::new(s);
        for _ in 0..2 {
            let refused = sign_in.identity_headers("app.test", &open, &mut Vec::new());
            assert!(matches!(refused, Err(SignInError::ClaimNotAHeader { .. })));
        }
        assert!(open.claim_headers.get().is_none());
    }

    /// A claim no header can carry (a DEL in the name, a line break in another claim) stops
    /// the request with a page that names the header and the claim; a session whose claims all
    /// fit gets the assertion first, then the claim headers.
    #[test]
    fn a_claim_no_header_can_carry_stops_the_request() {
        let sign_in = sign_in_sending("email, name, bad");
        let mut s = session();
        s.expires_at = i64::MAX;
        s.claims.insert("bad".to_string(), vec!["fine".into()]);
        s.name = Some("Al\u{7f}ice".into());
        let mut out = Vec::new();
        match sign_in.identity_headers("app.test", &OpenSession::new(s.clone()), &mut out) {
            Err(SignInError::ClaimNotAHeader { header, claim }) => {
                assert_eq!(
                    (header.as_str(), claim.as_str()),
                    ("x-pomerium-claim-name", "name")
                );
            }
            other => panic!("{other:?}"),
        }
        s.name = Some("Alice".into());
        s.claims.insert("bad".to_string(), vec!["a\nb".into()]);
        out.clear();
        assert!(matches!(
            sign_in.identity_headers("app.test", &OpenSession::new(s.clone()), &mut out),
            Err(SignInError::ClaimNotAHeader { .. })
        ));
        s.claims.insert("bad".to_string(), vec!["fine".into()]);
        out.clear();
        sign_in
            .identity_headers("app.test", &OpenSession::new(s.clone()), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = out.iter().map(|(k, _)| k.name().as_str()).collect();
        assert_eq!(
            names,
            vec![
                "x-pomerium-jwt-assertion",
                "x-pomerium-claim-bad",
                "x-pomerium-claim-email",
                "x-pomerium-claim-name"
            ]
        );
        assert_eq!(out[2].1, "alice@example.com");
        // Prepared once, each name is written as inserting its `HeaderName` always wrote it
        // (lower case here), in the spelling a header keeps without a map of spellings.
        impersonation_headers(&s, &mut out);
        for (name, _) in &out {
            assert_eq!(
                *name,
                CasedHeaderName::from(name.name().clone()),
                "{name:?}"
            );
            assert_eq!(name.case().as_slice(), name.name().as_str().as_bytes());
        }
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
        // Whether a header can carry it is decided where the header is made.
        assert_eq!(claim_text(&s, "bad").as_deref(), Some("a\nb"));
        assert_eq!(claim_text(&s, "missing"), None);
        assert_eq!(claim_text(&s, "name"), None);
    }
}
