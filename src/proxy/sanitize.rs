//! What is done to every request before anything reads it: header limits, identity and
//! forwarding headers a client may not set (in every spelling), the authority checked, and the
//! path made canonical — so that routing, policy and the upstream all see the same request.

use std::borrow::Cow;
use std::net::IpAddr;

use pingora::http::RequestHeader;

use super::request;
use crate::guard::bearer::{IdpToken, carries_token, explicit_token, is_pomerium_authorization};
use crate::guard::headers::{
    is_forwarding_header, is_identity_header, is_impersonation_header, trusted_client_ip,
};
use crate::guard::host::{HostName, parse_authority};
use crate::guard::path::canonical_path;
use crate::routes::Global;

/// At most this many request header fields (Pingora reads at most 256 into memory).
pub const MAX_HEADERS: usize = 128;
/// At most this many bytes of request header names and values together.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why a request is refused before routing: the status and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
}

impl Refusal {
    fn bad_request(detail: String) -> Refusal {
        Refusal {
            status: 400,
            title: "Bad Request",
            detail,
        }
    }
}

/// A request as `sanitize` left it: what later steps read without parsing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clean {
    /// The client address to trust: `peer`, or the one trusted proxies put in `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// The host the client addressed (lower case, no port or trailing dot).
    pub host: HostName,
    /// The port the client addressed, when it named one.
    pub port: Option<u16>,
    /// The certificate chain the client presented on this TLS connection, if any.
    pub client_chain: Option<crate::tls::PeerChain>,
    /// An identity provider token in one of Pomerium's explicit forms (its header is removed).
    pub token: Option<IdpToken>,
    /// Whether the request has an `Upgrade` header, and whether it has a `Cookie` header (found
    /// in the pass over the names, so that a request without them looks neither up).
    pub has_upgrade: bool,
    pub has_cookie: bool,
}

