//! The data plane: a Pingora HTTP proxy that looks up the route, enforces its policy and
//! forwards allowed requests.

pub mod ops;
pub mod pages;
pub mod reload;
mod service;
pub mod signin;
pub mod state;

pub use service::Portcullis;
pub use state::Shared;

use pingora::http::RequestHeader;

/// The host (lower case, without port) and port the client addressed. HTTP/2 requests carry the
/// host in the URI's authority instead of a `Host` header.
pub fn request_host(req: &RequestHeader) -> Option<(String, Option<u16>)> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    split_host_port(raw)
}

fn split_host_port(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let (ip, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((ip.to_ascii_lowercase(), port));
    }
    match raw.rsplit_once(':') {
        Some((h, p)) => Some((
            h.trim_end_matches('.').to_ascii_lowercase(),
            Some(p.parse().ok()?),
        )),
        None => Some((raw.trim_end_matches('.').to_ascii_lowercase(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            split_host_port("App.Example.com"),
            Some(("app.example.com".into(), None))
        );
        assert_eq!(
            split_host_port("a.test:8443"),
            Some(("a.test".into(), Some(8443)))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), Some(80))));
        assert_eq!(split_host_port("a.test:x"), None);
        assert_eq!(split_host_port(""), None);
    }
}
