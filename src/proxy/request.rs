//! Reading a request's headers, once and in one place: the host the client addressed, the
//! `Cookie` header, what the client accepts, and the request's full URL.

use std::borrow::Cow;

use crate::guard::host::HostName;
use pingora::http::RequestHeader;
use url::Url;

/// The `Host` header as sent, or the URI's authority (HTTP/2 requests carry no `Host`).
pub fn raw_host(req: &RequestHeader) -> Option<&str> {
    match host_header(req) {
        Some((_, text)) => Some(text),
        None => req.uri.authority().map(|a| a.as_str()),
    }
}

/// The `Host` header [`raw_host`] and [`raw_host_value`] take: the first, when it reads as text.
fn host_header(req: &RequestHeader) -> Option<(&http::HeaderValue, &str)> {
    let value = req.headers.get(http::header::HOST)?;
    Some((value, value.to_str().ok()?))
}

/// [`raw_host`] as a header value: the `Host` header's own value when that is what it chose
/// (borrowed: not copied, and no reference count taken), else one made from the authority.
pub fn raw_host_value(req: &RequestHeader) -> Option<Cow<'_, http::HeaderValue>> {
    match host_header(req) {
        Some((value, _)) => Some(Cow::Borrowed(value)),
        None => http::HeaderValue::from_str(req.uri.authority()?.as_str())
            .ok()
            .map(Cow::Owned),
    }
}

/// The host (lower case, without port or trailing dot) and port the client addressed, when
/// the authority is well formed (see [`crate::guard::host`]).
pub fn host(req: &RequestHeader) -> Option<(HostName, Option<u16>)> {
    crate::guard::host::parse_authority(raw_host(req)?).ok()
}

/// Every `Cookie` header of the request joined into one (HTTP/2 clients send one per cookie);
/// a single header (HTTP/1 clients send one) as it is, not copied.
///
/// Every header counts, whatever its bytes: UTF-8 (browsers keep cookies other sites set in
/// UTF-8) as it is, anything else with U+FFFD in place of what is not UTF-8. A header skipped
/// for one odd byte would hide the session cookie next to it, which must still be read, and
/// must still be taken out before the upstream.
pub fn cookies(headers: &http::HeaderMap) -> Option<Cow<'_, str>> {
    cookie_headers(headers).map(|(bytes, _)| text_of_cow(bytes))
}

/// The `Cookie` headers' bytes, joined with `; ` when there are several (RFC 9113 asks that of
/// an HTTP/2 client's split cookies sent on to HTTP/1.1), and whether there were several.
pub fn cookie_headers(headers: &http::HeaderMap) -> Option<(Cow<'_, [u8]>, bool)> {
    let mut values = headers.get_all(http::header::COOKIE).iter();
    let first = values.next()?.as_bytes();
    let Some(second) = values.next() else {
        return Some((Cow::Borrowed(first), false));
    };
    let mut joined = Vec::with_capacity(first.len() + 2 + second.len());
    joined.extend_from_slice(first);
    for v in std::iter::once(second).chain(values) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some((Cow::Owned(joined), true))
}

/// Bytes [`cookie_headers`] gave, as text ([`text_of`]); joined bytes that are UTF-8 become
/// the text without a copy.
fn text_of_cow(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => text_of(b),
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(text) => Cow::Owned(text),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// `bytes` as text: as it is when it is UTF-8 (checked a word at a time while it is ASCII),
/// else with U+FFFD for what is not (`String::from_utf8_lossy` alone checks byte by byte).
pub fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Which of HTML and JSON a client asks for first in its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preferred {
    Html,
    Json,
    /// Neither is named (`*/*`, no header, something else).
    Neither,
}

pub fn preferred(headers: &http::HeaderMap) -> Preferred {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    preferred_in(accept)
}

fn preferred_in(accept: Option<&str>) -> Preferred {
    let Some(accept) = accept else {
        return Preferred::Neither;
    };
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(h), Some(j)) if h < j => Preferred::Html,
        (Some(_), Some(_)) => Preferred::Json,
        (Some(_), None) => Preferred::Html,
        (None, Some(_)) => Preferred::Json,
        (None, None) => Preferred::Neither,
    }
}

/// Whether our pages should answer in JSON (an API client) rather than HTML.
pub fn wants_json(headers: &http::HeaderMap) -> bool {
    preferred(headers) == Preferred::Json
}

/// The full URL of a request: `scheme`, the host as sent, path and query.
/// The scheme route hosts are served with.
pub fn scheme(insecure: bool) -> &'static str {
    if insecure { "http" } else { "https" }
}