/// Clean `req` in place. `claim_headers` are the `jwt_claims_headers` names.
pub fn sanitize<C>(
    req: &mut RequestHeader,
    global: &Global,
    claim_headers: C,
    peer: Option<IpAddr>,
) -> Result<Clean, Refusal>
where
    C: IntoIterator + Clone,
    C::Item: AsRef<str>,
{
    let count = req.headers.len();
    let bytes: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(Refusal {
            status: 431,
            title: "Request Header Fields Too Large",
            detail: format!(
                "The request has {count} header fields ({bytes} bytes); at most {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes are accepted."
            ),
        });
    }

    // Identity is ours to assert; forwarding headers only from trusted proxies.
    let trusted = global.xff_num_trusted_hops;
    let client_ip = match peer {
        Some(peer) if trusted > 0 => {
            let xff: Vec<&str> = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            Some(trusted_client_ip(peer, &xff, trusted))
        }
        other => other,
    };
    // One pass over the names: those to remove, and whether any header can carry a token (most
    // requests have none, and then none is looked up).
    let mut drop: Vec<http::HeaderName> = Vec::new();
    let mut token_headers = false;
    let (mut has_upgrade, mut has_cookie) = (false, false);
    for k in req.headers.keys() {
        token_headers |= carries_token(k);
        has_upgrade |= k == http::header::UPGRADE;
        has_cookie |= k == http::header::COOKIE;
        if is_identity_header(k.as_str(), claim_headers.clone())
            || is_impersonation_header(k.as_str())
            || (trusted == 0 && is_forwarding_header(k.as_str()))
        {
            drop.push(k.clone());
        }
    }
    // Pomerium's explicit token forms are read before their headers go: the identity-header
    // rule removes `X-Pomerium-IDP-*`, and an `Authorization` in a Pomerium form is ours too.
    let token = if token_headers {
        explicit_token(|name| req.headers.get(name).and_then(|v| v.to_str().ok()))
    } else {
        None
    };
    if token_headers
        && req
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .any(|v| v.to_str().is_ok_and(is_pomerium_authorization))
    {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    for name in drop {
        req.remove_header(&name);
    }

    let raw = request::raw_host(req)
        .ok_or_else(|| Refusal::bad_request("The request names no host.".to_string()))?;
    let (host, port) = parse_authority(raw)
        .map_err(|e| Refusal::bad_request(format!("The request's host is not valid: {e}.")))?;

    let canonical = match canonical_path(req.uri.path(), &global.path) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(path)) => Some(path),
        Err(e) => {
            return Err(Refusal::bad_request(format!(
                "The request path is not accepted: {e}."
            )));
        }
    };
    if let Some(path) = canonical {
        let path_and_query = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        // Only the path changes: an HTTP/2 request's scheme and authority (its host, when it
        // sent no `Host` header) stay.
        let invalid = || Refusal::bad_request("The request path is not a valid URI.".to_string());
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query.parse().map_err(|_| invalid())?);
        let uri = http::Uri::from_parts(parts).map_err(|_| invalid())?;
        req.set_uri(uri);
    }
    Ok(Clean {
        client_ip,
        host,
        port,
        client_chain: None,
        token,
        has_upgrade,
        has_cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No configured claim headers.
    const NONE: [&str; 0] = [];

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        r.insert_header("host", "app.test").unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn peer() -> Option<IpAddr> {
        Some("192.0.2.7".parse().unwrap())
    }

    /// The header names left after sanitizing a request with `headers` (`x-email` is a
    /// configured claim header).
    fn kept(headers: &[(&str, &str)]) -> Vec<String> {
        let mut r = req("/", headers);
        sanitize(&mut r, &Global::default(), &["x-email"], peer()).unwrap();
        r.headers.keys().map(|k| k.as_str().to_string()).collect()
    }

    #[test]
    fn identity_headers_in_any_spelling_are_removed() {
        let names = kept(&[
            ("X_Pomerium_Jwt_Assertion", "forged"),
            ("x-pomerium-claim-email", "forged"),
            ("X_Email", "forged"),
            ("x-other", "kept"),
        ]);
        assert_eq!(names, vec!["host", "x-other"]);
    }

    #[test]
    fn client_impersonation_headers_are_stripped() {
        let names = kept(&[
            ("Impersonate-User", "system:admin"),
            ("impersonate-group", "system:masters"),
            ("IMPERSONATE_UID", "0"),
            ("Impersonate-Extra-Scopes", "all"),
            ("x-impersonate-user", "kept: not a Kubernetes header"),
        ]);
        assert_eq!(names, vec!["host", "x-impersonate-user"]);
    }

    #[test]
    fn pomerium_token_forms_are_read_then_removed() {
        let mut r = req(
            "/",
            &[
                ("Authorization", "Pomerium-IDP-Identity-Token tok"),
                ("X-Pomerium-IDP-Access-Token", "acc"),
            ],
        );
        let clean = sanitize(&mut r, &Global::default(), NONE, peer()).unwrap();
        let t = clean.token.expect("token");
        assert_eq!(
            (t.kind, t.value.as_str()),
            (crate::guard::bearer::TokenKind::Access, "acc")
        );
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["host"]);
        // A plain bearer stays: whether it is ours depends on the route.
        let mut r = req("/", &[("authorization", "Bearer abc")]);
        let clean = sanitize(&mut r, &Global::default(), NONE, peer()).unwrap();
        assert!(clean.token.is_none());
        assert!(r.headers.contains_key("authorization"));
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_client_are_dropped() {
        let mut r = req(
            "/",
            &[
                ("x-forwarded-for", "203.0.113.1"),
                ("X_Forwarded_Proto", "http"),
                ("forwarded", "for=203.0.113.1"),
                ("x-real-ip", "203.0.113.1"),
            ],
        );
        let clean = sanitize(&mut r, &Global::default(), NONE, peer()).unwrap();
        assert_eq!(clean.client_ip, peer());
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["host"]);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let mut r = req("/", &[("x-forwarded-for", "203.0.113.9, 198.51.100.2")]);
        let global = Global {
            xff_num_trusted_hops: 1,
            ..Global::default()
        };
        let clean = sanitize(&mut r, &global, NONE, peer()).unwrap();
        assert_eq!(clean.client_ip, Some("198.51.100.2".parse().unwrap()));
        assert!(r.headers.contains_key("x-forwarded-for"));
    }

    #[test]
    fn the_path_is_made_canonical_before_anything_reads_it() {
        let mut r = req("/x/../%61dmin//y?q=%2e", &[]);
        sanitize(&mut r, &Global::default(), NONE, peer()).unwrap();
        assert_eq!(r.uri.path(), "/admin/y");
        assert_eq!(r.uri.query(), Some("q=%2e"));
    }

    /// An HTTP/2 request names its host in `:authority` only: making its path canonical keeps
    /// it, so the upstream's `Host` and `X-Forwarded-Host` still come from the client's.
    #[test]
    fn a_canonical_path_keeps_the_authority_of_an_http2_request() {
        // As Pingora reads an HTTP/2 request: the whole URI, no `Host` header.
        let (parts, ()) = http::Request::get("https://h2.test:8443/a/../b?q=1")
            .body(())
            .unwrap()
            .into_parts();
        let mut r = RequestHeader::from(parts);
        let clean = sanitize(&mut r, &Global::default(), NONE, peer()).unwrap();
        assert_eq!(clean.host, "h2.test");
        assert_eq!(r.uri.path(), "/b");
        assert_eq!(r.uri.query(), Some("q=1"));
        assert_eq!(r.uri.authority().map(|a| a.as_str()), Some("h2.test:8443"));
        assert_eq!(
            super::request::raw_host_value(&r).as_deref(),
            Some(&http::HeaderValue::from_static("h2.test:8443"))
        );
    }

    #[test]
    fn an_encoded_slash_is_refused() {
        let mut r = req("/admin%2Fx", &[]);
        let e = sanitize(&mut r, &Global::default(), NONE, peer()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("encoded slash"), "{}", e.detail);
    }

    /// The pass over the names says whether an `Upgrade` and a `Cookie` header came, in any
    /// spelling, so that a request without them looks neither up later.
    #[test]
    fn upgrade_and_cookie_headers_are_noticed_in_any_spelling() {
        for (names, upgrade, cookie) in [
            (&[][..], false, false),
            (&["UPGRADE"][..], true, false),
            (&["cookie"][..], false, true),
            (&["Upgrade", "X-Other", "Cookie"][..], true, true),
            (&["x-upgrade", "cookies"][..], false, false),
        ] {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.insert_header("host", "app.test").unwrap();
            for name in names {
                r.append_header(name.to_string(), "v").unwrap();
            }
            let clean = match sanitize(&mut r, &Global::default(), NONE, peer()) {
                Ok(clean) => clean,
                Err(refusal) => panic!("{names:?}: {}", refusal.detail),
            };
            assert_eq!(
                (clean.has_upgrade, clean.has_cookie),
                (upgrade, cookie),
                "{names:?}"
            );
        }
    }

    #[test]
    fn a_malformed_host_is_refused() {
        let mut r = req("/", &[]);
        r.insert_header("host", "evil.example@app.test").unwrap();
        assert_eq!(
            sanitize(&mut r, &Global::default(), NONE, peer())
                .unwrap_err()
                .status,
            400
        );
        let mut long = req("/", &[]);
        long.insert_header("host", format!("{}.test", "a".repeat(300)))
            .unwrap();
        assert_eq!(
            sanitize(&mut long, &Global::default(), NONE, peer())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn too_many_header_fields_are_refused() {
        let many: Vec<(String, String)> =
            (0..200).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut r = req("/", &refs);
        assert_eq!(
            sanitize(&mut r, &Global::default(), NONE, peer())
                .unwrap_err()
                .status,
            431
        );
    }
}
