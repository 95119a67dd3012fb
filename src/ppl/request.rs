//! What a policy looks at: the request, the signed-in identity, the client certificate.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::cert::ClientCertificate;
use super::claims::Claims;

/// Request headers, looked up case-insensitively.
pub trait Headers {
    /// The first value of the header `name` (any case), if present and readable as text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        // `HeaderMap::get` with a `&str` normalises the name's case itself.
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A small list of headers (what `policy eval` reads from its input, and what tests build).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl HeaderList {
    pub fn new() -> HeaderList {
        HeaderList::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> HeaderList {
        self.0.push((name.to_string(), value.to_string()));
        self
    }
}

impl Headers for HeaderList {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// No headers at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn header(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The signed-in user, as kept in the session cookie.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct Identity {
    /// The user id (the IdP `sub`).
    pub user: String,
    pub email: String,
    pub claims: Claims,
    /// Group ids and names from the directory (Auth0 roles); empty when the directory gave none.
    pub groups: Vec<String>,
}

/// One request, as the policy sees it. Borrowed, so building one costs nothing.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub time: DateTime<Utc>,
    pub method: &'a str,
    pub host: &'a str,
    /// The URL path; anything from `?` on is ignored.
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    /// The client address, when known.
    pub ip: Option<IpAddr>,
    /// `None` when nobody is signed in.
    pub session: Option<&'a Identity>,
    /// `None` when no client certificate was presented.
    pub client_certificate: Option<&'a ClientCertificate>,
}

impl<'a> Request<'a> {
    /// A `GET /` at `time` with no headers, session, address or certificate; fill in the rest
    /// with struct update syntax.
    pub fn new(time: DateTime<Utc>) -> Request<'static> {
        Request {
            time,
            method: "GET",
            host: "",
            path: "/",
            headers: &NoHeaders,
            ip: None,
            session: None,
            client_certificate: None,
        }
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("time", &self.time)
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("ip", &self.ip)
            .field("session", &self.session)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_is_case_insensitive() {
        let list = HeaderList::new().with("Origin", "https://x");
        assert_eq!(list.header("origin"), Some("https://x"));
        assert_eq!(list.header("ORIGIN"), Some("https://x"));
        let mut map = http::HeaderMap::new();
        map.insert("access-control-request-method", "GET".parse().unwrap());
        assert_eq!(map.header("Access-Control-Request-Method"), Some("GET"));
        assert_eq!(map.header("Origin"), None);
    }
}