/// The URL of a GET or HEAD request, to offer as a "Try again" link (other methods would not
/// be repeated by following a link).
pub fn retry_url(req: &RequestHeader, insecure: bool) -> Option<String> {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        .then(|| url(req, scheme(insecure)))
        .flatten()
        .map(|u| u.to_string())
}

pub fn url(req: &RequestHeader, scheme: &str) -> Option<Url> {
    let host = raw_host(req)?;
    let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Url::parse(&format!("{scheme}://{host}{pq}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> Option<(String, Option<u16>)> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("host", raw).unwrap();
        host(&req).map(|(h, p)| (h.into(), p))
    }

    /// The value is the header `raw_host` reads, itself (not a copy) when that is the `Host`
    /// header, and none when there is no host at all.
    #[test]
    fn the_host_value_is_the_host_raw_host_reads() {
        let with = |uri: &str, host: Option<&[u8]>| {
            // As Pingora reads an HTTP/2 request when the URI is absolute.
            let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
            let mut req = RequestHeader::from(parts);
            if let Some(h) = host {
                let value = http::HeaderValue::from_bytes(h).unwrap();
                req.insert_header(http::header::HOST, value).unwrap();
            }
            req
        };
        let cases = [
            with("/", Some(b"a.test:8080")),
            with("http://b.test:1/x", Some(b"a.test")),
            with("http://b.test:1/x", Some(b"caf\xc3\xa9.test")),
            with("http://b.test:1/x", None),
            with("/", Some(b"caf\xc3\xa9.test")),
            with("/", None),
        ];
        for req in &cases {
            let value = raw_host_value(req);
            let expected = raw_host(req).map(|h| http::HeaderValue::from_str(h).unwrap());
            assert_eq!(value.as_deref(), expected.as_ref(), "{req:?}");
            if let (Some(v), Some(host)) = (&value, req.headers.get(http::header::HOST))
                && v.as_bytes() == host.as_bytes()
            {
                assert_eq!(v.as_bytes().as_ptr(), host.as_bytes().as_ptr(), "{req:?}");
            }
        }
        assert_eq!(*raw_host_value(&cases[2]).unwrap(), "b.test:1");
        assert_eq!(raw_host_value(&cases[4]), None);
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            host_of("App.Example.com"),
            Some(("app.example.com".into(), None))
        );
        assert_eq!(host_of("a.test:8443"), Some(("a.test".into(), Some(8443))));
        assert_eq!(host_of("[::1]:80"), Some(("[::1]".into(), Some(80))));
        assert_eq!(host_of("a.test:x"), None);
        assert_eq!(host_of(""), None);
    }

    #[test]
    fn json_only_when_preferred() {
        let json = |a| preferred_in(a) == Preferred::Json;
        assert!(json(Some("application/json")));
        assert!(!json(Some("text/html,application/json")));
        assert!(json(Some("application/json, text/html")));
        assert!(!json(None));
        assert!(!json(Some("*/*")));
    }

    #[test]
    fn browsers_prefer_html() {
        let html = |a| preferred_in(a) == Preferred::Html;
        assert!(html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(!html(Some("application/json")));
        assert!(!html(Some("application/json, text/html")));
        assert!(!html(Some("*/*")));
        assert!(!html(None));
    }

    /// A cookie another site set in UTF-8, or bytes that are not UTF-8 at all, do not hide the
    /// cookies next to them.
    #[test]
    fn cookie_headers_that_are_not_ascii_still_count() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            http::HeaderValue::from_bytes("name=zoë; _pomerium=s".as_bytes()).unwrap(),
        );
        assert!(matches!(
            cookies(&h),
            Some(Cow::Borrowed("name=zoë; _pomerium=s"))
        ));
        h.append(
            http::header::COOKIE,
            http::HeaderValue::from_bytes(b"odd=\xff; b=2").unwrap(),
        );
        assert_eq!(
            cookies(&h).as_deref(),
            Some("name=zoë; _pomerium=s; odd=\u{fffd}; b=2")
        );
    }

    #[test]
    fn cookie_headers_are_joined_in_order() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cookies(&h), None);
        h.append(http::header::COOKIE, "a=1".parse().unwrap());
        assert!(matches!(cookies(&h), Some(Cow::Borrowed("a=1"))));
        h.append(http::header::COOKIE, "b=2; c=3".parse().unwrap());
        assert_eq!(cookies(&h).as_deref(), Some("a=1; b=2; c=3"));
    }
}
