//! The pure rules of sign-in: where a user may be sent back to, and which requests may sign
//! someone out. No I/O, so each is tested on its own.

use url::Url;

use crate::auth::host_and_port;
use crate::routes::RouteTable;

/// Whether `url` may be returned to after sign-in: the scheme route hosts use, a host that an
/// exact or wildcard route serves on that port — never one reached only through a route for
/// every host (a catch-all would hand sessions to any name an attacker sends) — and not the
/// authenticate host. Anything else would be an open redirect.
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
        && table.serves_named_host(&host, port)
        && !(host == authenticate.0 && port == authenticate.1)
}

/// Whether a request is a POST from a page of `host_with_port`: its `Origin` names that host,
/// or, without `Origin`, the browser says `Sec-Fetch-Site: same-origin`. A request that states
/// neither proves nothing and is refused: cross-site forms cannot sign anyone out.
pub fn same_origin_post(
    method: &http::Method,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host_with_port: &str,
) -> bool {
    if method != http::Method::POST {
        return false;
    }
    match (origin, fetch_site) {
        (Some(origin), _) => Url::parse(origin)
            .ok()
            .and_then(|u| host_and_port(&u))
            .is_some_and(|h| h.eq_ignore_ascii_case(host_with_port)),
        (None, Some(site)) => site.eq_ignore_ascii_case("same-origin"),
        (None, None) => false,
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
        let ok = |origin, site| same_origin_post(&post, origin, site, "app.test");
        assert!(ok(Some("https://app.test"), None));
        assert!(ok(None, Some("same-origin")));
        assert!(!ok(Some("https://evil.test"), Some("same-origin")));
        assert!(!ok(Some("https://app.test:8443"), None));
        assert!(!ok(None, Some("cross-site")));
        let get = http::Method::GET;
        assert!(!same_origin_post(&get, None, None, "app.test"));
    }

    #[test]
    fn sign_out_without_origin_or_fetch_metadata_is_refused() {
        let post = http::Method::POST;
        assert!(!same_origin_post(&post, None, None, "app.test"));
    }

    #[test]
    fn sign_in_never_returns_to_a_host_served_only_by_a_catch_all_route() {
        let mut any = route("catch-all", "ignored.test");
        any.host = crate::config::HostPattern::Any;
        let t = RouteTable::compile(vec![any, route("a", "app.test")], &|_, _| None);
        let ok = |u: &str| allowed_return(&Url::parse(u).unwrap(), "https", &t, ("auth.test", 443));
        assert!(ok("https://app.test/"));
        assert!(!ok("https://evil.example/"));
    }

    #[test]
    fn sign_in_returns_only_to_the_port_a_route_serves() {
        let mut on_8443 = route("a", "app.test");
        on_8443.port = Some(8443);
        let t = RouteTable::compile(vec![on_8443], &|_, _| None);
        let ok = |u: &str| allowed_return(&Url::parse(u).unwrap(), "https", &t, ("auth.test", 443));
        assert!(ok("https://app.test:8443/"));
        assert!(!ok("https://app.test:9443/"));
        assert!(!ok("https://app.test/"));
    }
}
