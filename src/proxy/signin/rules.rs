//! The pure rules of sign-in: where a user may be sent back to, and which requests may sign
//! someone out. No I/O, so each is tested on its own.

use url::Url;

use crate::auth::host_and_port;
use crate::routes::RouteTable;

/// Whether `url` may be returned to after sign-in: the scheme route hosts use, a host some
/// route serves, and not the authenticate host. Anything else would be an open redirect.
pub fn allowed_return(
    url: &Url,
    route_scheme: &str,
    table: &RouteTable,
    authenticate: (&str, u16),
) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(0);
    url.scheme() == route_scheme
        && table.has_host(&host)
        && !(host == authenticate.0 && port == authenticate.1)
}

/// Whether a request is a POST from a page of `host_with_port` (or states no origin, as
/// non-browser clients do): cross-site forms cannot sign anyone out.
pub fn same_origin_post(method: &http::Method, origin: Option<&str>, host_with_port: &str) -> bool {
    if method != http::Method::POST {
        return false;
    }
    match origin {
        None => true,
        Some(origin) => Url::parse(origin)
            .ok()
            .and_then(|u| host_and_port(&u))
            .is_some_and(|h| h.eq_ignore_ascii_case(host_with_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::fixtures::route;

    fn table() -> RouteTable {
        RouteTable::compile(
            vec![route("a", "app.test"), route("w", "*.apps.test")],
            &|_, _| None,
        )
    }

    fn allowed(url: &str) -> bool {
        allowed_return(
            &Url::parse(url).unwrap(),
            "https",
            &table(),
            ("auth.test", 443),
        )
    }

    #[test]
    fn sign_in_returns_only_to_hosts_a_route_serves() {
        assert!(allowed("https://app.test/x?y=1"));
        assert!(allowed("https://one.apps.test/"));
        assert!(!allowed("https://evil.test/"));
    }

    #[test]
    fn sign_in_never_returns_over_another_scheme() {
        assert!(!allowed("http://app.test/"));
        assert!(!allowed("javascript://app.test/"));
    }

    #[test]
    fn sign_in_never_returns_to_the_authenticate_host() {
        let t = RouteTable::compile(vec![route("a", "auth.test")], &|_, _| None);
        let url = Url::parse("https://auth.test/").unwrap();
        assert!(!allowed_return(&url, "https", &t, ("auth.test", 443)));
    }

    #[test]
    fn sign_out_needs_a_same_origin_post() {
        let post = http::Method::POST;
        assert!(same_origin_post(
            &post,
            Some("https://app.test"),
            "app.test"
        ));
        assert!(same_origin_post(&post, None, "app.test"));
        assert!(!same_origin_post(
            &post,
            Some("https://evil.test"),
            "app.test"
        ));
        assert!(!same_origin_post(
            &post,
            Some("https://app.test:8443"),
            "app.test"
        ));
        assert!(!same_origin_post(&http::Method::GET, None, "app.test"));
    }
}
